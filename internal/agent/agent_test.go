package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func TestServeInfo(t *testing.T) {
	ctx := context.Background()
	a, _ := newAgent(t, agent.Options{})
	c, _ := serve(t, a)
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	want := &agent.Info{Daemon: true, PID: os.Getpid(), Generation: 1, Reason: fastreboot.ReasonCold}
	if diff := cmp.Diff(want, in, cmpopts.IgnoreFields(agent.Info{}, "Started", "Cache", "Rollback")); diff != "" {
		t.Errorf("Info over the socket (-want +got):\n%s", diff)
	}
	// A cold boot that knows no manifest yet: nothing good, nothing on
	// trial, a crash recovers into the same image.
	if r := in.Rollback; r == nil || r.Generation != 1 || r.State.Good != nil || r.OnTrial || r.NextCrash.Action != "crash" {
		t.Errorf("Rollback = %+v", in.Rollback)
	}
	if in.Started.IsZero() || in.Started.After(time.Now()) {
		t.Errorf("Started = %v", in.Started)
	}
	if in.Cache.Modules != 0 {
		t.Errorf("a new agent caches %d modules", in.Cache.Modules)
	}
}

// TestSyncThenStage is the update story: the running image v1 is synced,
// then v2, which changed one of three initrd pieces, is staged through the
// daemon; only that piece is read from storage.
func TestSyncThenStage(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	a, l := newAgent(t, agent.Options{})
	c, _ := serve(t, a)

	srep, err := c.Sync(ctx, agent.SyncRequest{Manifest: p1})
	if err != nil {
		t.Fatalf("Sync v1: %v", err)
	}
	want := &modcache.SyncReport{Misses: 4, BytesRead: testimage.TotalSize(m1), Read: []string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz", "site.cpio"}}
	if diff := cmp.Diff(want, srep); diff != "" {
		t.Errorf("Sync v1 (-want +got):\n%s", diff)
	}

	rep, err := c.Stage(ctx, agent.StageRequest{Manifest: p2})
	if err != nil {
		t.Fatalf("Stage v2: %v", err)
	}
	site, _ := m2.Module("site.cpio")
	if diff := cmp.Diff(modcache.SyncReport{Hits: 3, Misses: 1, BytesRead: site.Size, Read: []string{"site.cpio"}}, rep.Sync); diff != "" {
		t.Errorf("Stage v2 read (-want +got):\n%s", diff)
	}
	if rep.Manifest != "v2" || !rep.Loaded || rep.DryRun || rep.Generation != 2 || rep.Reason != fastreboot.ReasonUpdate {
		t.Errorf("Stage v2 report: manifest %q loaded %v dry run %v generation %d reason %q",
			rep.Manifest, rep.Loaded, rep.DryRun, rep.Generation, rep.Reason)
	}
	if l.Calls() != 1 {
		t.Fatalf("loader called %d times, want 1", l.Calls())
	}
	// v2 goes on trial (v1, synced on a cold boot, is last-known-good):
	// panic=10 makes an early death of it reboot through the firmware.
	kernel, initrd, cmdline := l.last()
	if want := m2.Cmdline + " panic=10"; !bytes.Equal(kernel, im2.Kernel.Data) || cmdline != want {
		t.Errorf("loaded kernel of %d bytes, cmdline %q; want the v2 kernel and %q", len(kernel), cmdline, want)
	}
	// The pieces come first, in manifest order, each padded to 4 bytes.
	var off int
	for _, b := range im2.Initrds {
		if !bytes.Equal(initrd[off:off+len(b.Data)], b.Data) {
			t.Errorf("initrd at %d is not piece %s", off, b.Name)
		}
		off += (len(b.Data) + 3) &^ 3
	}
	if int64(len(initrd)) != rep.InitrdBytes {
		t.Errorf("loaded initrd of %d bytes, report says %d", len(initrd), rep.InitrdBytes)
	}

	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Current != "v1" || in.Staged == nil || in.Staged.Manifest != "v2" {
		t.Errorf("Info: current %q, staged %+v; want v1 and v2", in.Current, in.Staged)
	}
	if in.Cache.Modules != 5 || in.Cache.BytesRead != testimage.TotalSize(m1)+site.Size {
		t.Errorf("cache holds %d modules, read %d bytes; want 5 and %d", in.Cache.Modules, in.Cache.BytesRead, testimage.TotalSize(m1)+site.Size)
	}
}

func TestStageCurrent(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()

	t.Run("from the cache, no storage", func(t *testing.T) {
		m1, p1 := im1.WriteTemp(t)
		a, l := newAgent(t, agent.Options{})
		c, _ := serve(t, a)
		if _, err := c.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
			t.Fatal(err)
		}
		// Storage is gone: the current image must come from the cache.
		if err := os.RemoveAll(filepath.Dir(p1)); err != nil {
			t.Fatal(err)
		}
		rep, err := c.Stage(ctx, agent.StageRequest{Current: true, Reason: fastreboot.ReasonManual})
		if err != nil {
			t.Fatalf("Stage current: %v", err)
		}
		if diff := cmp.Diff(modcache.SyncReport{Hits: len(m1.Modules)}, rep.Sync); diff != "" {
			t.Errorf("Stage current read storage (-want +got):\n%s", diff)
		}
		if rep.Manifest != "v1" || rep.Reason != fastreboot.ReasonManual || !rep.Loaded || l.Calls() != 1 {
			t.Errorf("report %q %q loaded %v, loader calls %d", rep.Manifest, rep.Reason, rep.Loaded, l.Calls())
		}
	})

	t.Run("module missing", func(t *testing.T) {
		// A generation whose state names its manifest but whose cache is
		// empty (an in-process agent does not rehydrate).
		m1 := im1.Manifest()
		stateDir := t.TempDir()
		if err := fastreboot.SaveState(stateDir, &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: m1}); err != nil {
			t.Fatal(err)
		}
		a, l := newAgent(t, agent.Options{StateDir: stateDir})
		_, err := a.Stage(ctx, agent.StageRequest{Current: true})
		if !errors.Is(err, agent.ErrNoStorage) {
			t.Errorf("in process: Stage current = %v, want ErrNoStorage", err)
		}
		c, _ := serve(t, a)
		rep, err := c.Stage(ctx, agent.StageRequest{Current: true})
		if err == nil || !strings.Contains(err.Error(), agent.ErrNoStorage.Error()) || !strings.Contains(err.Error(), "vmlinuz") {
			t.Errorf("over the socket: Stage current = %v, want the ErrNoStorage text naming vmlinuz", err)
		}
		if rep == nil || rep.Manifest != "v1" || rep.Sync.Misses != len(m1.Modules) || rep.Generation != 3 {
			t.Errorf("partial report %+v, want manifest v1, %d misses, generation 3", rep, len(m1.Modules))
		}
		if l.Calls() != 0 {
			t.Errorf("loader called %d times", l.Calls())
		}
	})

	t.Run("cold boot without a synced manifest", func(t *testing.T) {
		a, _ := newAgent(t, agent.Options{})
		if _, err := a.Stage(ctx, agent.StageRequest{Current: true}); err == nil || !strings.Contains(err.Error(), "does not know its manifest") {
			t.Errorf("Stage current = %v", err)
		}
	})
}

func TestBadRequests(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	rel := *m1
	rel.Modules = append([]bootimage.Module(nil), m1.Modules...) // sources stay relative
	a, l := newAgent(t, agent.Options{})
	c, _ := serve(t, a)
	for _, tc := range []struct {
		name string
		req  agent.StageRequest
		want string
	}{
		{"nothing", agent.StageRequest{}, "no manifest given"},
		{"current and a manifest", agent.StageRequest{Current: true, Manifest: p1}, "not both"},
		{"file and inline", agent.StageRequest{Manifest: p1, Inline: m1}, "not both"},
		{"inline with relative sources", agent.StageRequest{Inline: &rel}, `source "vmlinuz" is not absolute`},
		{"missing manifest", agent.StageRequest{Manifest: filepath.Join(t.TempDir(), "nope.json")}, "nope.json"},
		{"bad reason", agent.StageRequest{Manifest: p1, Reason: "cold"}, `reason "cold"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rep, err := c.Stage(ctx, tc.req)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Stage = %v, want an error containing %q", err, tc.want)
			}
			if rep != nil && rep.Loaded {
				t.Errorf("report says loaded: %+v", rep)
			}
		})
	}
	if l.Calls() != 0 {
		t.Errorf("loader called %d times", l.Calls())
	}
}

// TestErrorsOverSocket checks that a failed operation's message and its
// partial report both reach the client.
func TestErrorsOverSocket(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	im1.Name = "corrupt"
	_, p1 := im1.WriteTemp(t)
	// The site piece on storage no longer matches its digest.
	site := filepath.Join(filepath.Dir(p1), "site.cpio")
	b, err := os.ReadFile(site)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(site, b, 0o644); err != nil {
		t.Fatal(err)
	}
	a, l := newAgent(t, agent.Options{})
	c, _ := serve(t, a)

	srep, err := c.Sync(ctx, agent.SyncRequest{Manifest: p1})
	if err == nil || !strings.Contains(err.Error(), `"site.cpio"`) || !errors.Is(err, modcache.ErrDigestMismatch) {
		t.Errorf("Sync = %v, want a digest mismatch (errors.Is across the socket) naming site.cpio", err)
	}
	var re *agent.RemoteError
	if !errors.As(err, &re) || !slices.Contains(re.Kinds, "modcache.digest_mismatch") || errors.Is(err, modcache.ErrSizeMismatch) {
		t.Errorf("Sync error %#v: want a RemoteError of kind modcache.digest_mismatch only", err)
	}
	if srep == nil {
		t.Fatal("Sync returned no partial report")
	}
	if diff := cmp.Diff([]string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz"}, srep.Read); diff != "" {
		t.Errorf("partial Sync report, modules read (-want +got):\n%s", diff)
	}

	rep, err := c.Stage(ctx, agent.StageRequest{Manifest: p1})
	if err == nil || !strings.Contains(err.Error(), "stage corrupt") || !strings.Contains(err.Error(), `"site.cpio"`) || !errors.Is(err, modcache.ErrDigestMismatch) {
		t.Errorf("Stage = %v, want a digest mismatch naming the manifest and site.cpio", err)
	}
	if rep == nil {
		t.Fatal("Stage returned no partial report")
	}
	if diff := cmp.Diff(modcache.SyncReport{Hits: 3, Misses: 1, BytesRead: int64(len(b))}, rep.Sync); diff != "" {
		t.Errorf("partial Stage report, sync (-want +got):\n%s", diff)
	}
	if rep.Loaded || l.Calls() != 0 {
		t.Errorf("loaded %v, loader called %d times", rep.Loaded, l.Calls())
	}
}

func TestServeSocket(t *testing.T) {
	ctx := context.Background()

	t.Run("live socket", func(t *testing.T) {
		a, _ := newAgent(t, agent.Options{})
		_, sock := serve(t, a)
		b, _ := newAgent(t, agent.Options{})
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		err := agent.Serve(ctx, b, sock, agent.ServeOptions{})
		if err == nil || !strings.Contains(err.Error(), "another daemon is listening") {
			t.Errorf("second Serve = %v", err)
		}
		// The first daemon still answers.
		c, err := agent.Dial(sock)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := c.Info(ctx); err != nil {
			t.Errorf("first daemon: %v", err)
		}
	})

	for _, stale := range []string{"", ".new"} {
		t.Run("stale socket"+stale, func(t *testing.T) {
			sock := socketPath(t)
			deadSocket(t, sock+stale)
			a, _ := newAgent(t, agent.Options{})
			stop := serveAt(t, a, sock)
			c, err := agent.Dial(sock)
			if err != nil {
				t.Fatal(err)
			}
			in, err := c.Info(ctx)
			if err != nil || !in.Daemon {
				t.Errorf("Info = %+v, %v", in, err)
			}
			if err := stop(); err != nil {
				t.Errorf("Serve: %v", err)
			}
			// A daemon that ends removes its socket.
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("socket after Serve returned: %v", err)
			}
			if _, err := agent.Dial(sock); !errors.Is(err, agent.ErrNoDaemon) {
				t.Errorf("Dial after the daemon ended = %v, want ErrNoDaemon", err)
			}
		})
	}

	t.Run("not a socket", func(t *testing.T) {
		sock := socketPath(t)
		if err := os.WriteFile(sock, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		a, _ := newAgent(t, agent.Options{})
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		if err := agent.Serve(ctx, a, sock, agent.ServeOptions{}); err == nil || !strings.Contains(err.Error(), "not a socket") {
			t.Errorf("Serve over a regular file = %v", err)
		}
		if _, err := os.Stat(sock); err != nil {
			t.Errorf("Serve removed a file that is not a socket: %v", err)
		}
	})
}

// deadSocket leaves a socket file at path that nobody listens on, as a
// killed daemon does.
func deadSocket(t *testing.T, path string) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Lstat(path); err != nil {
		t.Fatalf("dead socket: %v", err)
	}
}

func TestDialNoDaemon(t *testing.T) {
	missing := socketPath(t)
	dead := socketPath(t)
	deadSocket(t, dead)
	for name, sock := range map[string]string{"missing": missing, "dead": dead} {
		t.Run(name, func(t *testing.T) {
			c, err := agent.Dial(sock)
			if !errors.Is(err, agent.ErrNoDaemon) || c != nil {
				t.Fatalf("Dial = %v, %v; want ErrNoDaemon", c, err)
			}
			if !strings.Contains(err.Error(), sock) {
				t.Errorf("error %q does not name the socket", err)
			}
		})
	}
}

// TestResume is the reboot story without the reboot: generation 1 stages
// v1 through the fake loader; the handoff piece at the end of the loaded
// initrd is unpacked into a fake root as the next kernel would; the next
// daemon resumes from it as generation 2 with a cache that reads no
// storage.
func TestResume(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	gen1, l := newAgent(t, agent.Options{Resume: true})
	if st := gen1.State(); st.Generation != 1 || st.Reason != fastreboot.ReasonCold {
		t.Fatalf("first boot state %+v", st)
	}
	rep, err := gen1.Stage(ctx, agent.StageRequest{Manifest: p1})
	if err != nil {
		t.Fatal(err)
	}
	if rep.CarriedModules != len(m1.Modules) {
		t.Fatalf("carried %d modules, want %d", rep.CarriedModules, len(m1.Modules))
	}
	root := t.TempDir()
	_, initrd, _ := l.last()
	unpackHandoff(t, initrd, rep, root)
	// Storage is gone: nothing may be read from it.
	if err := os.RemoveAll(filepath.Dir(p1)); err != nil {
		t.Fatal(err)
	}

	stateDir := t.TempDir()
	gen2, l2 := newAgent(t, agent.Options{Root: root, StateDir: stateDir, Resume: true})
	st := gen2.State()
	if st.Generation != 2 || st.Reason != fastreboot.ReasonUpdate || st.RehydrateError != "" ||
		st.Rehydrated != (modcache.RehydrateReport{Modules: len(m1.Modules), Bytes: testimage.TotalSize(m1), Unverified: len(m1.Modules)}) {
		t.Errorf("resumed state: generation %d, reason %q, rehydrated %+v, error %q",
			st.Generation, st.Reason, st.Rehydrated, st.RehydrateError)
	}
	if saved, err := fastreboot.LoadState(stateDir); err != nil || saved.Generation != 2 {
		t.Errorf("saved state %+v, %v", saved, err)
	}
	mods, err := os.ReadDir(filepath.Join(root, fastreboot.HandoffModulesDir))
	if err != nil || len(mods) != 0 {
		t.Errorf("handoff module files left after rehydration: %v, %v", mods, err)
	}

	c, _ := serve(t, gen2)
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Generation != 2 || in.Current != "v1" || in.Cache.Modules != len(m1.Modules) ||
		in.Cache.BytesRehydrated != testimage.TotalSize(m1) || in.Cache.BytesRead != 0 {
		t.Errorf("Info after resume: generation %d, current %q, cache %+v", in.Generation, in.Current, in.Cache)
	}
	rep2, err := c.Stage(ctx, agent.StageRequest{Current: true, Reason: fastreboot.ReasonManual})
	if err != nil {
		t.Fatalf("Stage current after resume: %v", err)
	}
	if rep2.Sync.BytesRead != 0 || rep2.Sync.Hits != len(m1.Modules) || rep2.Generation != 3 || l2.Calls() != 1 {
		t.Errorf("Stage current after resume: sync %+v, generation %d, loader calls %d", rep2.Sync, rep2.Generation, l2.Calls())
	}
	if kernel, _, _ := l2.last(); !bytes.Equal(kernel, im1.Kernel.Data) {
		t.Errorf("generation 2 loaded another kernel")
	}
}

// TestStageOneAtATime checks that concurrent Stage requests do not overlap:
// each builds its own fastreboot.Machine, so the agent must serialize them.
func TestStageOneAtATime(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	_, p2 := im2.WriteTemp(t)
	l := &fakeLoader{hold: 50 * time.Millisecond}
	a, _ := newAgent(t, agent.Options{Machine: fastreboot.Options{Loader: l}})
	c, _ := serve(t, a)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		p := p1
		if i%2 == 1 {
			p = p2
		}
		wg.Go(func() {
			_, errs[i] = c.Stage(ctx, agent.StageRequest{Manifest: p})
		})
	}
	wg.Wait()
	if err := errors.Join(errs...); err != nil {
		t.Fatal(err)
	}
	l.mu.Lock()
	calls, maxActive := l.calls, l.maxActive
	l.mu.Unlock()
	if calls != len(errs) || maxActive != 1 {
		t.Errorf("loader: %d calls, up to %d at once; want %d, 1", calls, maxActive, len(errs))
	}
	_, initrd, _ := l.last()
	// What the agent reports as staged is what was loaded last.
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	var release string
	switch {
	case bytes.Contains(initrd, im1.Initrds[2].Data):
		release = "v1"
	case bytes.Contains(initrd, im2.Initrds[2].Data):
		release = "v2"
	default:
		t.Fatal("the loaded initrd holds neither site piece")
	}
	if in.Staged == nil || in.Staged.Manifest != release {
		t.Errorf("Info says %+v is staged, the loader holds %s", in.Staged, release)
	}
}

func TestCacheVerifyEvict(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	im3, _ := testimage.Update()
	im3.Name = "v3"
	im3.Initrds[1].Data = []byte("not cpio") // fails the initrd check
	_, p3 := im3.WriteTemp(t)
	a, _ := newAgent(t, agent.Options{})
	c, _ := serve(t, a)

	if _, err := c.Evict(ctx); err == nil || !strings.Contains(err.Error(), "refusing to empty the cache") {
		t.Errorf("Evict with nothing known = %v", err)
	}
	if _, err := c.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Stage(ctx, agent.StageRequest{Manifest: p2, DryRun: true}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Sync(ctx, agent.SyncRequest{Manifest: p3}); err == nil || !strings.Contains(err.Error(), `"kmods.cpio.xz"`) {
		t.Errorf("Sync of a manifest with a bad piece = %v", err)
	}

	l, err := c.Cache(ctx)
	if err != nil {
		t.Fatal(err)
	}
	type mod struct {
		Names  []string
		Origin string
	}
	var got []mod
	for _, m := range l.Modules {
		got = append(got, mod{m.Names, m.Origin})
	}
	want := []mod{
		{[]string{"base.cpio.gz"}, "storage"}, {[]string{"kmods.cpio.xz"}, "storage"},
		{[]string{"site.cpio"}, "storage"}, {[]string{"site.cpio"}, "storage"}, {[]string{"vmlinuz"}, "storage"},
	}
	sortMods := cmpopts.SortSlices(func(a, b mod) bool {
		return strings.Join(a.Names, ",") < strings.Join(b.Names, ",")
	})
	if diff := cmp.Diff(want, got, sortMods); diff != "" {
		t.Errorf("cache listing (-want +got):\n%s", diff)
	}
	site2, _ := m2.Module("site.cpio")
	if l.Stats.Modules != 5 || l.Stats.BytesHeld != testimage.TotalSize(m1)+site2.Size {
		t.Errorf("stats %+v", l.Stats)
	}

	v, err := c.Verify(ctx)
	if err != nil || v.Modules != 5 || v.Bytes != l.Stats.BytesHeld || len(v.Bad) != 0 {
		t.Errorf("Verify = %+v, %v", v, err)
	}

	// The dry-run stage of v2 did not make it the staged manifest: only
	// v1's modules are referenced.
	e, err := c.Evict(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(&modcache.EvictReport{Modules: 1, Bytes: site2.Size}, e); diff != "" {
		t.Errorf("Evict (-want +got):\n%s", diff)
	}
	if _, err := c.Stage(ctx, agent.StageRequest{Manifest: p2}); err != nil {
		t.Fatal(err)
	}
	if e, err := c.Evict(ctx); err != nil || e.Modules != 0 {
		t.Errorf("Evict with v1 running and v2 staged = %+v, %v; want nothing evicted", e, err)
	}
}

// TestServeDrains checks that Serve returns only after the requests in
// flight are answered: the daemon closes the cache right after it.
func TestServeDrains(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	l := &fakeLoader{hold: 300 * time.Millisecond}
	a, _ := newAgent(t, agent.Options{Machine: fastreboot.Options{Loader: l}})
	sock := socketPath(t)
	stop := serveAt(t, a, sock)
	c, err := agent.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	staged := make(chan error, 1)
	go func() {
		_, err := c.Stage(ctx, agent.StageRequest{Manifest: p1})
		staged <- err
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(time.Millisecond) {
		l.mu.Lock()
		active := l.active
		l.mu.Unlock()
		if active > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the stage did not reach the loader")
		}
	}
	if err := stop(); err != nil {
		t.Errorf("Serve: %v", err)
	}
	l.mu.Lock()
	active := l.active
	l.mu.Unlock()
	if active != 0 {
		t.Errorf("Serve returned while a stage was loading")
	}
	if err := <-staged; err != nil {
		t.Errorf("the stage in flight failed: %v", err)
	}
}

func TestHandlerBadRequests(t *testing.T) {
	a, _ := newAgent(t, agent.Options{})
	srv := httptest.NewServer(agent.Handler(a))
	defer srv.Close()
	for _, tc := range []struct {
		method, path, body string
		code               int
		want               string
	}{
		{"POST", "/v1/stage", "{not json", http.StatusBadRequest, `"error":"bad request:`},
		{"POST", "/v1/stage", `{"current": true}`, http.StatusUnprocessableEntity, `does not know its manifest`},
		{"GET", "/v1/info", "", http.StatusMethodNotAllowed, ""},
		{"POST", "/v1/nothing", "{}", http.StatusNotFound, ""},
		{"POST", "/v1/info", "{}", http.StatusOK, `"generation":1`},
	} {
		req, err := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		if err != nil {
			t.Fatal(err)
		}
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s %s %q: %d %q, want %d and %q", tc.method, tc.path, tc.body, resp.StatusCode, body, tc.code, tc.want)
		}
	}
}
