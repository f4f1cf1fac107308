package crashhandler

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// ElfcorehdrInput is what the ELF core header of a crash image describes
// (the running kernel, which is the one that will crash). kexec_file_load
// builds this header in the kernel (kernel/crash_core.c
// crash_prepare_elf64_headers, arch/x86/kernel/crash.c
// prepare_elf_headers); kexec_load leaves it to user space.
type ElfcorehdrInput struct {
	// CPUNotes are the physical addresses and sizes of the per-CPU
	// crash_notes buffers, where each CPU saves its registers at panic.
	CPUNotes []memmap.Range
	// VMCOREINFO is the physical address and size of the VMCOREINFO note.
	VMCOREINFO memmap.Range
	// KernelText is the kernel image from _text to _end: its virtual
	// address (KASLR moves it) and physical range.
	KernelTextVaddr uint64
	KernelText      memmap.Range
	// PageOffset is the direct map's base (page_offset_base, randomised
	// by KASLR): RAM at physical P is at virtual PageOffset+P.
	PageOffset uint64
	// RAM is the System RAM of the running kernel; Exclude what the core
	// must not describe (the crash kernel reservation).
	RAM     []memmap.Range
	Exclude []memmap.Range
}

// x86-64 kernel address space.
const (
	startKernelMap = 0xffffffff80000000 // __START_KERNEL_map
	kernelHalf     = 0xff00000000000000
	lowMemory      = 1 << 20
)

// ReadElfcorehdrInput reads what the ELF core header needs under root:
// possible CPUs' sys/devices/system/cpu/cpuN/crash_notes{,_size} (CPUs
// without a sysfs directory, possible but absent, are skipped: they cannot
// have run), sys/kernel/vmcoreinfo, the System RAM and "Crash kernel"
// ranges of proc/iomem, and from the program headers of proc/kcore the
// kernel text mapping and the direct map's base (as kexec-tools does: both
// are randomised by KASLR). Reading proc/iomem and proc/kcore needs root.
func ReadElfcorehdrInput(root string) (ElfcorehdrInput, error) {
	if root == "" {
		root = "/"
	}
	var in ElfcorehdrInput
	p := func(rel string) string { return filepath.Join(root, rel) }
	topo, err := cpustop.ReadTopology(cpustop.Options{Root: root})
	if err != nil {
		return in, fmt.Errorf("ELF core header: %w", err)
	}
	for _, cpu := range topo.Possible {
		dir := p(fmt.Sprintf("sys/devices/system/cpu/cpu%d", cpu))
		addr, err := memmap.ReadHex(filepath.Join(dir, "crash_notes"))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			return in, fmt.Errorf("ELF core header: %w", err)
		}
		b, err := os.ReadFile(filepath.Join(dir, "crash_notes_size"))
		if err != nil {
			return in, fmt.Errorf("ELF core header: %w", err)
		}
		size, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || size == 0 {
			return in, fmt.Errorf("ELF core header: %s: %q is not a size", filepath.Join(dir, "crash_notes_size"), b)
		}
		in.CPUNotes = append(in.CPUNotes, memmap.Range{Start: addr, End: addr + size})
	}
	if len(in.CPUNotes) == 0 {
		return in, fmt.Errorf("ELF core header: no CPU has %s", p("sys/devices/system/cpu/cpuN/crash_notes"))
	}
	b, err := os.ReadFile(p("sys/kernel/vmcoreinfo"))
	if err != nil {
		return in, fmt.Errorf("ELF core header: %w", err)
	}
	// "%pa %x": 0x0000000100c76000 1024 (the size is hexadecimal).
	var vaddr, vsize uint64
	if f := strings.Fields(string(b)); len(f) == 2 {
		vaddr, err = strconv.ParseUint(strings.TrimPrefix(f[0], "0x"), 16, 64)
		if err == nil {
			vsize, err = strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 64)
		}
	}
	if err != nil || vsize == 0 {
		return in, fmt.Errorf("ELF core header: %s: %q is not \"ADDR SIZE\"", p("sys/kernel/vmcoreinfo"), b)
	}
	in.VMCOREINFO = memmap.Range{Start: vaddr, End: vaddr + vsize}

	iomem, err := memmap.ReadIomem(root)
	if err != nil {
		return in, fmt.Errorf("ELF core header: %w", err)
	}
	in.RAM, in.Exclude = iomem.RAM(), iomem.CrashKernel()
	if len(in.RAM) == 0 {
		return in, fmt.Errorf("ELF core header: %s shows no System RAM (read without CAP_SYS_ADMIN?)", p("proc/iomem"))
	}

	kf, err := os.Open(p("proc/kcore"))
	if err != nil {
		return in, fmt.Errorf("ELF core header: the kernel's virtual addresses are read from %w", err)
	}
	defer kf.Close()
	core, err := elf.NewFile(kf)
	if err != nil {
		return in, fmt.Errorf("ELF core header: %s: %w", kf.Name(), err)
	}
	for _, ph := range core.Progs {
		if ph.Type != elf.PT_LOAD || ph.Paddr == ^uint64(0) || ph.Vaddr < kernelHalf {
			continue
		}
		switch {
		case ph.Vaddr >= startKernelMap && in.KernelText.End == 0:
			in.KernelTextVaddr = ph.Vaddr
			in.KernelText = memmap.Range{Start: ph.Paddr, End: ph.Paddr + ph.Memsz}
		case ph.Vaddr < startKernelMap && in.PageOffset == 0:
			in.PageOffset = ph.Vaddr - ph.Paddr
		}
	}
	if in.KernelText.End == 0 || in.PageOffset == 0 {
		return in, fmt.Errorf("ELF core header: %s has no kernel text or direct map segment with a physical address", kf.Name())
	}
	return in, nil
}

// ELF constants of the header.
const (
	elfHdrLen  = 64
	elfPhdrLen = 56
	ptLoadType = 1
	ptNoteType = 4
)

// BuildElfcorehdr returns the ELF64 core header the crash kernel turns into
// /proc/vmcore (passed as elfcorehdr=ADDR), laid out as
// crash_prepare_elf64_headers does: one PT_NOTE per CPU's crash_notes and
// one for VMCOREINFO (their p_offset is the physical address: the crash
// kernel reads the notes from the crashed kernel's memory), a PT_LOAD for
// the kernel text mapping, and a PT_LOAD per range of System RAM outside
// the excluded ranges and the first MiB (x86 keeps it reserved), with
// p_offset = p_paddr and p_vaddr in the direct map.
func BuildElfcorehdr(in ElfcorehdrInput) ([]byte, error) {
	if in.PageOffset == 0 || in.KernelText.End <= in.KernelText.Start {
		return nil, errors.New("ELF core header: no direct map base or kernel text")
	}
	type phdr struct {
		typ, flags                       uint32
		off, vaddr, paddr, filesz, memsz uint64
	}
	var ph []phdr
	note := func(r memmap.Range) {
		ph = append(ph, phdr{typ: ptNoteType, off: r.Start, paddr: r.Start, filesz: r.End - r.Start, memsz: r.End - r.Start})
	}
	for _, r := range in.CPUNotes {
		note(r)
	}
	note(in.VMCOREINFO)
	const rwx = 7
	t := in.KernelText
	ph = append(ph, phdr{typ: ptLoadType, flags: rwx, off: t.Start, vaddr: in.KernelTextVaddr, paddr: t.Start, filesz: t.End - t.Start, memsz: t.End - t.Start})
	exclude := append(slices.Clone(in.Exclude), memmap.Range{Start: 0, End: lowMemory})
	for _, r := range memmap.Subtract(in.RAM, exclude...) {
		ph = append(ph, phdr{typ: ptLoadType, flags: rwx, off: r.Start, vaddr: in.PageOffset + r.Start, paddr: r.Start, filesz: r.End - r.Start, memsz: r.End - r.Start})
	}
	if len(ph) >= 0xffff {
		return nil, fmt.Errorf("ELF core header: %d program headers, more than e_phnum holds", len(ph))
	}
	le := binary.LittleEndian
	b := make([]byte, elfHdrLen+len(ph)*elfPhdrLen)
	copy(b, "\x7fELF")
	b[4], b[5], b[6] = 2, 1, 1 // ELFCLASS64, ELFDATA2LSB, EV_CURRENT
	le.PutUint16(b[16:], uint16(elf.ET_CORE))
	le.PutUint16(b[18:], emX86_64)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], elfHdrLen) // e_phoff
	le.PutUint16(b[52:], elfHdrLen)
	le.PutUint16(b[54:], elfPhdrLen)
	le.PutUint16(b[56:], uint16(len(ph)))
	for i, p := range ph {
		o := b[elfHdrLen+i*elfPhdrLen:]
		le.PutUint32(o[0:], p.typ)
		le.PutUint32(o[4:], p.flags)
		le.PutUint64(o[8:], p.off)
		le.PutUint64(o[16:], p.vaddr)
		le.PutUint64(o[24:], p.paddr)
		le.PutUint64(o[32:], p.filesz)
		le.PutUint64(o[40:], p.memsz)
	}
	return b, nil
}
