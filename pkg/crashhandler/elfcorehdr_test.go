package crashhandler

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// noteBytes encodes notes as a crash_notes buffer: the notes, then the
// empty note that ends the list.
func noteBytes(ns ...Note) []byte {
	var b []byte
	for _, n := range ns {
		var h [12]byte
		le.PutUint32(h[0:], uint32(len(n.Name)+1))
		le.PutUint32(h[4:], uint32(len(n.Desc)))
		le.PutUint32(h[8:], n.Type)
		b = append(b, h[:]...)
		b = append(b, pad4(append([]byte(n.Name), 0))...)
		b = append(b, pad4(n.Desc)...)
	}
	return append(b, make([]byte, 12)...)
}

// TestBuildElfcorehdrReadBack lays the memory of the synthetic sysrq crash
// (its printk ring in the kernel text mapping and the direct map, its
// CPUs' notes and VMCOREINFO) out at physical addresses in a sparse file,
// puts the header BuildElfcorehdr makes at its start, and reads the
// evidence back with the package's own vmcore reader: the notes are found
// through their physical addresses and every pointer of the log through
// the PT_LOADs' virtual addresses.
func TestBuildElfcorehdrReadBack(t *testing.T) {
	src, err := OpenVmcore(bytes.NewReader(sysrqCrashVmcore()))
	if err != nil {
		t.Fatal(err)
	}
	notes, err := src.Notes()
	if err != nil {
		t.Fatal(err)
	}
	phys := map[uint64][]byte{}
	in := ElfcorehdrInput{
		RAM:     []memmap.Range{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x4000000}},
		Exclude: []memmap.Range{{Start: 0x3000000, End: 0x3800000}},
	}
	for i, n := range notes {
		b := noteBytes(n)
		if n.Name == "VMCOREINFO" {
			in.VMCOREINFO = memmap.Range{Start: 0x30000, End: 0x30000 + uint64(len(b))}
			phys[0x30000] = b
			continue
		}
		at := uint64(0x10000 + i*0x1000)
		in.CPUNotes = append(in.CPUNotes, memmap.Range{Start: at, End: at + uint64(len(b))})
		phys[at] = b
	}
	core := sysrqCrashVmcore()
	for _, l := range src.Loads() {
		data := core[l.Offset : l.Offset+l.Filesz]
		phys[l.Paddr] = data
		if l.Vaddr >= startKernelMap {
			in.KernelTextVaddr, in.KernelText = l.Vaddr, memmap.Range{Start: l.Paddr, End: l.Paddr + l.Memsz}
		} else {
			in.PageOffset = l.Vaddr - l.Paddr
		}
	}
	hdr, err := BuildElfcorehdr(in)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mem")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(0x4000000); err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(hdr, 0); err != nil {
		t.Fatal(err)
	}
	for at, b := range phys {
		if _, err := f.WriteAt(b, int64(at)); err != nil {
			t.Fatal(err)
		}
	}

	v, err := OpenVmcore(f)
	if err != nil {
		t.Fatal(err)
	}
	var loads []memmap.Range
	for _, l := range v.Loads() {
		if l.Offset != l.Paddr || l.Filesz != l.Memsz {
			t.Errorf("PT_LOAD %+v: want p_offset = p_paddr, filesz = memsz", l)
		}
		if l.Vaddr < startKernelMap && l.Vaddr != in.PageOffset+l.Paddr {
			t.Errorf("PT_LOAD %+v: vaddr not in the direct map at %#x", l, in.PageOffset)
		}
		loads = append(loads, memmap.Range{Start: l.Paddr, End: l.Paddr + l.Memsz})
	}
	want := []memmap.Range{in.KernelText, {Start: 0x100000, End: 0x3000000}, {Start: 0x3800000, End: 0x4000000}}
	if d := cmp.Diff(want, loads); d != "" {
		t.Errorf("PT_LOADs (-want +got): the text, then RAM without the first MiB and the reservation:\n%s", d)
	}
	ev, err := ReadEvidence(f, EvidenceOptions{TailLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Reason != "Kernel panic - not syncing: sysrq triggered crash" || ev.CPU != 1 || ev.KernelRelease != "6.1.0-56-amd64" || len(ev.CPUs) != 2 {
		t.Errorf("evidence read back: reason %q CPU %d release %q CPUs %+v (problems %v)", ev.Reason, ev.CPU, ev.KernelRelease, ev.CPUs, ev.Problems)
	}
}

// kcoreHeader is the start of a /proc/kcore: an ELF64 core header with the
// given PT_LOADs (vaddr, paddr, size).
func kcoreHeader(loads ...[3]uint64) []byte {
	var c fakeCore
	c.machine = emX86_64
	for _, l := range loads {
		c.loads = append(c.loads, fakeLoad{vaddr: l[0], paddr: l[1], data: make([]byte, 16), memsz: l[2]})
	}
	return c.bytes()
}

func TestReadElfcorehdrInput(t *testing.T) {
	root := t.TempDir()
	w := func(rel, s string) { writeFile(t, filepath.Join(root, rel), s) }
	w("sys/devices/system/cpu/possible", "0-15\n")
	w("sys/devices/system/cpu/present", "0-1\n")
	w("sys/devices/system/cpu/online", "0-1\n")
	w("sys/devices/system/cpu/cpu0/crash_notes", "7dc17000\n")
	w("sys/devices/system/cpu/cpu0/crash_notes_size", "440\n")
	w("sys/devices/system/cpu/cpu1/crash_notes", "7dc57000\n")
	w("sys/devices/system/cpu/cpu1/crash_notes_size", "440\n")
	w("sys/kernel/vmcoreinfo", "0x0000000004a02000 1024\n")
	w("proc/iomem", "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n000a0000-000bffff : PCI Bus 0000:00\n"+
		"00100000-7ffdefff : System RAM\n  20000000-201fffff : Kernel code\n  77000000-7effffff : Crash kernel\n7ffdf000-7fffffff : Reserved\n")
	const pageOffset = 0xffff9a4b40000000
	kcore := kcoreHeader(
		[3]uint64{0xffffffffa2c00000, 0x20000000, 0x3a00000},   // KCORE_TEXT: _text.._end
		[3]uint64{0xffffffffc0000000, ^uint64(0), 0x3f000000},  // modules (vmalloc): no paddr
		[3]uint64{pageOffset + 0x1000, 0x1000, 0x9e000},        // KCORE_RAM
		[3]uint64{pageOffset + 0x100000, 0x100000, 0x7fedf000}, // KCORE_RAM
	)
	w("proc/kcore", string(kcore))

	got, err := ReadElfcorehdrInput(root)
	if err != nil {
		t.Fatal(err)
	}
	want := ElfcorehdrInput{
		CPUNotes:        []memmap.Range{{Start: 0x7dc17000, End: 0x7dc17000 + 440}, {Start: 0x7dc57000, End: 0x7dc57000 + 440}},
		VMCOREINFO:      memmap.Range{Start: 0x4a02000, End: 0x4a02000 + 0x1024},
		KernelTextVaddr: 0xffffffffa2c00000,
		KernelText:      memmap.Range{Start: 0x20000000, End: 0x23a00000},
		PageOffset:      pageOffset,
		RAM:             []memmap.Range{{Start: 0x1000, End: 0x9fc00}, {Start: 0x100000, End: 0x7ffdf000}},
		Exclude:         []memmap.Range{{Start: 0x77000000, End: 0x7f000000}},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}

	for _, tt := range []struct{ name, rel, content string }{
		{"vmcoreinfo", "sys/kernel/vmcoreinfo", "garbage\n"},
		{"iomem without CAP_SYS_ADMIN", "proc/iomem", "00000000-00000000 : System RAM\n"},
		{"kcore without a text segment", "proc/kcore", string(kcoreHeader([3]uint64{pageOffset, 0, 0x1000}))},
		{"crash_notes", "sys/devices/system/cpu/cpu1/crash_notes", "zz\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			saved := readFile(t, filepath.Join(root, tt.rel))
			defer w(tt.rel, saved)
			w(tt.rel, tt.content)
			if _, err := ReadElfcorehdrInput(root); err == nil {
				t.Errorf("%s = %q: no error", tt.rel, tt.content)
			} else {
				t.Log(err)
			}
		})
	}
}
