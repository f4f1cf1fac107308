package fastreboot

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// TestStageOptionsPerCall: one Machine stages with each call's options, and
// none of them sticks to the next call.
func TestStageOptionsPerCall(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader, Logger: testLogger(t)})
	src := modcache.DirSource(dir)
	for i, tc := range []struct {
		so        StageOptions
		loads     int
		gen       int
		reason    Reason
		carried   int
		dryRun    bool
		handoffOf bool // the loaded image is this call's
	}{
		// The zero value: an update of a cold boot, carried, loaded.
		{so: StageOptions{}, loads: 1, gen: 2, reason: ReasonUpdate, carried: len(m.Modules), handoffOf: true},
		{so: StageOptions{Reason: ReasonManual, Generation: 6, Carry: CarryNone, DryRun: true}, loads: 1, gen: 7, reason: ReasonManual, dryRun: true},
		{so: StageOptions{Generation: 3}, loads: 2, gen: 4, reason: ReasonUpdate, carried: len(m.Modules), handoffOf: true},
	} {
		rep, err := mc.Stage(context.Background(), m, src, tc.so)
		if err != nil {
			t.Fatalf("call %d: %v", i, err)
		}
		if rep.Generation != tc.gen || rep.Reason != tc.reason || rep.CarriedModules != tc.carried || rep.DryRun != tc.dryRun || rep.Loaded == tc.dryRun {
			t.Errorf("call %d (%+v): report generation %d, reason %s, carried %d, dry run %v, loaded %v",
				i, tc.so, rep.Generation, rep.Reason, rep.CarriedModules, rep.DryRun, rep.Loaded)
		}
		loads, img := loader.state()
		if loads != tc.loads {
			t.Errorf("call %d: %d loads, want %d", i, loads, tc.loads)
		}
		if !tc.handoffOf {
			continue
		}
		h, _ := handoffFromPiece(t, img.initrd[len(padded(im)):])
		if h.Generation != tc.gen || h.Reason != tc.reason || len(h.Carried) != tc.carried {
			t.Errorf("call %d: handoff generation %d, reason %s, carried %d", i, h.Generation, h.Reason, len(h.Carried))
		}
	}
	if _, err := mc.Stage(context.Background(), m, src, StageOptions{Reason: ReasonCold}); err == nil {
		t.Error("Stage with reason cold succeeded")
	}
	if _, err := mc.Stage(context.Background(), m, src, StageOptions{Load: "kexec"}); err == nil {
		t.Error("Stage with an unknown load method succeeded")
	}
}

// TestStageConcurrentCalls: concurrent Stages on one Machine each get the
// generation they asked for (the Machine runs them one at a time).
func TestStageConcurrentCalls(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}})
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Generation: 10 * (i + 1), DryRun: i%2 == 0})
			if err == nil && (rep.Generation != 10*(i+1)+1 || rep.DryRun != (i%2 == 0)) {
				err = fmt.Errorf("report generation %d, dry run %v", rep.Generation, rep.DryRun)
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
}

// TestPrepareKernelELFHoldsBackOnlyELFCalls: while a decompressed kernel is
// derived (elfMu held), a file Stage on the same Machine goes ahead and
// another PrepareKernelELF waits.
func TestPrepareKernelELFHoldsBackOnlyELFCalls(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}, StateDir: t.TempDir()})
	mc.elfMu.Lock() // a derivation under way
	staged := make(chan error, 1)
	go func() {
		_, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{})
		staged <- err
	}()
	select {
	case err := <-staged:
		if err != nil {
			t.Fatalf("file Stage during the derivation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a file Stage waited for the derivation")
	}
	prepared := make(chan error, 1)
	go func() {
		_, _, _, err := mc.PrepareKernelELF(context.Background(), m)
		prepared <- err
	}()
	select {
	case err := <-prepared:
		t.Fatalf("PrepareKernelELF ran during another derivation (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	mc.elfMu.Unlock()
	select {
	case <-prepared: // testimage's kernel may not decompress; it ran
	case <-time.After(10 * time.Second):
		t.Fatal("PrepareKernelELF did not run after the derivation ended")
	}
}
