//go:build linux && amd64

package fastreboot

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// fakeSegmentsLoader records what kexec_load would have loaded; FileLoad
// must never be called when the segments method is chosen.
type fakeSegmentsLoader struct {
	mu  sync.Mutex
	err error
	// fileOK makes FileLoad succeed (a StageOptions.FileFallback test).
	fileOK    bool
	fileLoads int
	loads     int
	entry     uint64
	segs      []Segment // with copies of the buffers
}

func (l *fakeSegmentsLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.fileLoads++
	if l.fileOK {
		return nil
	}
	return errors.New("fakeSegmentsLoader: FileLoad called")
}

func (l *fakeSegmentsLoader) SegmentsLoad(entry uint64, segs []Segment) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.loads++
	if l.err != nil {
		return l.err
	}
	// Every plan starts its segments on a page, so that kexecsys.Load
	// hands them to kexec_load without copying them (a copy of the
	// whole image would not fit a crash kernel's reservation).
	for _, s := range segs {
		if s.Phys%4096 != 0 {
			return fmt.Errorf("fakeSegmentsLoader: %s segment at %#x does not start on a page", s.Name, s.Phys)
		}
	}
	l.entry = entry
	l.segs = nil
	for _, s := range segs {
		s.Buf = bytes.Clone(s.Buf) // the caller unmaps its buffers
		l.segs = append(l.segs, s)
	}
	return nil
}

func (l *fakeSegmentsLoader) segment(t *testing.T, name string) Segment {
	t.Helper()
	for _, s := range l.segs {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("no %s segment in %v", name, l.segs)
	return Segment{}
}

// segmentsTree is a machine that can kexec_load: goodTree plus the files
// the segments method reads. Its /proc/iomem reserves 0x30000000-0x3fffffff
// for the crash kernel and keeps 0x40000000-0x40ffffff (memmap=16M$1G).
func segmentsTree(t *testing.T, changes map[string]string) string {
	t.Helper()
	running := make([]byte, zeroPageSize)
	binary.LittleEndian.PutUint64(running[0x070:], 0xf5a40)
	files := tree(map[string]string{
		pathIomem:      testIomem,
		pathCmdline:    "console=ttyS0 memmap=16M$0x40000000 crashkernel=256M\n",
		pathBootParams: string(running),
	})
	for k, v := range changes {
		if v == "-" {
			delete(files, k)
		} else {
			files[k] = v
		}
	}
	return fakeTree(t, files)
}

// newSegmentsCache is a cache as the daemon makes it for segments.
func newSegmentsCache(t *testing.T) *modcache.Cache {
	t.Helper()
	c := modcache.New(modcache.Options{Check: CheckModule})
	t.Cleanup(func() { c.Close() })
	return c
}

type segmentsRig struct {
	im     testimage.Image
	m      *bootimage.Manifest
	src    modcache.Source
	cache  *modcache.Cache
	loader *fakeSegmentsLoader
	opts   Options
	so     StageOptions
}

func newSegmentsRig(t *testing.T, treeChanges map[string]string) *segmentsRig {
	t.Helper()
	im := testimage.Default()
	im.Kernel.Data = testimage.Kernel(testimage.KernelOptions{PayloadBytes: 20000})
	im.Cmdline = "console=ttyS0 memmap=16M$0x40000000 crashkernel=256M"
	m, dir := im.WriteTempDir(t)
	r := &segmentsRig{im: im, m: m, src: modcache.DirSource(dir), cache: newSegmentsCache(t), loader: &fakeSegmentsLoader{}}
	r.opts = Options{
		Root:     segmentsTree(t, treeChanges),
		Loader:   r.loader,
		StateDir: t.TempDir(),
		Now:      stepClock(t0, time.Millisecond),
		Logger:   testLogger(t),
	}
	r.so = StageOptions{Reason: ReasonUpdate, Load: LoadSegments, MemoryMap: qemuMap}
	return r
}

func (r *segmentsRig) stage(t *testing.T) (StageReport, error) {
	t.Helper()
	return New(r.cache, r.opts).Stage(context.Background(), r.m, r.src, r.so)
}

func elfOf(t *testing.T, kernel []byte) []byte {
	t.Helper()
	b, err := decompressKernel(bytes.NewReader(kernel), int64(len(kernel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestStageSegments(t *testing.T) {
	r := newSegmentsRig(t, nil)
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	l := r.loader
	if l.loads != 1 || l.fileLoads != 0 {
		t.Fatalf("kexec_load called %d times, kexec_file_load %d times; want 1 and 0", l.loads, l.fileLoads)
	}
	if !rep.Loaded || rep.Load != LoadSegments || rep.Segments == nil {
		t.Fatalf("report: loaded %v, load %q, segments %v", rep.Loaded, rep.Load, rep.Segments)
	}
	elfBytes := elfOf(t, r.im.Kernel.Data)
	wantELF := KernelELF{Kernel: r.m.Kernel().SHA256, SHA256: testimage.Digest(elfBytes), Size: int64(len(elfBytes))}
	s := rep.Segments
	if s.KernelELF != wantELF || !s.Decompressed || s.MemoryMap != memoryMapRecorded || s.E820Entries != 7 {
		t.Errorf("segments report: ELF %+v decompressed %v map %q e820 %d; want %+v, true, recorded, 7",
			s.KernelELF, s.Decompressed, s.MemoryMap, s.E820Entries, wantELF)
	}

	// The kernel at its linked address, entered through the purgatory.
	k := l.segment(t, "kernel")
	if k.Phys != 0x1000000 || !bytes.Equal(k.Buf, elfBytes) || s.Relocated || s.KernelEntry != 0x1000000+64+56 {
		t.Errorf("kernel segment at %#x (%d bytes, same as the ELF: %v), relocated %v, entry %#x",
			k.Phys, len(k.Buf), bytes.Equal(k.Buf, elfBytes), s.Relocated, s.KernelEntry)
	}
	p := l.segment(t, "purgatory")
	le := binary.LittleEndian
	if p.Phys != 0x3000 || l.entry != 0x3000 || le.Uint64(p.Buf[8:]) != s.KernelEntry || le.Uint64(p.Buf[16:]) != s.BootParams {
		t.Errorf("purgatory at %#x, entry %#x, jumps to %#x with rsi %#x; want 0x3000 jumping to %#x with %#x",
			p.Phys, l.entry, le.Uint64(p.Buf[8:]), le.Uint64(p.Buf[16:]), s.KernelEntry, s.BootParams)
	}

	// The initrd: the pieces, then the handoff, which records the ELF's
	// digest but does not carry the ELF.
	initrd := l.segment(t, "initrd")
	want := padded(r.im)
	if !bytes.HasPrefix(initrd.Buf, want) {
		t.Fatal("initrd segment does not start with the padded pieces")
	}
	h, mods := handoffFromPiece(t, initrd.Buf[len(want):])
	if diff := cmp.Diff([]KernelELF{wantELF}, h.KernelELFs); diff != "" {
		t.Errorf("handoff kernel ELFs (-want +got):\n%s", diff)
	}
	if _, ok := mods[wantELF.SHA256]; ok {
		t.Errorf("the handoff carries the decompressed kernel")
	}
	if len(mods) != len(r.m.Modules) {
		t.Errorf("the handoff carries %d files, want the %d modules", len(mods), len(r.m.Modules))
	}
	cmdline := l.segment(t, "cmdline")
	if string(cmdline.Buf) != r.m.Cmdline+"\x00" {
		t.Errorf("cmdline segment %q", cmdline.Buf)
	}

	// The zero page points at them and holds the firmware map.
	bp := l.segment(t, "boot_params")
	if bp.Phys != s.BootParams || len(bp.Buf) != zeroPageSize {
		t.Fatalf("boot_params segment at %#x, %d bytes", bp.Phys, len(bp.Buf))
	}
	ptr := func(lo, hi int) uint64 {
		return uint64(le.Uint32(bp.Buf[lo:])) | uint64(le.Uint32(bp.Buf[hi:]))<<32
	}
	if ptr(bpRamdiskImage, bpExtRamdiskImage) != initrd.Phys || ptr(bpRamdiskSize, bpExtRamdiskSize) != uint64(len(initrd.Buf)) ||
		ptr(bpCmdLinePtr, bpExtCmdLinePtr) != cmdline.Phys {
		t.Errorf("zero page: ramdisk %#x+%d, cmdline %#x; want %#x+%d, %#x", ptr(bpRamdiskImage, bpExtRamdiskImage),
			ptr(bpRamdiskSize, bpExtRamdiskSize), ptr(bpCmdLinePtr, bpExtCmdLinePtr), initrd.Phys, len(initrd.Buf), cmdline.Phys)
	}
	if n := int(bp.Buf[bpE820Entries]); n != 7 || le.Uint64(bp.Buf[bpE820Table+6*e820EntrySize:]) != 0x100000000 {
		t.Errorf("zero page e820: %d entries, last at %#x; want the 7 of the firmware map", n, le.Uint64(bp.Buf[bpE820Table+6*e820EntrySize:]))
	}

	// Every segment in firmware RAM, none in the crash reservation or the
	// kept region, none below 1 MiB but the purgatory.
	for _, seg := range l.segs {
		if err := checkPlacement([]Segment{seg}, placement{RAM: []memmap.Range{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x7ffe0000}, {Start: 0x100000000, End: 0x180000000}}}); err != nil {
			t.Error(err)
		}
		for _, bad := range []memmap.Range{{Start: 0x30000000, End: 0x40000000}, {Start: 0x40000000, End: 0x41000000}} {
			if !bad.Intersect(memmap.Range{Start: seg.Phys, End: seg.Phys + seg.Size}).Empty() {
				t.Errorf("%s segment %#x+%#x overlaps %#x-%#x", seg.Name, seg.Phys, seg.Size, bad.Start, bad.End)
			}
		}
		if seg.Phys < 1<<20 && seg.Name != "purgatory" {
			t.Errorf("%s segment below 1 MiB at %#x", seg.Name, seg.Phys)
		}
	}
	wantAvoided := []string{"crash kernel reservation", "kept by the running kernel: Reserved", "kept by memmap= on the next command line"}
	var whys []string
	for _, a := range s.Avoided {
		whys = append(whys, a.Why)
	}
	for _, w := range wantAvoided {
		if !strings.Contains(strings.Join(whys, "\n"), w) {
			t.Errorf("avoided ranges %q lack %q", whys, w)
		}
	}

	// The ELF is its own cache entry and its digest is recorded.
	e, err := r.cache.Get(wantELF.SHA256)
	if err != nil {
		t.Fatalf("the ELF is not cached: %v", err)
	}
	if !slices.Contains(e.Names(), "kernel-elf:"+wantELF.Kernel) {
		t.Errorf("ELF cache entry names %v, want kernel-elf:<kernel digest>", e.Names())
	}
	recs, err := readKernelELFs(r.opts.StateDir)
	if err != nil || recs[wantELF.Kernel] != wantELF {
		t.Errorf("index records %v (%v), want %+v", recs, err, wantELF)
	}

	// The next Stage finds it in the cache: nothing is decompressed.
	rep, err = r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Segments.Decompressed || rep.Segments.KernelELF != wantELF || l.loads != 2 || rep.Sync.BytesRead != 0 {
		t.Errorf("second stage: decompressed %v, ELF %+v, loads %d, read %d; want a cache hit", rep.Segments.Decompressed, rep.Segments.KernelELF, l.loads, rep.Sync.BytesRead)
	}
}

func TestStageSegmentsRelocatesKernel(t *testing.T) {
	// A crash reservation over the kernel's linked address (16 MiB).
	r := newSegmentsRig(t, map[string]string{
		pathIomem: "00100000-7ffdffff : System RAM\n  00c00000-02bfffff : Crash kernel\n",
	})
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Segments
	k := r.loader.segment(t, "kernel")
	if !s.Relocated || k.Phys < 0x2c00000 || k.Phys%0x200000 != 0 || s.KernelEntry != k.Phys+64+56 {
		t.Errorf("kernel at %#x (relocated %v, entry %#x): want it moved above the reservation, 2 MiB aligned, entry moved with it",
			k.Phys, s.Relocated, s.KernelEntry)
	}
	if s.KernelEnd-s.KernelStart < 4<<20 {
		t.Errorf("kernel footprint %#x-%#x smaller than its init_size", s.KernelStart, s.KernelEnd)
	}
	// No other segment inside the kernel's footprint.
	for _, seg := range r.loader.segs {
		if seg.Name != "kernel" && !(memmap.Range{Start: s.KernelStart, End: s.KernelEnd}).Intersect(memmap.Range{Start: seg.Phys, End: seg.Phys + seg.Size}).Empty() {
			t.Errorf("%s segment %#x inside the kernel's footprint %#x-%#x", seg.Name, seg.Phys, s.KernelStart, s.KernelEnd)
		}
	}
}

func TestStageSegmentsNoRoom(t *testing.T) {
	r := newSegmentsRig(t, nil)
	r.so.MemoryMap = memmap.Map{{Start: 0, End: 0x9fbff, Type: memmap.TypeRAM}, {Start: 0x100000, End: 0x13fffff, Type: memmap.TypeRAM}}
	_, err := r.stage(t)
	if !errors.Is(err, ErrNoMemory) || !strings.Contains(err.Error(), "kernel") || r.loader.loads != 0 {
		t.Errorf("20 MiB of RAM: err = %v, loads %d; want ErrNoMemory naming the kernel and no load", err, r.loader.loads)
	}
}

func TestStageSegmentsRefusesMismatchedKernelELF(t *testing.T) {
	bogus := strings.Repeat("ab", 32)
	tamper := func(t *testing.T, r *segmentsRig) {
		t.Helper()
		if err := recordKernelELFs(r.opts.StateDir, KernelELF{Kernel: r.m.Kernel().SHA256, SHA256: bogus, Size: 4096}); err != nil {
			t.Fatal(err)
		}
	}
	t.Run("cached ELF against a tampered record", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		if _, err := r.stage(t); err != nil {
			t.Fatal(err)
		}
		tamper(t, r)
		_, err := r.stage(t)
		if !errors.Is(err, ErrKernelELFMismatch) || !strings.Contains(err.Error(), bogus) || !strings.Contains(err.Error(), "vmlinuz") {
			t.Errorf("err = %v, want ErrKernelELFMismatch naming the kernel and the recorded digest", err)
		}
		if r.loader.loads != 1 {
			t.Errorf("kexec_load called %d times, want only the first stage", r.loader.loads)
		}
	})
	t.Run("decompressed again against a tampered record", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		tamper(t, r)
		_, err := r.stage(t)
		if !errors.Is(err, ErrKernelELFMismatch) || !strings.Contains(err.Error(), "decompressing it gives") {
			t.Errorf("err = %v, want ErrKernelELFMismatch after decompressing", err)
		}
		if r.loader.loads != 0 || len(r.cache.List()) != 4 {
			t.Errorf("loads %d, cache holds %d entries; want no load and no ELF cached", r.loader.loads, len(r.cache.List()))
		}
	})
	t.Run("record kept, cached copy lost", func(t *testing.T) {
		// A recorded ELF that is not cached (its carried copy failed
		// rehydration) is decompressed again and must match.
		r := newSegmentsRig(t, nil)
		if _, err := r.stage(t); err != nil {
			t.Fatal(err)
		}
		r.cache.Evict(r.m) // drops the ELF, keeps the modules
		rep, err := r.stage(t)
		if err != nil || !rep.Segments.Decompressed {
			t.Errorf("err = %v, decompressed %v; want a fresh, matching decompression", err, rep.Segments != nil && rep.Segments.Decompressed)
		}
	})
}

func TestStageSegmentsForbidden(t *testing.T) {
	t.Run("lockdown", func(t *testing.T) {
		r := newSegmentsRig(t, map[string]string{pathLockdown: "none [integrity] confidentiality\n"})
		_, err := r.stage(t)
		if !errors.Is(err, ErrKexecLoadForbidden) || !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), "--load=file") {
			t.Errorf("err = %v, want ErrKexecLoadForbidden pointing at --load=file", err)
		}
		if r.loader.loads+r.loader.fileLoads != 0 || len(r.cache.List()) != 4 {
			t.Errorf("loads %d+%d, %d cached; want nothing loaded and nothing decompressed", r.loader.loads, r.loader.fileLoads, len(r.cache.List()))
		}
	})
	t.Run("kexec_load EPERM does not fall back", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		r.loader.err = &KexecError{Op: kexecsys.OpLoad, Errno: syscall.EPERM}
		_, err := r.stage(t)
		if !errors.Is(err, ErrKexecLoadForbidden) || !errors.Is(err, syscall.EPERM) || !strings.Contains(err.Error(), "--load=file") {
			t.Errorf("err = %v, want the EPERM mapped to ErrKexecLoadForbidden", err)
		}
		if r.loader.fileLoads != 0 {
			t.Error("kexec_file_load was tried after kexec_load failed: no silent fallback allowed")
		}
	})
	t.Run("loader without kexec_load", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		r.opts.Loader = &fakeLoader{}
		_, err := r.stage(t)
		if err == nil || !strings.Contains(err.Error(), "SegmentsLoader") {
			t.Errorf("err = %v, want a refusal naming SegmentsLoader", err)
		}
	})
}

// TestStageSegmentsCompressed: with CompressedKernel the kernel segment is
// the bzImage's protected-mode part as it is, at pref_address, taking
// init_size, entered 0x200 in; nothing is decompressed, cached or recorded.
func TestStageSegmentsCompressed(t *testing.T) {
	r := newSegmentsRig(t, nil)
	r.so.CompressedKernel = true
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	kernel := r.im.Kernel.Data
	setup := (int(kernel[testimage.OffSetupSects]) + 1) * 512
	code := int(binary.LittleEndian.Uint32(kernel[testimage.OffSyssize:])) * 16
	initSize := uint64(binary.LittleEndian.Uint32(kernel[0x260:]))
	k := r.loader.segment(t, "kernel")
	if !bytes.Equal(k.Buf, kernel[setup:setup+code]) {
		t.Errorf("kernel segment: %d bytes, want the %d bytes of the protected-mode part at file offset %d", len(k.Buf), code, setup)
	}
	if k.Phys != 0x1000000 || k.Size != pageUp(max(initSize, uint64(code))) {
		t.Errorf("kernel segment at %#x, %#x bytes; want pref_address 0x1000000, init_size %#x rounded to a page", k.Phys, k.Size, initSize)
	}
	s := rep.Segments
	if !s.Compressed || s.Decompressed || s.KernelEntry != 0x1000200 || s.KernelELF != (KernelELF{}) {
		t.Errorf("report: compressed %v, decompressed %v, kernel entry %#x, ELF %+v; want compressed, entry 0x1000200, no ELF",
			s.Compressed, s.Decompressed, s.KernelEntry, s.KernelELF)
	}
	if n := len(r.cache.List()); n != 4 {
		t.Errorf("cache holds %d entries, want the manifest's 4 (no decompressed kernel)", n)
	}
	if recs, err := readKernelELFs(r.opts.StateDir); err != nil || len(recs) != 0 {
		t.Errorf("kernel ELF records %v (%v), want none", recs, err)
	}
	h, _ := handoffFromPiece(t, r.loader.segment(t, "initrd").Buf[len(padded(r.im)):])
	if len(h.KernelELFs) != 0 {
		t.Errorf("handoff records %v, want no decompressed kernel", h.KernelELFs)
	}

	// Relocated above a reservation over pref_address, entry with it.
	r = newSegmentsRig(t, map[string]string{pathIomem: "00100000-7ffdffff : System RAM\n  00c00000-02bfffff : Crash kernel\n"})
	r.so.CompressedKernel = true
	rep, err = r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	k = r.loader.segment(t, "kernel")
	if !rep.Segments.Relocated || k.Phys < 0x2c00000 || k.Phys%0x200000 != 0 || rep.Segments.KernelEntry != k.Phys+0x200 {
		t.Errorf("relocated: kernel at %#x, entry %#x; want it above the reservation, 2 MiB aligned, entry 0x200 in", k.Phys, rep.Segments.KernelEntry)
	}
}

func TestCompressedImageRefuses(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts testimage.KernelOptions
		edit func([]byte)
		want string
	}{
		{"no 64-bit entry", testimage.KernelOptions{Not64Bit: true}, nil, "XLF_KERNEL_64"},
		{"init_size 0", testimage.KernelOptions{}, func(b []byte) { binary.LittleEndian.PutUint32(b[0x260:], 0) }, "init_size"},
		{"pref_address unaligned", testimage.KernelOptions{}, func(b []byte) { binary.LittleEndian.PutUint64(b[0x258:], 0x1000400) }, "pref_address"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newSegmentsRig(t, nil)
			tc.opts.PayloadBytes = 20000
			r.im.Kernel.Data = testimage.Kernel(tc.opts)
			if tc.edit != nil {
				tc.edit(r.im.Kernel.Data)
			}
			var dir string
			r.m, dir = r.im.WriteTempDir(t)
			r.src = modcache.DirSource(dir)
			r.so.CompressedKernel = true
			_, err := r.stage(t)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), r.m.Kernel().Name) || r.loader.loads != 0 {
				t.Errorf("err = %v, loads %d; want a refusal naming the kernel and %s, no load", err, r.loader.loads, tc.want)
			}
		})
	}
}

// TestStageSegmentsFileFallback: with FileFallback a stage that cannot use
// kexec_load loads the same image with kexec_file_load and says why.
func TestStageSegmentsFileFallback(t *testing.T) {
	t.Run("lockdown", func(t *testing.T) {
		r := newSegmentsRig(t, map[string]string{pathLockdown: "none [integrity] confidentiality\n"})
		r.so.FileFallback, r.loader.fileOK = true, true
		rep, err := r.stage(t)
		if err != nil {
			t.Fatal(err)
		}
		if r.loader.fileLoads != 1 || r.loader.loads != 0 || !rep.Loaded || rep.Load != LoadFile || rep.Segments != nil ||
			!strings.Contains(rep.LoadFallback, "lockdown") {
			t.Errorf("file loads %d, kexec_loads %d, loaded %v, load %s, fallback %q; want one kexec_file_load saying lockdown",
				r.loader.fileLoads, r.loader.loads, rep.Loaded, rep.Load, rep.LoadFallback)
		}
	})
	t.Run("kexec_load EPERM", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		r.so.FileFallback, r.so.CompressedKernel, r.loader.fileOK = true, true, true
		r.loader.err = &KexecError{Op: kexecsys.OpLoad, Errno: syscall.EPERM}
		rep, err := r.stage(t)
		if err != nil {
			t.Fatal(err)
		}
		if r.loader.fileLoads != 1 || r.loader.loads != 1 || rep.Load != LoadFile || !strings.Contains(rep.LoadFallback, "kexec_load") {
			t.Errorf("file loads %d, kexec_loads %d, load %s, fallback %q; want kexec_load tried, then kexec_file_load", r.loader.fileLoads, r.loader.loads, rep.Load, rep.LoadFallback)
		}
	})
	t.Run("an image error does not fall back", func(t *testing.T) {
		r := newSegmentsRig(t, nil)
		r.so.FileFallback, r.loader.fileOK = true, true
		r.loader.err = &KexecError{Op: kexecsys.OpLoad, Errno: syscall.EADDRNOTAVAIL}
		if _, err := r.stage(t); err == nil || r.loader.fileLoads != 0 {
			t.Errorf("err = %v, file loads %d; want the kexec_load error and no kexec_file_load", err, r.loader.fileLoads)
		}
	})
	t.Run("kexec_file_load fails too", func(t *testing.T) {
		r := newSegmentsRig(t, map[string]string{pathLockdown: "none [integrity] confidentiality\n"})
		r.so.FileFallback = true
		_, err := r.stage(t)
		if err == nil || !strings.Contains(err.Error(), "FileLoad called") || !strings.Contains(err.Error(), "lockdown") {
			t.Errorf("err = %v, want kexec_file_load's error saying why it was tried", err)
		}
	})
}

func TestStageSegmentsDryRunAndCarryNone(t *testing.T) {
	r := newSegmentsRig(t, nil)
	r.so.DryRun = true
	r.so.Carry = CarryNone
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Loaded || r.loader.loads != 0 || len(rep.Segments.Segments) < 5 || rep.Segments.Entry != 0x3000 {
		t.Errorf("dry run: loaded %v, loads %d, %d segments planned, entry %#x", rep.Loaded, r.loader.loads, len(rep.Segments.Segments), rep.Segments.Entry)
	}
	if rep.CarriedModules != 0 {
		t.Errorf("CarryNone carried %d modules", rep.CarriedModules)
	}
}

// TestResumeRecordsKernelELF: the next generation gets the ELF's digest,
// not the ELF; PrepareKernelELF derives it again from the rehydrated
// bzImage and checks it against that digest, after which a segments Stage
// reads no storage and decompresses nothing. A record that the derived ELF
// does not match refuses it.
func TestResumeRecordsKernelELF(t *testing.T) {
	r := newSegmentsRig(t, nil)
	if _, err := r.stage(t); err != nil {
		t.Fatal(err)
	}
	initrd := r.loader.segment(t, "initrd")
	h, mods := handoffFromPiece(t, initrd.Buf[len(padded(r.im)):])
	elf := h.KernelELFs[0]

	// unpack lays the handoff piece out as the next kernel's rootfs holds
	// it, with the handoff's ELF record replaced if asked.
	unpack := func(t *testing.T, rec *KernelELF) string {
		t.Helper()
		root := t.TempDir()
		dir := filepath.Join(root, HandoffModulesDir)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for d, data := range mods {
			if err := os.WriteFile(filepath.Join(dir, d), []byte(data), 0o444); err != nil {
				t.Fatal(err)
			}
		}
		hh := *h
		if rec != nil {
			hh.KernelELFs = []KernelELF{*rec}
		}
		js, err := json.Marshal(hh)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, HandoffFile), js, 0o644); err != nil {
			t.Fatal(err)
		}
		return root
	}
	// next resumes a generation from root and returns its rig.
	next := func(t *testing.T, root string) (*segmentsRig, *State) {
		t.Helper()
		cache := newSegmentsCache(t)
		stateDir := t.TempDir()
		st, err := Resume(context.Background(), cache, ResumeOptions{Root: root, StateDir: stateDir, Now: stepClock(t0, time.Millisecond)})
		if err != nil || st.RehydrateError != "" {
			t.Fatalf("Resume: %v, rehydrate error %q", err, st.RehydrateError)
		}
		r2 := *r
		r2.cache = cache
		r2.opts.StateDir = stateDir
		r2.so.Generation = 2
		r2.src = &countingSource{src: r.src, fail: true}
		return &r2, st
	}

	t.Run("recorded", func(t *testing.T) {
		r2, st := next(t, unpack(t, nil))
		if st.Rehydrated.Modules != len(r.m.Modules) {
			t.Errorf("rehydrated %d modules, want the %d of the manifest", st.Rehydrated.Modules, len(r.m.Modules))
		}
		if _, err := r2.cache.Get(elf.SHA256); err == nil {
			t.Error("the ELF is cached before anything derived it")
		}
		recs, err := readKernelELFs(r2.opts.StateDir)
		if err != nil || recs[elf.Kernel] != elf {
			t.Errorf("index after Resume: %v (%v), want %+v", recs, err, elf)
		}
		if !KernelELFRecorded(r2.opts.StateDir, r.m) {
			t.Error("KernelELFRecorded = false after resuming a segments handoff")
		}
		mc := New(r2.cache, r2.opts)
		got, decompressed, _, err := mc.PrepareKernelELF(context.Background(), r.m)
		if err != nil || got != elf || !decompressed {
			t.Fatalf("PrepareKernelELF = %+v, decompressed %v, %v; want %+v decompressed", got, decompressed, err, elf)
		}
		if got, decompressed, _, err := mc.PrepareKernelELF(context.Background(), r.m); err != nil || got != elf || decompressed {
			t.Errorf("second PrepareKernelELF = %+v, decompressed %v, %v; want the cached ELF", got, decompressed, err)
		}
		rep, err := r2.stage(t)
		if err != nil || rep.Segments.Decompressed || rep.Segments.KernelELF != elf {
			t.Errorf("gen 2 stage: %v, segments %+v; want the prepared ELF, not decompressed", err, rep.Segments)
		}
	})
	t.Run("record mismatch", func(t *testing.T) {
		bogus := elf
		bogus.SHA256 = strings.Repeat("0", 64)
		r2, _ := next(t, unpack(t, &bogus))
		_, _, _, err := New(r2.cache, r2.opts).PrepareKernelELF(context.Background(), r.m)
		if !errors.Is(err, ErrKernelELFMismatch) || !strings.Contains(err.Error(), bogus.SHA256) {
			t.Errorf("PrepareKernelELF against a wrong record: %v; want ErrKernelELFMismatch naming %s", err, bogus.SHA256)
		}
		if _, err := r2.cache.Get(elf.SHA256); err == nil {
			t.Error("the mismatched ELF entered the cache")
		}
	})
	t.Run("kernel not cached", func(t *testing.T) {
		_, _, _, err := New(newSegmentsCache(t), r.opts).PrepareKernelELF(context.Background(), r.m)
		if !errors.Is(err, modcache.ErrNotCached) || !strings.Contains(err.Error(), r.m.Kernel().Name) {
			t.Errorf("PrepareKernelELF without the kernel cached: %v; want ErrNotCached naming %s", err, r.m.Kernel().Name)
		}
	})
}

func TestDecodeHandoffKernelELFs(t *testing.T) {
	m := testimage.Default().Manifest()
	k := m.Kernel().SHA256
	elf := strings.Repeat("cd", 32)
	for _, tc := range []struct {
		name    string
		recs    []KernelELF
		carried []string
		wantErr string
	}{
		{name: "recorded", recs: []KernelELF{{Kernel: k, SHA256: elf, Size: 10}}},
		{name: "carried", recs: []KernelELF{{Kernel: k, SHA256: elf, Size: 10}}, carried: []string{elf}, wantErr: "not in the manifest"},
		{name: "not of the manifest", recs: []KernelELF{{Kernel: elf, SHA256: elf, Size: 10}}, wantErr: "not in the manifest"},
		{name: "malformed", recs: []KernelELF{{Kernel: k, SHA256: "x", Size: 10}}, wantErr: "malformed"},
		{name: "two for one kernel", recs: []KernelELF{{Kernel: k, SHA256: elf, Size: 10}, {Kernel: k, SHA256: k, Size: 10}}, wantErr: "two"},
		{name: "carried without record", carried: []string{elf}, wantErr: "not in the manifest"},
	} {
		h := Handoff{Version: HandoffVersion, Generation: 2, Reason: ReasonUpdate, Manifest: *m, KernelELFs: tc.recs, Carried: tc.carried}
		js, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		_, err = DecodeHandoff(bytes.NewReader(js))
		if tc.wantErr == "" && err != nil || tc.wantErr != "" && (!errors.Is(err, ErrHandoff) || !strings.Contains(err.Error(), tc.wantErr)) {
			t.Errorf("%s: err = %v, want %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestKernelELFManifestKeepsELFThroughEvict(t *testing.T) {
	r := newSegmentsRig(t, nil)
	rep, err := r.stage(t)
	if err != nil {
		t.Fatal(err)
	}
	elf := rep.Segments.KernelELF
	keep := KernelELFManifest(r.opts.StateDir, r.m)
	if len(keep.Modules) != 1 || keep.Modules[0] != elf.Module() {
		t.Fatalf("KernelELFManifest = %+v, want the ELF of %s", keep.Modules, r.m.Kernel().Name)
	}
	if ev := r.cache.Evict(r.m, keep); ev.Modules != 0 {
		t.Errorf("evicted %d entries, want none", ev.Modules)
	}
	if _, err := r.cache.Get(elf.SHA256); err != nil {
		t.Errorf("the ELF was evicted: %v", err)
	}
	if other := KernelELFManifest(r.opts.StateDir, testimage.Default().Manifest()); len(other.Modules) != 0 {
		t.Errorf("ELFs kept for a kernel never decompressed: %+v", other.Modules)
	}
}
