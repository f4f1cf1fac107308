package crashpath_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// rbNow is the clock of the rollback tests.
var rbNow = time.Date(2026, 12, 5, 12, 0, 0, 0, time.UTC)

// rbRig is the crash path of generation 2, which runs v2, with v1 (and
// its modules) cached as the image before it, and a boot assessment the
// test sets.
type rbRig struct {
	root   string
	l      *flagLoader
	p      *crashpath.Path
	m1, m2 *bootimage.Manifest

	mu sync.Mutex
	rs *rollback.State
}

func (r *rbRig) set(s *rollback.State) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.rs = s
}

func newRBRig(t *testing.T) *rbRig {
	t.Helper()
	v1, v2 := testimage.Update()
	m1, d1 := v1.WriteTempDir(t)
	m2, d2 := v2.WriteTempDir(t)
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	t.Cleanup(func() { cache.Close() })
	for m, d := range map[*bootimage.Manifest]string{m1: d1, m2: d2} {
		if _, err := cache.Sync(context.Background(), m, modcache.DirSource(d)); err != nil {
			t.Fatal(err)
		}
	}
	r := &rbRig{root: crashRoot(t, 384<<20), l: &flagLoader{}, m1: m1, m2: m2}
	writeRootFile(t, r.root, "proc/sys/kernel/panic", "0\n")
	r.p = crashpath.New(crashpath.Config{
		Root: r.root, StateDir: t.TempDir(), Cache: cache,
		MachineOptions: fastreboot.Options{Loader: r.l, Probe: func() error { return errors.New("probe must not run in tests") }},
		State:          &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: m2},
		Rollback: func() *rollback.State {
			r.mu.Lock()
			defer r.mu.Unlock()
			if r.rs == nil {
				return nil
			}
			c := r.rs.Clone()
			return &c
		},
		Now: func() time.Time { return rbNow },
	})
	return r
}

func rbImage(m *bootimage.Manifest, gen int) *rollback.Image {
	return &rollback.Image{ID: rollback.ImageID(m), Generation: gen, Manifest: *m, By: "bless"}
}

// onTrial is generation 2 running v2 on trial, v1 last-known-good.
func (r *rbRig) onTrial(t *testing.T) *rollback.State {
	t.Helper()
	s := rollback.State{Good: rbImage(r.m1, 1), Policy: rollback.DefaultPolicy()}
	s, err := s.Stage(2, r.m2, rollback.EventUpdate, nil, rbNow.Add(-time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &s
}

// onTrial is (*rbRig).onTrial for the table.
func onTrial(t *testing.T, r *rbRig) *rollback.State { return r.onTrial(t) }

// TestArmRollbackDecision: Arm of the running image builds what the boot
// assessment decides a crash boots, with the handoff reason of the
// decision and the state with the decision pending: last-known-good v1
// (reason rollback) while v2 is on trial, or after the K-th crash of
// blessed v2 within the window (the fallback; the decision says when the
// loop's oldest crash leaves the window), the running v2 (reason crash)
// once blessed. A manifest the caller names is armed as asked, reason
// crash, the state carried with no decision. The estimate builds the same
// image.
func TestArmRollbackDecision(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name string
		// state is the assessment (r.m1 is v1, r.m2 v2).
		state      func(t *testing.T, r *rbRig) *rollback.State
		target     func(t *testing.T, r *rbRig) crashpath.Target
		wantImage  string
		wantReason fastreboot.Reason
		wantAction rollback.Action // "": no decision
		loopEnds   time.Time
	}{
		{name: "on trial", state: onTrial, wantImage: "v1", wantReason: fastreboot.ReasonRollback, wantAction: rollback.ActionRollback},
		{name: "blessed", state: func(t *testing.T, r *rbRig) *rollback.State {
			s, err := r.onTrial(t).Bless(2, r.m2, "bless", rbNow)
			if err != nil {
				t.Fatal(err)
			}
			return &s
		}, wantImage: "v2", wantReason: fastreboot.ReasonCrash, wantAction: rollback.ActionCrash},
		{name: "crash loop with a fallback", state: func(t *testing.T, r *rbRig) *rollback.State {
			return &rollback.State{Good: rbImage(r.m2, 2), Fallback: rbImage(r.m1, 1), Policy: rollback.DefaultPolicy(),
				Crashes: []time.Time{rbNow.Add(-10 * time.Minute), rbNow.Add(-time.Minute)}}
		}, wantImage: "v1", wantReason: fastreboot.ReasonRollback, wantAction: rollback.ActionRollback,
			loopEnds: rbNow.Add(-10 * time.Minute).Add(rollback.DefaultWindow)},
		{name: "a manifest named", state: onTrial, target: func(t *testing.T, r *rbRig) crashpath.Target {
			return crashpath.Target{Manifest: r.m2, Label: "v2.json"}
		}, wantImage: "v2", wantReason: fastreboot.ReasonCrash},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := newRBRig(t)
			st := tc.state(t, r)
			r.set(st)
			var target crashpath.Target
			if tc.target != nil {
				target = tc.target(t, r)
			}
			est, err := r.p.Estimate(ctx, crashpath.EstimateOptions{Target: target})
			if err != nil {
				t.Fatalf("Estimate: %v", err)
			}
			rep, err := r.p.Arm(ctx, crashpath.ArmOptions{Target: target})
			if err != nil {
				t.Fatalf("Arm: %v", err)
			}
			if !rep.Armed || r.l.calls != 1 || r.l.flags != 2 /* KEXEC_FILE_ON_CRASH */ {
				t.Fatalf("armed %v after %d loads, flags %#x", rep.Armed, r.l.calls, r.l.flags)
			}
			want := map[string]*bootimage.Manifest{"v1": r.m1, "v2": r.m2}[tc.wantImage]
			h := handoffOf(t, r.l.initrd, rep.Image)
			if h.Manifest.Name != tc.wantImage || rollback.ImageID(&h.Manifest) != rollback.ImageID(want) || !carriesAll(h.Carried, want) {
				t.Errorf("crash image of %s (%d carried), want %s", h.Manifest.Name, len(h.Carried), tc.wantImage)
			}
			if h.Reason != tc.wantReason || rep.Image.Reason != tc.wantReason || h.Generation != 3 || est.Image.Reason != tc.wantReason || est.Image.Manifest != tc.wantImage {
				t.Errorf("crash handoff: reason %s (report %s, estimate %s of %s), generation %d; want %s, 3", h.Reason, rep.Image.Reason, est.Image.Reason, est.Image.Manifest, h.Generation, tc.wantReason)
			}
			if h.Rollback == nil {
				t.Fatal("the crash handoff carries no boot assessment")
			}
			// The handoff carries the state as it was, plus the decision.
			carried := h.Rollback.Clone()
			carried.Pending = nil
			if diff := cmp.Diff(st, &carried); diff != "" {
				t.Errorf("crash handoff's state (-assessment +carried):\n%s", diff)
			}
			if tc.wantAction == "" {
				if h.Rollback.Pending != nil || rep.Decision != nil {
					t.Errorf("a named manifest armed with decision %+v, pending %+v", rep.Decision, h.Rollback.Pending)
				}
				return
			}
			d := h.Rollback.Pending
			if d == nil || d.Action != tc.wantAction || rep.Decision == nil || rep.Decision.Action != tc.wantAction || !d.LoopEnds.Equal(tc.loopEnds) {
				t.Fatalf("pending %+v, report decision %+v; want %s, loop ends %v", d, rep.Decision, tc.wantAction, tc.loopEnds)
			}
			if tc.wantAction == rollback.ActionRollback && (d.Image == nil || d.Image.ID != rollback.ImageID(want)) {
				t.Errorf("pending decision's image %+v, want %s", d.Image, tc.wantImage)
			}
		})
	}
}

// TestArmFirmwareDecision: the K-th crash of last-known-good within the
// window, with no fallback, arms no crash image: Arm unloads the one armed
// before (a crash would recover into the crash-looping image again),
// keeps the faults routed to panic, sets kernel.panic (which was 0: wait
// forever) so that the panic reboots through the firmware, and says so
// (Armed false, the decision, no error); Estimate refuses with
// ErrFirmwareOnly and loads nothing.
func TestArmFirmwareDecision(t *testing.T) {
	ctx := context.Background()
	r := newRBRig(t)
	blessed := &rollback.State{Good: rbImage(r.m2, 2), Policy: rollback.DefaultPolicy()}
	r.set(blessed)
	if _, err := r.p.Arm(ctx, crashpath.ArmOptions{Mode: crashhandler.ModeDirect}); err != nil {
		t.Fatal(err)
	}
	if r.l.calls != 1 || sysctl(t, r.root, crashhandler.SysctlPanicOnOops) != "1" {
		t.Fatalf("first arm: %d loads, panic_on_oops %s", r.l.calls, sysctl(t, r.root, crashhandler.SysctlPanicOnOops))
	}
	armedInitrd := r.l.initrd

	loop := blessed.Clone()
	loop.Crashes = []time.Time{rbNow.Add(-3 * time.Minute), rbNow.Add(-time.Minute)}
	r.set(&loop)
	if _, err := r.p.Estimate(ctx, crashpath.EstimateOptions{Initrd: crashpath.InitrdImage}); !errors.Is(err, crashpath.ErrFirmwareOnly) || !strings.Contains(err.Error(), "crash loop") {
		t.Errorf("Estimate = %v, want ErrFirmwareOnly saying why", err)
	}
	if r.l.calls != 1 {
		t.Errorf("the estimate called kexec_file_load: %d calls", r.l.calls)
	}
	rep, err := r.p.Arm(ctx, crashpath.ArmOptions{Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if rep.Armed || rep.Image != nil || rep.Decision == nil || rep.Decision.Action != rollback.ActionFirmware ||
		!rep.Decision.LoopEnds.Equal(rbNow.Add(-3*time.Minute).Add(rollback.DefaultWindow)) || !strings.Contains(rep.Why, "kernel.panic=10") {
		t.Errorf("firmware arm: %+v (decision %+v)", rep, rep.Decision)
	}
	// One more call: the unload. Nothing was loaded.
	if r.l.calls != 2 || r.l.flags != 3 /* UNLOAD|ON_CRASH */ || &r.l.initrd[0] != &armedInitrd[0] {
		t.Errorf("kexec_file_load: %d calls, last flags %#x; want the unload only", r.l.calls, r.l.flags)
	}
	// An oops still panics (and the panic goes through the firmware).
	if got := sysctl(t, r.root, crashhandler.SysctlPanicOnOops); got != "1" {
		t.Errorf("panic_on_oops = %s, want 1 kept", got)
	}
	if got := sysctl(t, r.root, crashhandler.SysctlPanic); got != "10" {
		t.Errorf("kernel.panic = %s, want %d", got, crashpath.DefaultFirmwarePanic)
	}
	if st, err := r.p.Status(); err != nil || st.Armed || st.State == nil || !st.State.Firmware || st.State.Previous[crashhandler.SysctlPanicOnOops] != "0" {
		t.Errorf("Status after the firmware decision: %+v, %v; want a firmware state keeping the values before the first arm", st, err)
	}
	// A disarm then writes back the values from before the first arm.
	if _, err := r.p.Disarm(ctx); err != nil {
		t.Fatal(err)
	}
	if got := sysctl(t, r.root, crashhandler.SysctlPanicOnOops); got != "0" {
		t.Errorf("panic_on_oops after a disarm = %s, want 0 restored", got)
	}
	// A kernel.panic already set is left as it is.
	writeRootFile(t, r.root, "proc/sys/kernel/panic", "30\n")
	if rep, err := r.p.Arm(ctx, crashpath.ArmOptions{PanicTimeout: 5}); err != nil || !strings.Contains(rep.Why, "kernel.panic=30") || sysctl(t, r.root, crashhandler.SysctlPanic) != "30" {
		t.Errorf("firmware arm with kernel.panic=30: %+v, %v", rep, err)
	}
}

// TestRecoverRollback: a two-stage crash kernel started by the crash image
// of v2 on trial (last-known-good v1, reason rollback) stages production v1
// with reason rollback and the crash handoff's boot assessment, decision
// pending; that generation takes the rollback as a crash (LastCrash), and
// applying the decision ends the trial.
func TestRecoverRollback(t *testing.T) {
	ctx := context.Background()
	r := newRBRig(t)
	trial := r.onTrial(t)
	r.set(trial)
	rep, err := r.p.Arm(ctx, crashpath.ArmOptions{Mode: crashhandler.ModeTwoStage})
	if err != nil {
		t.Fatal(err)
	}
	crashH := handoffOf(t, r.l.initrd, rep.Image)

	crash := crashRoot(t, 0)
	withCmdline(t, crash, "elfcorehdr=0x7f000000 "+r.l.cmdline)
	writeRootFile(t, crash, "proc/uptime", "3.00 3.00\n")
	unpackHandoff(t, r.l.initrd, rep.Image, crash)
	prod := &flagLoader{}
	rr, err := crashpath.Recover(ctx, crashpath.Config{Root: crash, StateDir: t.TempDir(), MachineOptions: fastreboot.Options{
		Loader: prod, Probe: func() error { return errors.New("probe must not run in tests") },
	}}, crashpath.RecoverOptions{})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rr.Evidence == nil || rr.Evidence.Generation != 2 {
		t.Errorf("evidence %+v, want generation 2's crash", rr.Evidence)
	}
	if rr.Staged == nil || rr.Staged.Reason != fastreboot.ReasonRollback || rr.Staged.Manifest != "v1" || rr.Staged.Generation != 3 || prod.calls != 1 {
		t.Fatalf("staged %+v after %d loads; want v1, reason rollback, generation 3", rr.Staged, prod.calls)
	}
	prodRoot := t.TempDir()
	unpackHandoff(t, prod.initrd, rr.Staged, prodRoot)
	h, err := fastreboot.ReadHandoff(prodRoot)
	if err != nil {
		t.Fatal(err)
	}
	if h.Reason != fastreboot.ReasonRollback || h.Generation != 3 || h.Manifest.Name != "v1" {
		t.Errorf("production handoff: reason %s generation %d manifest %s", h.Reason, h.Generation, h.Manifest.Name)
	}
	if diff := cmp.Diff(crashH.Rollback, h.Rollback); diff != "" || h.Rollback.Pending == nil {
		t.Errorf("production's boot assessment (-crash handoff +production handoff):\n%s", diff)
	}
	// Generation 3 sees the crash of generation 2 ...
	ev := crashpath.LastCrash(prodRoot, t.TempDir())
	if ev == nil || ev.Generation != 2 {
		t.Errorf("LastCrash of the rollback generation = %+v, want generation 2's crash", ev)
	}
	// ... and, applying the decision, runs last-known-good off trial.
	s := h.Rollback.Adopt(3, string(h.Reason), rbNow, "", rbNow)
	if s.Trial != nil || s.Good == nil || s.Good.ID != rollback.ImageID(r.m1) || s.OnTrial(3) || s.Pending != nil {
		t.Errorf("adopted: %+v", s)
	}
	if e := s.History[len(s.History)-1]; e.Reason != rollback.EventRollback || !strings.Contains(e.Note, "trial of v2") {
		t.Errorf("last event %+v, want the failed trial's rollback", e)
	}
}

// TestLastCrashRollback: a rollback handoff is a crash's only when its
// decision is pending (the crash path armed it); a trial that failed its
// deadline or health command rolls back with none.
func TestLastCrashRollback(t *testing.T) {
	for _, pending := range []bool{true, false} {
		root := t.TempDir()
		writeRootFile(t, root, "proc/uptime", "10.00 20.00\n")
		im, _ := testimage.Update()
		s := rollback.State{Good: rbImage(im.Manifest(), 1)}
		if pending {
			s = s.Armed(rollback.Decision{Action: rollback.ActionRollback, Image: s.Good})
		}
		h := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: 3, Reason: fastreboot.ReasonRollback, Manifest: *im.Manifest(), Rollback: &s}
		writeHandoff(t, root, &h)
		ev := crashpath.LastCrash(root, t.TempDir())
		if (ev != nil) != pending || (ev != nil && ev.Generation != 2) {
			t.Errorf("pending %v: LastCrash = %+v", pending, ev)
		}
	}
}

func writeHandoff(t *testing.T, root string, h *fastreboot.Handoff) {
	t.Helper()
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	writeRootFile(t, root, fastreboot.HandoffFile, string(b))
}

// carriesAll reports whether every module of m is carried (a crash image
// also carries the good images' modules).
func carriesAll(carried []string, m *bootimage.Manifest) bool {
	for _, mod := range m.Modules {
		if !slices.Contains(carried, mod.SHA256) {
			return false
		}
	}
	return true
}
