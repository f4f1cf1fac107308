//go:build linux && amd64

package fastreboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"syscall"
	"testing"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// fakeCrashLoader records what kexec_load(KEXEC_ON_CRASH) would have
// loaded.
type fakeCrashLoader struct {
	fakeSegmentsLoader
	crashLoads int
}

func (l *fakeCrashLoader) SegmentsLoadOnCrash(entry uint64, segs []Segment) error {
	l.crashLoads++
	return l.SegmentsLoad(entry, segs)
}

// buildCrashSegments builds the rig's image for the crash path with the
// segments method, with /proc/iomem replaced by iomem when it is not "".
func buildCrashSegments(t *testing.T, iomem string) (*segmentsRig, *fakeCrashLoader, *Image) {
	t.Helper()
	changes := map[string]string{}
	if iomem != "" {
		changes[pathIomem] = iomem
	}
	r := newSegmentsRig(t, changes)
	l := &fakeCrashLoader{}
	r.opts.Loader = l
	img, err := New(r.cache, r.opts).BuildImage(context.Background(), r.m, r.src, BuildOptions{Reason: ReasonCrash, Segments: true, MemoryMap: r.so.MemoryMap})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { img.Close() })
	if img.Segments == nil || img.Report.Segments == nil || img.Report.Load != LoadSegments {
		t.Fatalf("BuildImage with Segments: segments %v, report %+v", img.Segments, img.Report.Segments)
	}
	return r, l, img
}

const crashCmdline = "console=ttyS0 fastreboot.crash=direct memmap=exactmap memmap=639K@0 memmap=2047M@1M"

// TestCrashSegmentsPlan: every segment and the entry inside the crash
// kernel reservation of /proc/iomem (0x30000000-0x3fffffff), the kernel
// 2 MiB aligned at its start with init_size of room, the trampoline told
// the kernel's entry and the zero page, the zero page given the whole
// firmware map, and room left for the control pages.
func TestCrashSegmentsPlan(t *testing.T) {
	_, l, img := buildCrashSegments(t, "")
	need := img.Segments.ReservationBytes(crashhandler.ModeDirect, 16)
	if err := img.Segments.LoadOnCrash(crashCmdline); err != nil {
		t.Fatal(err)
	}
	if l.crashLoads != 1 || l.loads != 1 || l.fileLoads != 0 {
		t.Fatalf("crash loads %d, loads %d, file loads %d; want one kexec_load(ON_CRASH)", l.crashLoads, l.loads, l.fileLoads)
	}
	res := memmap.Range{Start: 0x30000000, End: 0x40000000}
	rep := img.Report.Segments
	for _, s := range l.segs {
		if s.Phys < res.Start || s.Phys+s.Size > res.End {
			t.Errorf("%s segment %#x-%#x outside the reservation %#x-%#x", s.Name, s.Phys, s.Phys+s.Size, res.Start, res.End)
		}
		if s.Name != "kernel" && (s.Phys%4096 != 0 || s.Size%4096 != 0) {
			t.Errorf("%s segment %#x+%#x not page-aligned", s.Name, s.Phys, s.Size)
		}
		if s.Name != "kernel" && !(memmap.Range{Start: rep.KernelStart, End: rep.KernelEnd}).Intersect(memmap.Range{Start: s.Phys, End: s.Phys + s.Size}).Empty() {
			t.Errorf("%s segment %#x inside the kernel's footprint %#x-%#x", s.Name, s.Phys, rep.KernelStart, rep.KernelEnd)
		}
	}
	if k := l.segment(t, "kernel"); k.Phys != res.Start || rep.KernelStart != res.Start || rep.KernelEnd-rep.KernelStart < 4<<20 {
		t.Errorf("kernel at %#x, footprint %#x-%#x; want it at the reservation's start with its init_size", k.Phys, rep.KernelStart, rep.KernelEnd)
	}
	tramp := l.segment(t, "purgatory")
	if l.entry != tramp.Phys || rep.Entry != l.entry {
		t.Errorf("entry %#x, trampoline at %#x, report %#x", l.entry, tramp.Phys, rep.Entry)
	}
	le := binary.LittleEndian
	if !bytes.Equal(tramp.Buf[:len(crashTrampoline)], crashTrampoline[:]) ||
		le.Uint64(tramp.Buf[trampolineEntrySlot:]) != rep.KernelEntry || le.Uint64(tramp.Buf[trampolineBootParamsSlot:]) != rep.BootParams {
		t.Errorf("trampoline % x: want the code, entry %#x and boot_params %#x", tramp.Buf, rep.KernelEntry, rep.BootParams)
	}
	if cmd := l.segment(t, "cmdline"); string(cmd.Buf) != crashCmdline+"\x00" {
		t.Errorf("cmdline segment %q", cmd.Buf)
	}
	initrd, err := io.ReadAll(io.NewSectionReader(img.Initrd, 0, 1<<40))
	if err != nil {
		t.Fatal(err)
	}
	if in := l.segment(t, "initrd"); !bytes.Equal(in.Buf, initrd) {
		t.Errorf("initrd segment: %d bytes, not the image's initrd (%d bytes)", len(in.Buf), len(initrd))
	}
	bp := l.segment(t, "boot_params")
	if bp.Phys != rep.BootParams || le.Uint32(bp.Buf[bpCmdLinePtr:]) != uint32(l.segment(t, "cmdline").Phys) ||
		le.Uint32(bp.Buf[bpRamdiskImage:]) != uint32(l.segment(t, "initrd").Phys) || le.Uint32(bp.Buf[bpRamdiskSize:]) != uint32(len(initrd)) {
		t.Errorf("boot_params at %#x does not point at the cmdline and initrd segments", bp.Phys)
	}
	want, err := memmap.E820Table(qemuMap)
	if err != nil {
		t.Fatal(err)
	}
	var got []memmap.E820Entry
	for i := range int(bp.Buf[bpE820Entries]) {
		o := bpE820Table + i*e820EntrySize
		got = append(got, memmap.E820Entry{Addr: le.Uint64(bp.Buf[o:]), Size: le.Uint64(bp.Buf[o+8:]), Type: le.Uint32(bp.Buf[o+16:])})
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("the crash kernel's e820 is not the whole firmware map (-want +got):\n%s", d)
	}
	var end uint64
	for _, s := range l.segs {
		end = max(end, pageUp(s.Phys+s.Size))
	}
	if left := res.End - end; left < crashControlRoom(2<<30) {
		t.Errorf("%d KiB left in the reservation, want at least %d KiB for the control pages", left>>10, crashControlRoom(2<<30)>>10)
	}
	if used := end - res.Start + crashControlRoom(2<<30); int64(used) > need {
		t.Errorf("the plan takes %d bytes with its control room, ReservationBytes said %d", used, need)
	}
	if len(rep.Avoided) != 1 || rep.Avoided[0].Start != end || rep.Avoided[0].End != res.End {
		t.Errorf("report avoided %+v, want the free tail %#x-%#x", rep.Avoided, end, res.End)
	}
}

func TestCrashSegmentsRefusals(t *testing.T) {
	tests := []struct {
		name      string
		iomem     string
		loaderErr error
		want      []error
		wantText  []string
		wantLoads int
	}{
		{
			name:     "reservation too small",
			iomem:    "00100000-7ffdffff : System RAM\n  30000000-303fffff : Crash kernel\n",
			want:     []error{crashhandler.ErrReservationTooSmall},
			wantText: []string{"0x30000000-0x303fffff (4.0 MiB)", "the segments image needs", "raise crashkernel="},
		},
		{
			name:     "no reservation",
			iomem:    "00100000-7ffdffff : System RAM\n",
			want:     []error{crashhandler.ErrNoReservation},
			wantText: []string{"Crash kernel"},
		},
		{
			name:     "read without CAP_SYS_ADMIN",
			iomem:    "00000000-00000000 : System RAM\n  00000000-00000000 : Crash kernel\n",
			want:     []error{crashhandler.ErrNoReservation},
			wantText: []string{"CAP_SYS_ADMIN"},
		},
		{
			name:      "EPERM",
			loaderErr: &KexecError{Op: kexecsys.OpLoad, Errno: syscall.EPERM},
			want:      []error{crashhandler.ErrKexecLoadForbidden, ErrKexecLoadForbidden, syscall.EPERM},
			wantLoads: 1,
		},
		{
			name:      "EADDRNOTAVAIL",
			loaderErr: &KexecError{Op: kexecsys.OpLoad, Errno: syscall.EADDRNOTAVAIL},
			want:      []error{ErrNoMemory, crashhandler.ErrKexecLoadFailed},
			wantLoads: 1,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, l, img := buildCrashSegments(t, tt.iomem)
			l.err = tt.loaderErr
			err := img.Segments.LoadOnCrash(crashCmdline)
			t.Logf("LoadOnCrash: %v", err)
			for _, w := range tt.want {
				if !errors.Is(err, w) {
					t.Errorf("LoadOnCrash: %v, want %v", err, w)
				}
			}
			for _, w := range tt.wantText {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("LoadOnCrash error %v lacks %q", err, w)
				}
			}
			if l.crashLoads != tt.wantLoads {
				t.Errorf("kexec_load called %d times, want %d", l.crashLoads, tt.wantLoads)
			}
		})
	}
}

// TestCrashSegmentsReservationBytes: the plan fits a reservation of
// exactly ReservationBytes (page-rounded) and no less.
func TestCrashSegmentsReservationBytes(t *testing.T) {
	_, _, img := buildCrashSegments(t, "")
	need := uint64(img.Segments.ReservationBytes(crashhandler.ModeDirect, 16))
	for _, tt := range []struct {
		size uint64
		ok   bool
	}{{pageUp(need), true}, {pageUp(need) - 4096, false}} {
		iomem := fmt.Sprintf("00100000-7ffdffff : System RAM\n  30000000-%08x : Crash kernel\n", 0x30000000+tt.size-1)
		_, l, img := buildCrashSegments(t, iomem)
		err := img.Segments.LoadOnCrash(crashCmdline)
		if (err == nil) != tt.ok || (err != nil && !errors.Is(err, crashhandler.ErrReservationTooSmall)) {
			t.Errorf("reservation of %d bytes (need %d): %v, loads %d", tt.size, need, err, l.crashLoads)
		}
	}
}

func TestCrashSegmentsNeedsCrashLoader(t *testing.T) {
	r := newSegmentsRig(t, nil)
	img, err := New(r.cache, r.opts).BuildImage(context.Background(), r.m, r.src, BuildOptions{Reason: ReasonCrash, Segments: true, MemoryMap: r.so.MemoryMap})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if err := img.Segments.LoadOnCrash(crashCmdline); err == nil || !strings.Contains(err.Error(), "CrashSegmentsLoader") || r.loader.loads != 0 {
		t.Errorf("LoadOnCrash with a loader without kexec_load ON_CRASH: %v, loads %d", err, r.loader.loads)
	}
}

func TestCrashReservation(t *testing.T) {
	iomem, err := memmap.ParseIomem(strings.NewReader("00100000-bfffffff : System RAM\n  10000000-11ffffff : Crash kernel\n100000000-17fffffff : System RAM\n  140000000-15fffffff : Crash kernel\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := crashReservation(iomem); !ok || r != (memmap.Range{Start: 0x140000000, End: 0x160000000}) {
		t.Errorf("crashReservation = %#x, %v; want the larger (high) one", r, ok)
	}
}

// fakeKcore is the start of a /proc/kcore: an ELF64 core header whose
// PT_LOADs are the kernel text mapping and the direct map.
func fakeKcore(textVaddr, textPaddr, textSize, pageOffset uint64) string {
	le := binary.LittleEndian
	b := make([]byte, 64+2*56)
	copy(b, "\x7fELF\x02\x01\x01")
	le.PutUint16(b[16:], 4) // ET_CORE
	le.PutUint16(b[18:], 62)
	le.PutUint32(b[20:], 1)
	le.PutUint64(b[32:], 64)
	le.PutUint16(b[52:], 64)
	le.PutUint16(b[54:], 56)
	le.PutUint16(b[56:], 2)
	for i, l := range [][3]uint64{{textVaddr, textPaddr, textSize}, {pageOffset + 0x100000, 0x100000, 0x7fedf000}} {
		p := b[64+i*56:]
		le.PutUint32(p[0:], 1)
		le.PutUint64(p[16:], l[0])
		le.PutUint64(p[24:], l[1])
		le.PutUint64(p[40:], l[2])
	}
	return string(b)
}

// TestCrashSegmentsTwoStage: a two-stage image carries the ELF core header
// built from the running kernel (inside the reservation, named by
// elfcorehdr= at the end of the command line) and gives the crash kernel
// as RAM only the first 640 KiB and the reservation, the header reserved.
func TestCrashSegmentsTwoStage(t *testing.T) {
	const pageOffset = 0xffff9a4b40000000
	r := newSegmentsRig(t, map[string]string{
		"sys/devices/system/cpu/possible":              "0-3\n",
		"sys/devices/system/cpu/present":               "0-1\n",
		"sys/devices/system/cpu/online":                "0-1\n",
		"sys/devices/system/cpu/cpu0/crash_notes":      "7dc17000\n",
		"sys/devices/system/cpu/cpu0/crash_notes_size": "440\n",
		"sys/devices/system/cpu/cpu1/crash_notes":      "7dc57000\n",
		"sys/devices/system/cpu/cpu1/crash_notes_size": "440\n",
		"sys/kernel/vmcoreinfo":                        "0x0000000004a02000 1024\n",
		"proc/kcore":                                   fakeKcore(0xffffffffa2c00000, 0x20000000, 0x3a00000, pageOffset),
		pathIomem: "00000000-00000fff : Reserved\n00001000-0009fbff : System RAM\n000f0000-000fffff : System ROM\n" +
			"00100000-7ffdffff : System RAM\n  20000000-20e00fff : Kernel code\n  30000000-3fffffff : Crash kernel\n" +
			"7ffe0000-7fffffff : Reserved\n100000000-17fffffff : System RAM\n",
	})
	l := &fakeCrashLoader{}
	r.opts.Loader = l
	img, err := New(r.cache, r.opts).BuildImage(context.Background(), r.m, r.src, BuildOptions{Reason: ReasonCrash, Segments: true, MemoryMap: r.so.MemoryMap})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	const cmdline = "console=ttyS0 fastreboot.crash=two-stage reset_devices irqpoll"
	if err := img.Segments.LoadOnCrash(cmdline); err != nil {
		t.Fatal(err)
	}
	res := memmap.Range{Start: 0x30000000, End: 0x40000000}
	hdr := l.segment(t, "elfcorehdr")
	if hdr.Phys < res.Start || hdr.Phys+hdr.Size > res.End {
		t.Errorf("elfcorehdr at %#x+%#x outside the reservation", hdr.Phys, hdr.Size)
	}
	if got, want := string(l.segment(t, "cmdline").Buf), fmt.Sprintf("%s elfcorehdr=%#x\x00", cmdline, hdr.Phys); got != want {
		t.Errorf("cmdline %q, want %q", got, want)
	}
	core, err := crashhandler.OpenVmcore(bytes.NewReader(hdr.Buf))
	if err != nil {
		t.Fatal(err)
	}
	var notes, loads []crashhandler.Segment
	for _, s := range core.Segments {
		if s.Type == 4 {
			notes = append(notes, s)
		}
	}
	loads = core.Loads()
	if len(notes) != 3 || notes[0].Paddr != 0x7dc17000 || notes[2].Paddr != 0x4a02000 || notes[2].Filesz != 0x1024 {
		t.Errorf("PT_NOTEs %+v: want the two CPUs' crash_notes and VMCOREINFO", notes)
	}
	wantLoads := []crashhandler.Segment{
		{Type: 1, Offset: 0x20000000, Vaddr: 0xffffffffa2c00000, Paddr: 0x20000000, Filesz: 0x3a00000, Memsz: 0x3a00000},
		{Type: 1, Offset: 0x100000, Vaddr: pageOffset + 0x100000, Paddr: 0x100000, Filesz: 0x30000000 - 0x100000, Memsz: 0x30000000 - 0x100000},
		{Type: 1, Offset: 0x40000000, Vaddr: pageOffset + 0x40000000, Paddr: 0x40000000, Filesz: 0x7ffe0000 - 0x40000000, Memsz: 0x7ffe0000 - 0x40000000},
		{Type: 1, Offset: 0x100000000, Vaddr: pageOffset + 0x100000000, Paddr: 0x100000000, Filesz: 0x80000000, Memsz: 0x80000000},
	}
	if d := cmp.Diff(wantLoads, loads); d != "" {
		t.Errorf("PT_LOADs (-want +got): the text, RAM of /proc/iomem without the first MiB and the reservation:\n%s", d)
	}

	bp := l.segment(t, "boot_params")
	le := binary.LittleEndian
	var e820 []memmap.E820Entry
	for i := range int(bp.Buf[bpE820Entries]) {
		o := bpE820Table + i*e820EntrySize
		e820 = append(e820, memmap.E820Entry{Addr: le.Uint64(bp.Buf[o:]), Size: le.Uint64(bp.Buf[o+8:]), Type: le.Uint32(bp.Buf[o+16:])})
	}
	var ram []memmap.Range
	for _, e := range e820 {
		switch e.Type {
		case memmap.E820RAM:
			ram = append(ram, memmap.Range{Start: e.Addr, End: e.Addr + e.Size})
		case memmap.E820Reserved:
			if e.Addr == hdr.Phys && e.Size != pageUp(uint64(len(hdr.Buf))) {
				t.Errorf("elfcorehdr reserved as %#x+%#x, want its pages", e.Addr, e.Size)
			}
		}
	}
	wantRAM := []memmap.Range{{Start: 0, End: 0x9fc00}, {Start: res.Start, End: hdr.Phys}, {Start: hdr.Phys + pageUp(uint64(len(hdr.Buf))), End: res.End}}
	if d := cmp.Diff(wantRAM, ram, cmp.AllowUnexported(memmap.Range{})); d != "" {
		t.Errorf("the crash kernel's RAM (-want +got):\n%s\n(e820 %+v)", d, e820)
	}
	if n := img.Segments.ReservationBytes(crashhandler.ModeTwoStage, 4); n <= img.Segments.ReservationBytes(crashhandler.ModeDirect, 4) {
		t.Errorf("two-stage ReservationBytes %d: no room for the ELF core header", n)
	}
}
