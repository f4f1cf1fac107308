package fastreboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// TestBuildImage builds an image without loading it: the initrd holds the
// pieces and a handoff with the given reason, generation and extra fields
// (BuildOptions.MemoryMap and Crash), sealed.
func TestBuildImage(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{
		Root: fakeTree(t, goodTree), Loader: loader, Now: stepClock(t0, time.Millisecond), Logger: testLogger(t),
	})
	img, err := mc.BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{
		Reason: ReasonCrash, Generation: 3,
		MemoryMap: qemuMap, Crash: &HandoffCrash{Mode: "direct"},
	})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if calls, _ := loader.state(); calls != 0 {
		t.Errorf("BuildImage called the loader %d times", calls)
	}
	initrd, err := readWhole(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	if want := padded(im); !bytes.HasPrefix(initrd, want) {
		t.Errorf("initrd does not start with the padded pieces")
	}
	if seals, err := sealsOf(img.Initrd); err != nil || seals == 0 && sealAllValue != 0 {
		t.Errorf("initrd seals %#x, %v", seals, err)
	}
	h, _ := handoffFromPiece(t, initrd[int64(len(initrd))-img.Report.HandoffBytes:])
	if h.Reason != ReasonCrash || h.Generation != 4 || h.Crash == nil || h.Crash.Mode != "direct" || !slices.Equal(h.MemoryMap, qemuMap) {
		t.Errorf("handoff: reason %s generation %d crash %+v memory map %v", h.Reason, h.Generation, h.Crash, h.MemoryMap)
	}
	if len(h.Carried) != len(m.Modules) || img.Cmdline != m.Cmdline || img.UnpackedBytes < img.Report.HandoffBytes {
		t.Errorf("image: carried %d, cmdline %q, unpacked %d", len(h.Carried), img.Cmdline, img.UnpackedBytes)
	}
	if _, err := mc.BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{Reason: ReasonCold}); err == nil {
		t.Error("BuildImage with reason cold succeeded")
	}
}

// TestBuildImageUnpackedBytes: the crash path's sizing gets what the
// initrd really unpacks to (each piece's cpio data, decompressed, and the
// handoff), not a guess from the compressed sizes: here a compressed piece
// of mostly zeros unpacks to far more than four times its size, and
// another to less; a piece beyond the Machine's initrd limits fails the
// build by name.
func TestBuildImageUnpackedBytes(t *testing.T) {
	im := testimage.Default()
	sparse := testimage.Cpio(testimage.File{Name: "var/empty.img", Data: make([]byte, 2<<20)})
	dense := testimage.Cpio(testimage.File{Name: "bin/busybox", Data: testimage.Bytes(100000, 3)})
	site := im.Initrds[2].Data
	im.Initrds = []testimage.Blob{
		{Name: "sparse.cpio.xz", Data: testimage.Xz(sparse)},
		{Name: "dense.cpio.zst", Data: testimage.Zstd(dense)},
		{Name: "site.cpio", Data: site},
	}
	m, dir := im.WriteTempDir(t)
	build := func(opts Options) (*Image, error) {
		opts.Root, opts.Loader, opts.Logger = fakeTree(t, goodTree), &fakeLoader{}, testLogger(t)
		return New(newCache(t), opts).BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{Reason: ReasonCrash, MemoryMap: qemuMap})
	}
	img, err := build(Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	want := int64(len(sparse)+len(dense)+len(site)) + img.Report.HandoffBytes
	if img.UnpackedBytes != want {
		t.Errorf("UnpackedBytes %d, want %d (pieces %d + %d + %d unpacked, handoff %d; compressed %d + %d)",
			img.UnpackedBytes, want, len(sparse), len(dense), len(site), img.Report.HandoffBytes, len(im.Initrds[0].Data), len(im.Initrds[1].Data))
	}

	// The sparse piece unpacks to more than 1 MiB at a ratio far above
	// 100: within the default limits (16 MiB may always unpack), not
	// within a total of 1 MiB.
	_, err = build(Options{InitrdLimits: bootimage.InitrdLimits{MaxUnpacked: 1 << 20}})
	if !errors.Is(err, bootimage.ErrUnpackLimit) || !strings.Contains(err.Error(), `"sparse.cpio.xz"`) {
		t.Errorf("BuildImage under a 1 MiB total = %v, want ErrUnpackLimit naming sparse.cpio.xz", err)
	}
}

// TestInitrdLimitSpansModules: InitrdLimits.MaxUnpacked bounds what all
// the image's initrd pieces unpack to together, not each module alone:
// two pieces of 2 MiB each pass a 3 MiB limit one by one and fail it
// together, for a Stage as for a crash image, naming the module that
// crossed it and the running total.
func TestInitrdLimitSpansModules(t *testing.T) {
	im := testimage.Default()
	a := testimage.Cpio(testimage.File{Name: "a.img", Data: make([]byte, 2<<20)})
	b := testimage.Cpio(testimage.File{Name: "b.img", Data: make([]byte, 2<<20)})
	im.Initrds = []testimage.Blob{{Name: "a.cpio.xz", Data: testimage.Xz(a)}, {Name: "b.cpio.zst", Data: testimage.Zstd(b)}}
	m, dir := im.WriteTempDir(t)
	lim := bootimage.InitrdLimits{MaxUnpacked: 3 << 20}
	for _, p := range []struct{ name, data []byte }{{[]byte("a"), a}, {[]byte("b"), b}} {
		if _, err := bootimage.ScanInitrd(bytes.NewReader(p.data), int64(len(p.data)), lim); err != nil {
			t.Fatalf("piece %s alone under 3 MiB: %v", p.name, err)
		}
	}
	want := `initrd piece "b.cpio.zst": `
	total := fmt.Sprintf("brings the image's initrd pieces up to it to %d, more than the %d", len(a)+len(b), 3<<20)
	newMachine := func() *Machine {
		return New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}, Logger: testLogger(t), InitrdLimits: lim})
	}
	_, err := newMachine().Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate})
	if !errors.Is(err, bootimage.ErrUnpackLimit) || !errors.Is(err, bootimage.ErrBadInitrd) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), total) {
		t.Errorf("Stage = %v, want ErrUnpackLimit naming b.cpio.zst and saying %q", err, total)
	}
	_, err = newMachine().BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{Reason: ReasonCrash, MemoryMap: qemuMap})
	if !errors.Is(err, bootimage.ErrUnpackLimit) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), total) {
		t.Errorf("BuildImage = %v, want ErrUnpackLimit naming b.cpio.zst and saying %q", err, total)
	}
	// SkipInitrdScan (a crash stage reloading what production staged
	// under its limits) decompresses nothing: the same image loads, and
	// the Machine has measured no piece.
	mc := newMachine()
	if _, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonCrash, SkipInitrdScan: true}); err != nil {
		t.Errorf("Stage with SkipInitrdScan: %v", err)
	}
	if len(mc.unpacked) != 0 {
		t.Errorf("Stage with SkipInitrdScan measured %d pieces, want none decompressed", len(mc.unpacked))
	}
	lim.MaxUnpacked = 5 << 20
	mc = New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}, Logger: testLogger(t), InitrdLimits: lim})
	if _, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate}); err != nil {
		t.Errorf("Stage under 5 MiB: %v", err)
	}
}
