package crashpath_test

import (
	"context"
	"errors"
	"os"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// lockLoader records whether Config.Lock was held when the image was
// loaded.
type lockLoader struct {
	held       *bool
	calls      int
	heldAtLoad bool
}

func (l *lockLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.calls++
	l.heldAtLoad = *l.held
	return nil
}

// TestArmHoldsLock: Config.Lock is held from the build of the crash image
// until it is loaded (a daemon's Evict must not drop the modules the built
// image reads), and released after.
func TestArmHoldsLock(t *testing.T) {
	im, _ := testimage.Update()
	m, dir := im.WriteTempDir(t)
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	t.Cleanup(func() { cache.Close() })
	held, locks := false, 0
	l := &lockLoader{held: &held}
	p := crashpath.New(crashpath.Config{
		Root: crashRoot(t, 384<<20), StateDir: t.TempDir(), Cache: cache,
		MachineOptions: fastreboot.Options{Loader: l},
		Lock: func() func() {
			locks++
			held = true
			return func() { held = false }
		},
	})
	rep, err := p.Arm(context.Background(), crashpath.ArmOptions{
		Target: crashpath.Target{Manifest: m, Source: modcache.DirSource(dir)}, Mode: crashhandler.ModeDirect,
	})
	if err != nil || !rep.Armed {
		t.Fatalf("Arm = %+v, %v", rep, err)
	}
	if locks != 1 || l.calls != 1 || !l.heldAtLoad || held {
		t.Errorf("lock taken %d times, loads %d, held at the load %v, held after %v; want 1, 1, true, false", locks, l.calls, l.heldAtLoad, held)
	}
}

// TestArmNothingCached: a target without a Source is served from the cache
// alone; a module not cached fails with modcache.ErrNotCached and nothing
// is loaded. The running image (no manifest) of a cold boot is refused.
func TestArmNothingCached(t *testing.T) {
	im, _ := testimage.Update()
	m, _ := im.WriteTempDir(t)
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	t.Cleanup(func() { cache.Close() })
	l := &lockLoader{held: new(bool)}
	p := crashpath.New(crashpath.Config{
		Root: crashRoot(t, 384<<20), StateDir: t.TempDir(), Cache: cache, MachineOptions: fastreboot.Options{Loader: l},
	})
	ctx := context.Background()
	if _, err := p.Arm(ctx, crashpath.ArmOptions{Target: crashpath.Target{Manifest: m}, Mode: crashhandler.ModeDirect}); !errors.Is(err, modcache.ErrNotCached) {
		t.Errorf("Arm of a manifest not cached = %v, want ErrNotCached", err)
	}
	if _, err := p.Arm(ctx, crashpath.ArmOptions{Mode: crashhandler.ModeDirect}); err == nil {
		t.Error("Arm of the running image on a cold boot succeeded")
	}
	if l.calls != 0 {
		t.Errorf("%d loads, want none", l.calls)
	}
}
