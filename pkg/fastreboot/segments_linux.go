//go:build linux && amd64

// The segments load method is x86-64 only: it writes the x86 boot protocol's
// zero page (bootparams.go), jumps through an x86-64 purgatory or trampoline
// and places the kernel from its x86-64 ELF. segments_other.go stubs it with
// ErrNotSupported elsewhere; the planning helpers it shares with the crash
// path (placement, e820, zero page, trampoline bytes) stay portable and are
// tested on every platform.

package fastreboot

import (
	"bytes"
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/u-root/u-root/pkg/boot/kexec"
	"os"

	"github.com/u-root/u-root/pkg/boot/bzimage"
	"github.com/u-root/u-root/pkg/boot/purgatory"
	"golang.org/x/sys/unix"
)

// segmentsSupported reports that this platform has the segments load method.
func segmentsSupported() error { return nil }

// SegmentsLoad calls kexec_load(2) through kexecsys.Load, which passes
// page-aligned segments (every plan of planSegments) without copying them
// and checks that they do not overlap and that the entry is inside one. Errors are *KexecError values as for FileLoad; EPERM
// also matches ErrKexecLoadForbidden, because under lockdown kexec_load is
// refused whatever the image while kexec_file_load loads signed kernels.
func (KexecLoader) SegmentsLoad(entry uint64, segments []Segment) error {
	return kexecsys.Load(entry, sysSegments(segments), 0)
}

// SegmentsLoadOnCrash calls kexec_load(2) with KEXEC_ON_CRASH through
// kexecsys.Load; errors as for SegmentsLoad. The kernel accepts the
// image only if the entry and every segment lie inside the crash kernel
// reservation (EADDRNOTAVAIL otherwise), and frees the crash image loaded
// before once the call passed its permission checks: a kexec_load refused
// with EPERM leaves it armed.
func (KexecLoader) SegmentsLoadOnCrash(entry uint64, segments []Segment) error {
	return kexecsys.Load(entry, sysSegments(segments), kexecsys.LoadOnCrash)
}

func sysSegments(segments []Segment) []kexecsys.Segment {
	out := make([]kexecsys.Segment, 0, len(segments))
	for _, s := range segments {
		out = append(out, kexecsys.Segment{Buf: s.Buf, Phys: s.Phys, Size: s.Size})
	}
	return out
}

// withMapped maps the cached kernel ELF and the sealed initrd read-only
// for the duration of fn (kexec_load copies the segments, so they are
// unmapped after it).
func (c *crashSegments) withMapped(fn func(elfData, initrdData []byte) error) error {
	elfData, unmapELF, err := c.prep.mapKernel()
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer unmapELF()
	initrdData, unmapInitrd, err := mapFile(c.initrd, c.bytes)
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer unmapInitrd()
	return fn(elfData, initrdData)
}

// loadSegments maps the cached kernel ELF and the sealed initrd, places the
// segments and calls kexec_load, or, in a dry run, only plans them.
func (mc *Machine) loadSegments(prep *segmentsPrep, initrd *os.File, cmdline string, dryRun bool) error {
	elfData, unmapELF, err := prep.mapKernel()
	if err != nil {
		return fmt.Errorf("kernel: %w", err)
	}
	defer unmapELF()
	st, err := initrd.Stat()
	if err != nil {
		return fmt.Errorf("%s: %w", initrd.Name(), err)
	}
	initrdData, unmapInitrd, err := mapFile(initrd, st.Size())
	if err != nil {
		return fmt.Errorf("initrd: %w", err)
	}
	defer unmapInitrd()

	img, err := planSegments(prep, elfData, initrdData, cmdline)
	if err != nil {
		return err
	}
	img.fillReport(prep.report)
	if prep.report.EFIDropped {
		mc.log.Warn("segments load method: the running kernel was booted through EFI; the next kernel gets no EFI runtime services " +
			"(kexec_load cannot pass their mapping as kexec_file_load does) and finds ACPI through the recorded RSDP address")
	}
	if dryRun {
		mc.log.Info("dry run: would call kexec_load", "entry", fmt.Sprintf("%#x", img.entry),
			"kernel_entry", fmt.Sprintf("%#x", prep.report.KernelEntry), "segments", len(img.segments))
		return nil
	}
	sl := mc.opts.Loader.(SegmentsLoader) // checked by prepareSegments
	return sl.SegmentsLoad(img.entry, img.segments)
}

// mapKernel maps the kernel file read-only, or returns the caller-mapped
// kernel (kernelData) as it is.
func (prep *segmentsPrep) mapKernel() ([]byte, func(), error) {
	if prep.kernelData != nil {
		return prep.kernelData, func() {}, nil
	}
	return mapFile(prep.kernelFile, prep.kernelSize)
}

// mapFile maps size bytes of f read-only and shared: the sealed memfds of
// the cache and of the initrd are given to kexec_load without a copy in
// this process.
func mapFile(f *os.File, size int64) ([]byte, func(), error) {
	if size == 0 {
		return nil, func() {}, nil
	}
	b, err := unix.Mmap(int(f.Fd()), 0, int(size), unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap(%s, %d bytes): %w", f.Name(), size, err)
	}
	return b, func() { unix.Munmap(b) }, nil
}

// planSegments places the image with u-root's kexec.Memory, whose physical
// map holds only the firmware map's RAM minus the avoided ranges:
//
//   - the kernel's PT_LOAD segments at their linked physical addresses, or,
//     if that memory (at least init_size from the first segment) is not
//     free RAM, all moved together to the lowest free place above them
//     aligned to kernel_alignment (startup_64 runs anywhere 2 MiB aligned);
//   - the initrd, then the command line and the zero page, each at the
//     lowest free place above 1 MiB (the initrd below initrd_addr_max, the
//     two others below 4 GiB);
//   - u-root's default purgatory at the address it is linked for, told the
//     kernel's entry and the zero page; it sets %rsi and jumps, computing no
//     digest.
func planSegments(prep *segmentsPrep, elfData, initrdData []byte, cmdline string) (*segmentsImage, error) {
	var kmem kexec.Memory
	for _, r := range prep.place.RAM {
		kmem.Phys = append(kmem.Phys, kexec.TypedRange{Range: kexec.RangeFromInterval(uintptr(r.Start), uintptr(r.End)), Type: kexec.RangeRAM})
	}
	for _, a := range prep.place.Avoid {
		kmem.Phys.Insert(kexec.TypedRange{Range: kexec.RangeFromInterval(uintptr(a.Start), uintptr(a.End)), Type: kexec.RangeReserved})
	}
	img := &segmentsImage{}
	rep := prep.report
	addPhys := func(name string, buf []byte, limit kexec.Range) (kexec.Range, error) {
		r, err := kmem.AddPhysSegment(buf, limit)
		if err != nil {
			return r, fmt.Errorf("%w: placing the %s (%d bytes) in free RAM of %s: %w", ErrNoMemory, name, len(buf), limit, err)
		}
		img.segments = append(img.segments, Segment{Name: name, Buf: buf, Phys: uint64(r.Start), Size: uint64(r.Size)})
		return r, nil
	}

	// The kernel.
	lo, hi := ^uint64(0), uint64(0)
	for _, p := range prep.image.Progs {
		lo, hi = min(lo, p.Paddr), max(hi, p.Paddr+p.Memsz)
	}
	footprint := pageUp(max(hi-lo, uint64(prep.header.InitSize)))
	var delta uint64
	if !covered(kmem.AvailableRAM(), kexec.Range{Start: uintptr(lo), Size: uint(footprint)}) {
		if prep.header.RelocatableKernel == 0 {
			return nil, fmt.Errorf("%w: the kernel is linked at %#x-%#x, which is not free RAM, and it is not relocatable", ErrNoMemory, lo, lo+footprint)
		}
		align := max(uint64(prep.header.Kernelalignment), minKernelAlign)
		if align&(align-1) != 0 {
			return nil, fmt.Errorf("kernel_alignment %#x is not a power of two", prep.header.Kernelalignment)
		}
		r, err := kmem.AvailableRAM().FindSpace(uint(footprint),
			kexec.WithinRange(kexec.RangeFromInterval(uintptr(lo), kexec.MaxAddr)), kexec.WithStartAlignment(uint(align)))
		if err != nil {
			return nil, fmt.Errorf("%w: no free RAM for the kernel's %#x bytes above %#x, %#x-aligned: %w", ErrNoMemory, footprint, lo, align, err)
		}
		delta = uint64(r.Start) - lo
		rep.Relocated = true
	}
	for _, p := range prep.image.Progs {
		r := kexec.Range{Start: uintptr(p.Paddr + delta), Size: uint(p.Memsz)}
		buf := elfData[p.Off : p.Off+p.Filesz]
		kmem.Segments.Insert(kexec.NewSegment(buf, r))
		img.segments = append(img.segments, Segment{Name: "kernel", Buf: buf, Phys: uint64(r.Start), Size: uint64(r.Size)})
	}
	// Keep the rest of init_size free too.
	kmem.Phys.Insert(kexec.TypedRange{Range: kexec.Range{Start: uintptr(lo + delta), Size: uint(footprint)}, Type: kexec.RangeReserved})
	rep.KernelStart, rep.KernelEnd = lo+delta, lo+delta+footprint
	rep.KernelEntry = prep.image.Entry + delta

	// The initrd, the command line, the zero page.
	initrdMax := uint64(prep.header.InitrdAddrMax)
	if initrdMax == 0 {
		initrdMax = bzimage.DefaultInitrdAddrMax
	}
	var initrdRange kexec.Range
	if len(initrdData) > 0 {
		var err error
		if initrdRange, err = addPhys("initrd", initrdData, kexec.RangeFromInclusiveInterval(mib, uintptr(initrdMax))); err != nil {
			return nil, err
		}
	}
	cmdRange, err := addPhys("cmdline", append([]byte(cmdline), 0), kexec.RangeFromInterval(mib, below4G))
	if err != nil {
		return nil, err
	}
	// The zero page points at the initrd and the command line, the
	// purgatory at the zero page: each is placed after what it points at.
	bp, efiDropped, err := buildBootParams(bootParamsInput{
		Running: prep.running, Kernel: prep.kernel, E820: prep.e820,
		InitrdAddr: uint64(initrdRange.Start), InitrdSize: uint64(len(initrdData)), CmdlineAddr: uint64(cmdRange.Start),
	})
	if err != nil {
		return nil, err
	}
	rep.EFIDropped = efiDropped
	bpRange, err := addPhys("boot_params", bp, kexec.RangeFromInterval(mib, below4G))
	if err != nil {
		return nil, err
	}
	rep.BootParams = uint64(bpRange.Start)

	// The purgatory.
	code, at, entry, err := purgatoryFor(rep.KernelEntry, rep.BootParams)
	if err != nil {
		return nil, err
	}
	if _, err := addPhys("purgatory", code, kexec.Range{Start: uintptr(at), Size: uint(len(code))}); err != nil {
		return nil, err
	}
	img.entry = entry
	if err := checkPlacement(img.segments, prep.place); err != nil {
		return nil, err
	}
	return img, nil
}

// purgatoryFor returns u-root's default purgatory (a 64-bit trampoline:
// it resets a VGA card to text mode, loads %rsi and jumps) with the kernel's
// entry and the zero page's address written into its parameter slots, the
// address it is linked to run at, and its entry. It does what
// purgatory.Load does, without its log.Printf of the whole ELF header (a
// library must not print) and without the package-global selection.
func purgatoryFor(kernelEntry, bootParams uint64) (code []byte, at, entry uint64, err error) {
	p, ok := purgatory.Purgatories["default"]
	if !ok {
		return nil, 0, 0, errors.New("u-root has no default purgatory")
	}
	f, err := elf.NewFile(bytes.NewReader(p.Code))
	if err != nil {
		return nil, 0, 0, fmt.Errorf("purgatory: %w", err)
	}
	if len(f.Progs) != 1 {
		return nil, 0, 0, fmt.Errorf("purgatory: %d program headers, want 1", len(f.Progs))
	}
	prog := f.Progs[0]
	code = make([]byte, pageUp(prog.Memsz))
	if _, err := prog.ReadAt(code[:prog.Filesz], 0); err != nil {
		return nil, 0, 0, fmt.Errorf("purgatory: %w", err)
	}
	// The parameter slots hold the markers of u-root's purgatory source:
	// entry at offset 8, params at 16.
	le := binary.LittleEndian
	if len(code) < 24 || le.Uint32(code[8:]) != 0x87654321 || le.Uint32(code[16:]) != 0xab5aab5a {
		return nil, 0, 0, errors.New("purgatory: parameter slots not where u-root's default purgatory has them")
	}
	le.PutUint64(code[8:], kernelEntry)
	le.PutUint64(code[16:], bootParams)
	return code, prog.Vaddr, f.Entry, nil
}

// covered reports whether r lies inside one range of rs.
func covered(rs kexec.Ranges, r kexec.Range) bool {
	for _, a := range rs {
		if a.IsSupersetOf(r) {
			return true
		}
	}
	return false
}
