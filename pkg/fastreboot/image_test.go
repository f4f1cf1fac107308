package fastreboot

import (
	"bytes"
	"context"
	"slices"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/testimage"
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
