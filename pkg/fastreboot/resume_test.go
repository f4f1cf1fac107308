package fastreboot

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// unpackHandoff does what the next kernel does with the handoff piece at
// the end of initrd: it unpacks it into a new root directory.
func unpackHandoff(t *testing.T, initrd []byte, handoffBytes int64) string {
	t.Helper()
	root := t.TempDir()
	piece := initrd[int64(len(initrd))-handoffBytes:]
	err := cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(piece)), func(r cpio.Record) error {
		p := filepath.Join(root, r.Name)
		switch r.Mode & cpio.S_IFMT {
		case cpio.S_IFDIR:
			return os.MkdirAll(p, 0o755)
		case cpio.S_IFREG:
			b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				return err
			}
			return os.WriteFile(p, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("unpack handoff: %v", err)
	}
	return root
}

// TestGenerations runs cold boot -> stage -> "kexec" -> resume -> stage ->
// "kexec" -> resume, checking the generation count and that the second
// and third generations read no storage.
func TestGenerations(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	var total int64
	for _, mod := range m.Modules {
		total += mod.Size
	}
	clock := stepClock(t0, time.Second)

	// Generation 1: cold boot.
	stateDir := filepath.Join(t.TempDir(), "run", "fastreboot")
	cache := newCache(t)
	st, err := Resume(ctx, cache, ResumeOptions{Root: t.TempDir(), StateDir: stateDir, Now: clock})
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 1 || st.Reason != ReasonCold || st.Manifest != nil {
		t.Fatalf("cold boot state %+v", st)
	}
	loader := &fakeLoader{}
	src := &countingSource{src: modcache.DirSource(dir)}
	mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader, Now: clock})
	rep, err := mc.Stage(ctx, m, src, StageOptions{Reason: ReasonUpdate, Generation: st.Generation})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Sync.BytesRead != total {
		t.Errorf("generation 1 read %d bytes, want %d", rep.Sync.BytesRead, total)
	}

	for gen := 2; gen <= 3; gen++ {
		// The jump: the next kernel unpacks the initrd into a fresh root;
		// RAM of the old generation (its cache) is gone.
		_, img := loader.state()
		root := unpackHandoff(t, img.initrd, rep.HandoffBytes)
		stateDir := filepath.Join(t.TempDir(), "run", "fastreboot")
		cache := newCache(t)
		// Generation 2 adopts the carried modules unverified (the
		// default), generation 3 hashes them in Resume.
		eager := gen == 3
		st, err := Resume(ctx, cache, ResumeOptions{Root: root, StateDir: stateDir, Now: clock, Logger: testLogger(t), EagerVerify: eager})
		if err != nil {
			t.Fatal(err)
		}
		if st.Generation != gen || st.Reason != ReasonUpdate || st.RehydrateError != "" {
			t.Fatalf("generation %d: state %+v", gen, st)
		}
		if diff := cmp.Diff(m, st.Manifest); diff != "" {
			t.Errorf("generation %d: manifest (-want +got):\n%s", gen, diff)
		}
		wantUnverified := 4
		if eager {
			wantUnverified = 0
		}
		if st.Rehydrated != (modcache.RehydrateReport{Modules: 4, Bytes: total, Unverified: wantUnverified}) || st.Carried != 4 {
			t.Errorf("generation %d: carried %d, rehydrated %+v; want 4 modules of %d bytes", gen, st.Carried, st.Rehydrated, total)
		}
		if !st.Timeline.StageStart.Before(st.Timeline.StageEnd) || !st.Timeline.RebootRequested.IsZero() {
			t.Errorf("generation %d: timeline %+v", gen, st.Timeline)
		}
		// The carried files left RAM's rootfs as they entered the cache.
		if left, _ := os.ReadDir(filepath.Join(root, HandoffModulesDir)); len(left) != 0 {
			t.Errorf("generation %d: %d handoff files left", gen, len(left))
		}
		saved, err := LoadState(stateDir)
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(st, saved); diff != "" {
			t.Errorf("saved state (-resumed +saved):\n%s", diff)
		}
		// A second Resume in the same boot (daemon restart) rehydrates
		// nothing and says so: its cache holds none of the carried
		// modules, which died with the first cache.
		again, err := Resume(ctx, newCache(t), ResumeOptions{Root: root, StateDir: stateDir, Now: clock})
		if err != nil || !again.Resumed.Equal(st.Resumed) || again.Generation != gen {
			t.Errorf("second Resume = %+v, %v", again, err)
		}
		if again.Rehydrated != (modcache.RehydrateReport{}) || again.CarriedLost != 4 || again.Restarted.IsZero() || again.Carried != 4 {
			t.Errorf("second Resume: rehydrated %+v, carried lost %d, restarted %v; want nothing rehydrated, 4 lost, restarted set",
				again.Rehydrated, again.CarriedLost, again.Restarted)
		}
		if saved, err := LoadState(stateDir); err != nil || saved.CarriedLost != 4 || saved.Rehydrated.Modules != 0 {
			t.Errorf("state saved by the second Resume: %+v, %v", saved, err)
		}
		// The first state is what the rest of this generation compares.
		if err := SaveState(stateDir, st); err != nil {
			t.Fatal(err)
		}

		// Stage the same image again: every module is a hit, nothing read.
		src := &countingSource{src: modcache.DirSource(dir), fail: true}
		mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader, Now: clock})
		rep, err = mc.Stage(ctx, m, src, StageOptions{Reason: ReasonUpdate, Generation: st.Generation})
		if err != nil {
			t.Fatal(err)
		}
		if len(src.opens) != 0 || rep.Sync.BytesRead != 0 || rep.Sync.Hits != 4 || rep.Generation != gen+1 {
			t.Errorf("generation %d: stage opened %v, report %+v", gen, src.opens, rep)
		}
		if s := cache.Stats(); s.BytesRead != 0 || s.BytesRehydrated != total {
			t.Errorf("generation %d: cache stats %+v", gen, s)
		}
		// The stage verified every adopted module before using it.
		if a := cache.Stats().Adoption; a.Modules != wantUnverified || a.Verified != wantUnverified || a.Pending != 0 || a.Failed != 0 {
			t.Errorf("generation %d: adoption after the stage %+v, want %d verified", gen, a, wantUnverified)
		}
	}
}

func TestResumeRehydrateFailure(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	rep, err := mc.Stage(ctx, m, modcache.DirSource(dir), StageOptions{Reason: ReasonCrash})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	root := unpackHandoff(t, img.initrd, rep.HandoffBytes)
	bad := filepath.Join(root, HandoffModulesDir, m.Modules[1].SHA256)
	if err := os.WriteFile(bad, []byte("rotten"), 0o644); err != nil {
		t.Fatal(err)
	}
	cache := newCache(t)
	st, err := Resume(ctx, cache, ResumeOptions{Root: root, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 2 || st.Reason != ReasonCrash || st.Rehydrated.Modules != 3 || !strings.Contains(st.RehydrateError, bad) {
		t.Errorf("state %+v", st)
	}
	if _, err := cache.Get(m.Modules[1].SHA256); !errors.Is(err, modcache.ErrNotCached) {
		t.Errorf("corrupt module cached: %v", err)
	}
}

func TestResumeErrors(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	p := filepath.Join(root, HandoffFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(`{"version": 9}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(ctx, nil, ResumeOptions{Root: root, StateDir: t.TempDir()}); !errors.Is(err, ErrHandoff) {
		t.Errorf("future handoff version: %v, want ErrHandoff", err)
	}
	// A state directory that cannot be created.
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Resume(ctx, nil, ResumeOptions{Root: t.TempDir(), StateDir: filepath.Join(file, "sub")}); err == nil {
		t.Error("Resume saved its state under a regular file")
	}
	// Without a cache, the state is still known.
	h := testHandoff(testimage.Default().Manifest())
	h.Version = HandoffVersion
	var buf bytes.Buffer
	if _, err := WriteHandoffPiece(&buf, h, nil); err != nil {
		t.Fatal(err)
	}
	root2 := unpackHandoff(t, buf.Bytes(), int64(buf.Len()))
	st, err := Resume(ctx, nil, ResumeOptions{Root: root2, StateDir: t.TempDir()})
	if err != nil || st.Generation != 2 || st.Manifest == nil || st.Manifest.Name != "test" {
		t.Errorf("Resume without cache = %+v, %v", st, err)
	}
}

// TestResumeTamperedCarriedModule changes the bytes of a carried module in
// the handoff directory after Resume started (same size, so the adoption,
// which does not hash, takes it): the first Stage finds it before using it,
// drops it and reads it again from storage with a warning; a Stage from the
// cache alone fails naming it.
func TestResumeTamperedCarriedModule(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	rep, err := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader}).Stage(ctx, m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	victim := m.Initrds()[0]
	for _, withStorage := range []bool{true, false} {
		root := unpackHandoff(t, img.initrd, rep.HandoffBytes)
		p := filepath.Join(root, HandoffModulesDir, victim.SHA256)
		good, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		bad := bytes.Clone(good)
		bad[len(bad)-1] ^= 1
		clock := stepClock(t0, time.Second)
		// Resume reads the clock after reading the handoff and before
		// adopting the modules.
		tamperingClock := func() time.Time {
			if err := os.WriteFile(p, bad, 0o644); err != nil && !errors.Is(err, os.ErrNotExist) {
				t.Error(err)
			}
			return clock()
		}
		cache := newCache(t)
		st, err := Resume(ctx, cache, ResumeOptions{Root: root, StateDir: t.TempDir(), Now: tamperingClock})
		if err != nil || st.RehydrateError != "" || st.Rehydrated.Unverified != 4 {
			t.Fatalf("Resume = %+v, %v; want 4 modules adopted unverified, no error", st, err)
		}
		src := &countingSource{src: modcache.DirSource(dir), fail: !withStorage}
		mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader})
		staged, err := mc.Stage(ctx, m, src, StageOptions{Reason: ReasonUpdate, Generation: st.Generation})
		if !withStorage {
			if !errors.Is(err, modcache.ErrDigestMismatch) || !strings.Contains(err.Error(), victim.Name) {
				t.Errorf("stage from the cache alone = %v, want ErrDigestMismatch naming %s", err, victim.Name)
			}
			continue
		}
		if err != nil {
			t.Fatalf("stage with storage: %v", err)
		}
		if diff := cmp.Diff([]string{victim.Name}, src.opens); diff != "" {
			t.Errorf("storage opened (-want +got):\n%s", diff)
		}
		if staged.Sync.BytesRead != victim.Size || len(staged.Sync.Warnings) != 1 || !strings.Contains(staged.Sync.Warnings[0], victim.Name) {
			t.Errorf("stage sync %+v, want %s read again (%d bytes) with a warning", staged.Sync, victim.Name, victim.Size)
		}
		if a := cache.Stats().Adoption; a.Failed != 1 || a.Verified != 3 {
			t.Errorf("adoption %+v, want 1 failed, 3 verified", a)
		}
	}
}

// TestResumeAfterSwitchRoot: a distribution's initramfs moves the handoff
// from the initramfs root to /run/fastreboot/handoff before switch_root; the
// daemon in the real root finds it there and rehydrates every carried
// module from it, reading no storage.
func TestResumeAfterSwitchRoot(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	rep, err := mc.Stage(ctx, m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate, Generation: 1})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	initramfs := unpackHandoff(t, img.initrd, rep.HandoffBytes)
	// The real root: the initramfs-tools boot script's move.
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Dir(filepath.Join(root, HandoffRunDir)), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(initramfs, HandoffDir), filepath.Join(root, HandoffRunDir)); err != nil {
		t.Fatal(err)
	}
	if d, err := FindHandoff(root); err != nil || d != filepath.Join(root, HandoffRunDir) {
		t.Fatalf("FindHandoff = %q, %v; want %s", d, err, filepath.Join(root, HandoffRunDir))
	}
	cache := newCache(t)
	st, err := Resume(ctx, cache, ResumeOptions{Root: root, StateDir: filepath.Join(t.TempDir(), "state")})
	if err != nil {
		t.Fatal(err)
	}
	if st.Generation != 2 || st.Reason != ReasonUpdate || st.RehydrateError != "" || st.Rehydrated.Modules != 4 {
		t.Fatalf("state after switch_root %+v", st)
	}
	if s := cache.Stats(); s.BytesRead != 0 || s.BytesRehydrated == 0 {
		t.Errorf("cache stats %+v: want everything rehydrated, nothing read", s)
	}
	if left, _ := os.ReadDir(filepath.Join(root, HandoffRunDir, "modules")); len(left) != 0 {
		t.Errorf("%d handoff files left in /run", len(left))
	}
	// The kernel's place wins over /run: a program in the initramfs (a
	// crash kernel's crash recover) reads the handoff it booted with.
	both := t.TempDir()
	for _, d := range []string{HandoffDir, HandoffRunDir} {
		if err := os.MkdirAll(filepath.Join(both, d), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(both, d, "handoff.json"), []byte("{}"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if d, _ := FindHandoff(both); d != filepath.Join(both, HandoffDir) {
		t.Errorf("FindHandoff with both = %q, want %s", d, filepath.Join(both, HandoffDir))
	}
	if _, err := FindHandoff(t.TempDir()); !errors.Is(err, ErrNoHandoff) {
		t.Errorf("FindHandoff of an empty root: %v, want ErrNoHandoff", err)
	}
}
