package fastreboot

import (
	"bytes"
	"context"
	"errors"
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
