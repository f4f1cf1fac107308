package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// carriedRoot stages m (written at path) in a first generation and unpacks
// the handoff into root, as the next kernel would. If tamper names a module,
// its carried copy is changed (same size) afterwards.
func carriedRoot(t *testing.T, root, path string, m *bootimage.Manifest, tamper string) {
	t.Helper()
	gen1, l := newAgent(t, agent.Options{Resume: true})
	rep, err := gen1.Stage(context.Background(), agent.StageRequest{Manifest: path})
	if err != nil {
		t.Fatal(err)
	}
	_, initrd, _ := l.last()
	unpackHandoff(t, initrd, rep, root)
	for _, mod := range m.Modules {
		if mod.Name != tamper {
			continue
		}
		p := filepath.Join(root, fastreboot.HandoffModulesDir, mod.SHA256)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0x20
		// The handoff's modules are unpacked read-only (0400).
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// TestResumeDefersVerification: the daemon's Resume adopts the carried
// modules unverified; every use verifies them, a tampered one is refused by
// name when there is no storage to read it from again (stage --current,
// crash arm of the running image), and `cache ls` verifies what is pending.
func TestResumeDefersVerification(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	victim := m.Initrds()[1].Name
	root := crashRoot(t, 384<<20)
	carriedRoot(t, root, p, m, victim)

	a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), Resume: true, Machine: fastreboot.Options{
		Loader: &flagLoader{}, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	n := len(m.Modules)
	if st := a.State(); st.RehydrateError != "" || st.Rehydrated.Modules != n || st.Rehydrated.Unverified != n {
		t.Fatalf("resumed state %+v: want %d modules adopted unverified, no error", st.Rehydrated, n)
	}
	in, err := a.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ad := in.Cache.Adoption; ad.Modules != n || ad.Pending != n || ad.Verified != 0 {
		t.Errorf("Info adoption before any use: %+v, want %d pending", ad, n)
	}

	_, err = a.Stage(ctx, agent.StageRequest{Current: true, DryRun: true})
	if !errors.Is(err, modcache.ErrDigestMismatch) || !errors.Is(err, agent.ErrNoStorage) || !strings.Contains(err.Error(), victim) {
		t.Errorf("stage --current with a tampered carried module = %v; want ErrDigestMismatch and ErrNoStorage naming %s", err, victim)
	}
	_, err = a.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect})
	if !errors.Is(err, agent.ErrNoStorage) || !strings.Contains(err.Error(), victim) {
		t.Errorf("crash arm of the running image without the module = %v; want ErrNoStorage naming %s", err, victim)
	}

	ls, err := a.Cache(ctx)
	if err != nil {
		t.Fatal(err)
	}
	ad := ls.Stats.Adoption
	if ad.Pending != 0 || ad.Verified != n-1 || ad.Failed != 1 || len(ad.Failures) != 1 || !strings.Contains(ad.Failures[0], victim) {
		t.Errorf("adoption after cache ls: %+v; want %d verified, 1 failed naming %s", ad, n-1, victim)
	}
	for _, mod := range ls.Modules {
		if mod.Verification != modcache.VerificationVerified {
			t.Errorf("cache ls: %v verification %q, want %q", mod.Names, mod.Verification, modcache.VerificationVerified)
		}
	}
	if len(ls.Modules) != n-1 {
		t.Errorf("cache ls lists %d modules, want %d (the tampered one dropped)", len(ls.Modules), n-1)
	}
	// With the storage named, the stage reads the dropped module again.
	rep, err := a.Stage(ctx, agent.StageRequest{Manifest: p, DryRun: true})
	if err != nil {
		t.Fatalf("stage with storage after the drop: %v", err)
	}
	if len(rep.Sync.Read) != 1 || rep.Sync.Read[0] != victim {
		t.Errorf("stage read %v from storage, want only %s", rep.Sync.Read, victim)
	}
}

// TestVerifyCarried runs the daemon's background verification while a stage
// uses the same modules; both finish, each module is verified once.
func TestVerifyCarried(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	root := t.TempDir()
	carriedRoot(t, root, p, m, "")
	n := len(m.Modules)

	a, l := newAgent(t, agent.Options{Root: root, Resume: true})
	if !a.VerifyCarried(ctx) {
		t.Error("VerifyCarried did not start with modules pending")
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := a.Stage(ctx, agent.StageRequest{Current: true}); err != nil {
				t.Errorf("stage --current during the background verification: %v", err)
			}
		}()
	}
	wg.Wait()
	ls, err := a.Cache(ctx) // waits for what is still being verified
	if err != nil {
		t.Fatal(err)
	}
	if ad := ls.Stats.Adoption; ad.Modules != n || ad.Verified != n || ad.Pending != 0 || ad.Failed != 0 {
		t.Errorf("adoption %+v, want %d verified", ad, n)
	}
	if l.Calls() != 2 {
		t.Errorf("loader calls %d, want 2", l.Calls())
	}
	if a.VerifyCarried(ctx) {
		t.Error("VerifyCarried started again with nothing pending")
	}
}

// TestEagerVerify: the comparison option hashes inside Resume; a tampered
// module never enters the cache and the state says so.
func TestEagerVerify(t *testing.T) {
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	victim := m.Initrds()[0].Name
	root := t.TempDir()
	carriedRoot(t, root, p, m, victim)
	a, _ := newAgent(t, agent.Options{Root: root, Resume: true, EagerVerify: true})
	st := a.State()
	if st.Rehydrated.Unverified != 0 || st.Rehydrated.Modules != len(m.Modules)-1 || !strings.Contains(st.RehydrateError, "sha256 mismatch") {
		t.Errorf("eager resume: rehydrated %+v, error %q; want %d verified modules and a mismatch", st.Rehydrated, st.RehydrateError, len(m.Modules)-1)
	}
	in, _ := a.Info(context.Background())
	if in.Cache.Adoption.Modules != 0 {
		t.Errorf("eager resume adopted %d modules unverified", in.Cache.Adoption.Modules)
	}
}

// TestRestartedDaemonHonestStatus: a daemon restarted within a boot finds
// the state of the first one, whose cache (and the consumed handoff files)
// held the carried modules; it must not report them rehydrated.
func TestRestartedDaemonHonestStatus(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	carriedRoot(t, root, p, m, "")
	state := t.TempDir()
	opts := agent.Options{Root: root, StateDir: state, Resume: true, Machine: fastreboot.Options{Loader: &fakeLoader{}}}
	first, err := agent.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	if st := first.State(); st.Rehydrated.Modules != len(m.Modules) || st.CarriedLost != 0 {
		t.Fatalf("first daemon: rehydrated %+v, lost %d", st.Rehydrated, st.CarriedLost)
	}
	first.Close()

	again, err := agent.New(ctx, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	in, err := again.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := again.State()
	if st.Rehydrated.Modules != in.Cache.Modules {
		t.Errorf("restarted daemon reports %d modules rehydrated, its cache holds %d", st.Rehydrated.Modules, in.Cache.Modules)
	}
	if st.CarriedLost != len(m.Modules) || st.Restarted.IsZero() || st.Generation != 2 {
		t.Errorf("restarted daemon: lost %d, restarted %v, generation %d; want %d lost", st.CarriedLost, st.Restarted, st.Generation, len(m.Modules))
	}
	if saved, err := fastreboot.LoadState(state); err != nil || saved.CarriedLost != len(m.Modules) || saved.Rehydrated.Modules != 0 {
		t.Errorf("saved state after the restart: %+v, %v", saved, err)
	}
	// The running image's modules come back from storage.
	if _, err := again.Sync(ctx, agent.SyncRequest{Manifest: p}); err != nil {
		t.Fatal(err)
	}
}
