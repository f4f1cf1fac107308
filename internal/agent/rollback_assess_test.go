package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// withBootID writes root's boot id, which keys rollback.json.
func withBootID(t *testing.T, root, id string) {
	t.Helper()
	writeRootFile(t, root, "proc/sys/kernel/random/boot_id", id+"\n")
}

// rbInfo returns the agent's boot assessment.
func rbInfo(t *testing.T, s agent.Service) *agent.RollbackInfo {
	t.Helper()
	in, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if in.Rollback == nil {
		t.Fatal("Info has no boot assessment")
	}
	return in.Rollback
}

// stagedHandoff reads the handoff of the image the loader holds.
func stagedHandoff(t *testing.T, l *fakeLoader, rep *fastreboot.StageReport) *fastreboot.Handoff {
	t.Helper()
	_, initrd, _ := l.last()
	return handoffOf(t, initrd, rep)
}

// trial is generation 1 (cold boot of v1, synced: last-known-good) having
// staged v2 with req; the handoff is unpacked into root and, unless keep,
// the storage of both images is gone (what generation 2 needs comes from
// its cache).
type trial struct {
	m1, m2 *bootimage.Manifest
	staged *fastreboot.Handoff
}

func stageTrial(t *testing.T, root string, req agent.StageRequest, keep bool) *trial {
	t.Helper()
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	gen1, l := newAgent(t, agent.Options{})
	if _, err := gen1.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}
	req.Manifest = p2
	rep, err := gen1.Stage(ctx, req)
	if err != nil {
		t.Fatal(err)
	}
	h := stagedHandoff(t, l, rep)
	_, initrd, _ := l.last()
	unpackHandoff(t, initrd, rep, root)
	gen1.Close()
	for _, p := range []string{p1, p2} {
		if keep {
			break
		}
		if err := os.RemoveAll(filepath.Dir(p)); err != nil {
			t.Fatal(err)
		}
	}
	return &trial{m1: m1, m2: m2, staged: h}
}

// fakeReboot records Options.Reboot's calls.
type fakeReboot struct {
	mu    sync.Mutex
	calls int
	done  chan struct{}
}

func newFakeReboot() *fakeReboot { return &fakeReboot{done: make(chan struct{}, 10)} }

func (r *fakeReboot) reboot(context.Context) error {
	r.mu.Lock()
	r.calls++
	r.mu.Unlock()
	r.done <- struct{}{}
	return nil
}

func (r *fakeReboot) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

// TestBlessNothingOnTrial: a bless with nothing on trial (a cold boot that
// knows no manifest, then one whose synced image is last-known-good) fails
// with rollback.ErrNotOnTrial, also across the socket, and changes
// nothing; so does a rollback.
func TestBlessNothingOnTrial(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	root := t.TempDir()
	withBootID(t, root, "boot-1")
	state := t.TempDir()
	a, _ := newAgent(t, agent.Options{Root: root, StateDir: state})
	c, _ := serve(t, a)
	for _, step := range []string{"unknown image", "synced image"} {
		before := rbInfo(t, a)
		if _, err := a.Bless(ctx, agent.BlessRequest{}); !errors.Is(err, rollback.ErrNotOnTrial) {
			t.Errorf("%s: Bless = %v, want ErrNotOnTrial", step, err)
		}
		if _, err := c.Bless(ctx, agent.BlessRequest{}); !errors.Is(err, rollback.ErrNotOnTrial) || !strings.Contains(err.Error(), "nothing on trial") {
			t.Errorf("%s: Bless over the socket = %v, want ErrNotOnTrial", step, err)
		}
		if _, err := c.Rollback(ctx, agent.RollbackRequest{}); !errors.Is(err, rollback.ErrNotOnTrial) {
			t.Errorf("%s: Rollback over the socket = %v, want ErrNotOnTrial", step, err)
		}
		if diff := cmp.Diff(before, rbInfo(t, a)); diff != "" {
			t.Errorf("%s: the refused bless changed the assessment (-before +after):\n%s", step, diff)
		}
		if _, err := c.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
			t.Fatal(err)
		}
	}
	// The synced image of a cold boot is last-known-good, served from
	// its directory.
	r := rbInfo(t, a)
	if r.OnTrial || r.State.Good == nil || r.State.Good.ID != rollback.ImageID(m1) || r.State.Good.Dir != filepath.Dir(p1) || r.NextCrash.Action != rollback.ActionCrash {
		t.Errorf("cold boot after sync: %+v (good %+v)", r, r.State.Good)
	}
}

// TestStagePutsOnTrial: a Stage of an image other than last-known-good
// puts the next generation on trial (with the request's trial options),
// one of last-known-good's modules does not, and a policy or trial option
// out of range is refused with rollback.ErrPolicy (also across the socket)
// with nothing staged.
func TestStagePutsOnTrial(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	a, l := newAgent(t, agent.Options{})
	c, _ := serve(t, a)
	if _, err := a.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}

	for _, req := range []agent.StageRequest{
		{Manifest: p2, Policy: &rollback.Policy{MaxCrashes: 0, Window: time.Minute}},
		{Manifest: p2, Policy: &rollback.Policy{MaxCrashes: 3, Window: time.Millisecond}},
		{Manifest: p2, Trial: &rollback.TrialOptions{Deadline: time.Millisecond}},
		{Manifest: p2, Trial: &rollback.TrialOptions{HealthTimeout: time.Minute}},
	} {
		if _, err := c.Stage(ctx, req); !errors.Is(err, rollback.ErrPolicy) {
			t.Errorf("Stage with policy %+v trial %+v = %v, want ErrPolicy", req.Policy, req.Trial, err)
		}
	}
	if in, _ := a.Info(ctx); l.Calls() != 0 || in.Staged != nil {
		t.Fatalf("refused stages: %d loads, staged %+v", l.Calls(), in.Staged)
	}

	topts := &rollback.TrialOptions{Deadline: time.Minute, Health: []string{"true"}}
	policy := &rollback.Policy{MaxCrashes: 2, Window: time.Hour}
	rep, err := c.Stage(ctx, agent.StageRequest{Manifest: p2, Trial: topts, Policy: policy})
	if err != nil {
		t.Fatal(err)
	}
	h := stagedHandoff(t, l, rep)
	r := h.Rollback
	if r == nil || !r.OnTrial(2) || r.Trial.ID != rollback.ImageID(m2) || r.Trial.Name != "v2" ||
		r.Good == nil || r.Good.ID != rollback.ImageID(m1) || r.Policy != *policy {
		t.Fatalf("handoff of v2: %+v", r)
	}
	if diff := cmp.Diff(*topts, r.Trial.TrialOptions); diff != "" {
		t.Errorf("trial options (-asked +carried):\n%s", diff)
	}
	// The running generation is not on trial for it.
	if in := rbInfo(t, a); in.OnTrial || in.State.Trial != nil {
		t.Errorf("generation 1 after staging v2: %+v", in)
	}

	rep, err = c.Stage(ctx, agent.StageRequest{Manifest: p1})
	if err != nil {
		t.Fatal(err)
	}
	if r := stagedHandoff(t, l, rep).Rollback; r == nil || r.Trial != nil || r.Good == nil || r.Good.ID != rollback.ImageID(m1) {
		t.Errorf("handoff of last-known-good: %+v", r)
	}
}

// TestBlessFromHandoff: generation 2, resumed from a handoff that puts it
// on trial, says so; a bless makes its image last-known-good with the old
// one as the fallback, is written to rollback.json, and a new agent on the
// same state directory in the same boot reads it back (in another boot the
// handoff's assessment applies again). A second bless is refused.
func TestBlessFromHandoff(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	tr := stageTrial(t, root, agent.StageRequest{}, false)
	withBootID(t, root, "boot-2")
	state := t.TempDir()
	a, _ := newAgent(t, agent.Options{Root: root, StateDir: state, Resume: true})

	r := rbInfo(t, a)
	if !r.OnTrial || r.Generation != 2 || r.State.Good == nil || r.State.Good.ID != rollback.ImageID(tr.m1) ||
		r.NextCrash.Action != rollback.ActionRollback || r.NextCrash.Image.ID != rollback.ImageID(tr.m1) || !r.Deadline.IsZero() {
		t.Fatalf("generation 2: %+v", r)
	}
	c, _ := serve(t, a)
	rep, err := c.Bless(ctx, agent.BlessRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Generation != 2 || rep.Good == nil || rep.Good.ID != rollback.ImageID(tr.m2) || rep.Good.By != "bless" ||
		rep.Fallback == nil || rep.Fallback.ID != rollback.ImageID(tr.m1) || rep.Rearmed || rep.Restaged {
		t.Errorf("bless report %+v", rep)
	}
	r = rbInfo(t, a)
	if r.OnTrial || r.State.Good.ID != rollback.ImageID(tr.m2) || r.State.Fallback.ID != rollback.ImageID(tr.m1) || r.NextCrash.Action != rollback.ActionCrash {
		t.Errorf("after the bless: %+v", r)
	}
	if _, err := c.Bless(ctx, agent.BlessRequest{}); !errors.Is(err, rollback.ErrNotOnTrial) {
		t.Errorf("second bless = %v, want ErrNotOnTrial", err)
	}

	b, err := os.ReadFile(filepath.Join(state, "rollback.json"))
	if err != nil {
		t.Fatal(err)
	}
	var saved struct {
		BootID     string         `json:"boot_id"`
		Generation int            `json:"generation"`
		State      rollback.State `json:"state"`
	}
	if err := json.Unmarshal(b, &saved); err != nil {
		t.Fatal(err)
	}
	if saved.BootID != "boot-2" || saved.Generation != 2 || saved.State.Good == nil || saved.State.Good.ID != rollback.ImageID(tr.m2) {
		t.Errorf("rollback.json: boot %q generation %d good %+v", saved.BootID, saved.Generation, saved.State.Good)
	}
	a.Close()

	// A restarted daemon in the same boot: the bless stands.
	a2, _ := newAgent(t, agent.Options{Root: root, StateDir: state, Resume: true})
	if r2 := rbInfo(t, a2); r2.OnTrial || r2.State.Good.ID != rollback.ImageID(tr.m2) || r2.State.Fallback == nil {
		t.Errorf("restarted daemon: %+v", r2)
	}
	a2.Close()
	// Another boot (the same handoff, a new boot id): rollback.json is
	// not this boot's.
	withBootID(t, root, "boot-3")
	a3, _ := newAgent(t, agent.Options{Root: root, StateDir: state, Resume: true})
	if r3 := rbInfo(t, a3); !r3.OnTrial {
		t.Errorf("another boot: %+v, want the handoff's trial", r3)
	}
}

// TestBlessRearmsAndRestages: a bless arms the crash path again with the
// last arm request (the crash image goes from last-known-good, reason
// rollback, to the blessed image, reason crash) and stages the last staged
// request again, under the new assessment (no longer on trial).
func TestBlessRearmsAndRestages(t *testing.T) {
	ctx := context.Background()
	root := crashRoot(t, 384<<20)
	tr := stageTrial(t, root, agent.StageRequest{}, false)
	withBootID(t, root, "boot-2")
	l := &flagLoader{}
	a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), Resume: true, Machine: fastreboot.Options{
		Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })

	arm, err := a.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatal(err)
	}
	if h := handoffOf(t, l.initrd, arm.Image); h.Reason != fastreboot.ReasonRollback || h.Manifest.Name != "v1" || h.Rollback.Pending == nil {
		t.Errorf("crash image on trial: reason %s, manifest %s, pending %+v", h.Reason, h.Manifest.Name, h.Rollback.Pending)
	}
	staged, err := a.Stage(ctx, agent.StageRequest{Current: true, Reason: fastreboot.ReasonManual})
	if err != nil {
		t.Fatal(err)
	}
	if h := handoffOf(t, l.initrd, staged); !h.Rollback.OnTrial(3) {
		t.Errorf("v2 restaged on trial: generation 3 is not on trial: %+v", h.Rollback.Trial)
	}

	rep, err := a.Bless(ctx, agent.BlessRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Rearmed || !rep.Restaged || len(rep.Warnings) != 0 || l.calls != 4 {
		t.Fatalf("bless: %+v after %d loads", rep, l.calls)
	}
	// The last load is the restage; the crash image is the one before.
	in, err := a.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if h := handoffOf(t, l.initrd, in.Staged); h.Rollback.Trial != nil || h.Rollback.Good.ID != rollback.ImageID(tr.m2) || h.Reason != fastreboot.ReasonManual {
		t.Errorf("restaged handoff: reason %s, trial %+v, good %+v", h.Reason, h.Rollback.Trial, h.Rollback.Good)
	}
	if h := handoffIn(t, l.initrds[0]); h.Reason != fastreboot.ReasonRollback || h.Manifest.Name != "v1" {
		t.Errorf("handoffIn of the first arm: reason %s, manifest %s", h.Reason, h.Manifest.Name)
	}
	if h := handoffIn(t, l.initrds[2]); h.Reason != fastreboot.ReasonCrash || h.Manifest.Name != "v2" || h.Rollback.Pending == nil ||
		h.Rollback.Pending.Action != rollback.ActionCrash || h.Rollback.Good.ID != rollback.ImageID(tr.m2) {
		t.Errorf("crash image re-armed by the bless: reason %s, manifest %s, assessment %+v", h.Reason, h.Manifest.Name, h.Rollback)
	}
	if st, err := a.CrashStatus(ctx); err != nil || st.State == nil || st.State.Mode != crashhandler.ModeDirect {
		t.Errorf("crash status %+v, %v; want armed in direct mode, as asked", st, err)
	}
}

// handoffIn reads the handoff piece of an initrd: from the last newc
// record of the directory "fastreboot" (the handoff piece's first) on.
func handoffIn(t *testing.T, initrd []byte) *fastreboot.Handoff {
	t.Helper()
	name := []byte(fastreboot.HandoffDir + "\x00")
	for i := len(initrd); i > 0; {
		i = bytes.LastIndex(initrd[:i], name)
		if i < 110 {
			break
		}
		if hdr := initrd[i-110 : i]; string(hdr[:6]) == "070701" && string(hdr[94:102]) == fmt.Sprintf("%08X", len(name)) {
			return handoffOf(t, initrd, &fastreboot.StageReport{HandoffBytes: int64(len(initrd) - (i - 110))})
		}
	}
	t.Fatal("no handoff piece in the initrd")
	return nil
}

// TestRunTrial: the trial's health command `true` blesses; `false` rolls
// back (last-known-good staged from the cache, reason rollback, and
// Options.Reboot called); a deadline with no bless rolls back once it
// passes; a generation not on trial runs nothing.
func TestRunTrial(t *testing.T) {
	for _, tc := range []struct {
		name      string
		trial     rollback.TrialOptions
		wantBless bool
		why       string
	}{
		{name: "health passes", trial: rollback.TrialOptions{Health: []string{"true"}}, wantBless: true},
		{name: "health fails", trial: rollback.TrialOptions{Health: []string{"false"}}, why: "health command failed"},
		{name: "deadline", trial: rollback.TrialOptions{Deadline: time.Second}, why: "not blessed within the trial deadline 1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			root := t.TempDir()
			tr := stageTrial(t, root, agent.StageRequest{Trial: &tc.trial}, false)
			withBootID(t, root, "boot-2")
			rb := newFakeReboot()
			a, l := newAgent(t, agent.Options{Root: root, Resume: true, Reboot: rb.reboot})
			if r := rbInfo(t, a); !r.OnTrial || (tc.trial.Deadline > 0) == r.Deadline.IsZero() {
				t.Fatalf("generation 2: %+v", r)
			}
			start := time.Now()
			rctx, cancel := context.WithCancel(ctx)
			defer cancel()
			a.RunTrial(rctx)

			if tc.wantBless {
				deadline := time.Now().Add(10 * time.Second)
				for rbInfo(t, a).OnTrial && time.Now().Before(deadline) {
					time.Sleep(10 * time.Millisecond)
				}
				r := rbInfo(t, a)
				if r.OnTrial || r.State.Good.ID != rollback.ImageID(tr.m2) || r.State.Good.By != "health command" ||
					r.Health == nil || r.Health.State != agent.HealthPassed {
					t.Errorf("after a passing health command: %+v (health %+v)", r, r.Health)
				}
				time.Sleep(300 * time.Millisecond)
				if rb.count() != 0 || l.Calls() != 0 {
					t.Errorf("a blessed trial rebooted (%d) or staged (%d)", rb.count(), l.Calls())
				}
				return
			}
			select {
			case <-rb.done:
			case <-time.After(10 * time.Second):
				t.Fatal("no reboot")
			}
			if took := time.Since(start); tc.trial.Deadline > 0 && took < tc.trial.Deadline {
				t.Errorf("rolled back after %s, before the deadline %s", took, tc.trial.Deadline)
			}
			r := rbInfo(t, a)
			if !strings.Contains(r.RollingBack, tc.why) || !r.OnTrial {
				t.Errorf("rolling back %q (on trial %v), want %q", r.RollingBack, r.OnTrial, tc.why)
			}
			in, err := a.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if l.Calls() != 1 || in.Staged == nil || in.Staged.Reason != fastreboot.ReasonRollback || in.Staged.Manifest != "v1" || in.Staged.Sync.BytesRead != 0 {
				t.Fatalf("staged %+v after %d loads; want v1 from the cache, reason rollback", in.Staged, l.Calls())
			}
			h := stagedHandoff(t, l, in.Staged)
			if h.Generation != 3 || h.Reason != fastreboot.ReasonRollback || h.Rollback == nil || h.Rollback.Trial != nil || h.Rollback.Pending != nil ||
				h.Rollback.Good.ID != rollback.ImageID(tr.m1) {
				t.Errorf("rollback handoff: generation %d reason %s assessment %+v", h.Generation, h.Reason, h.Rollback)
			}
			if e := h.Rollback.History[len(h.Rollback.History)-1]; e.Reason != rollback.EventRollback || e.Generation != 3 || !strings.Contains(e.Note, tc.why) {
				t.Errorf("last event %+v, want the rollback saying %q", e, tc.why)
			}
		})
	}
	t.Run("not on trial", func(t *testing.T) {
		rb := newFakeReboot()
		a, l := newAgent(t, agent.Options{Reboot: rb.reboot})
		a.RunTrial(context.Background())
		time.Sleep(300 * time.Millisecond)
		if rb.count() != 0 || l.Calls() != 0 {
			t.Errorf("RunTrial off trial: %d reboots, %d loads", rb.count(), l.Calls())
		}
	})
}

// TestEvictKeepsGoodImages: Evict keeps last-known-good's modules (the
// carried site piece of v1, which neither the running v2 nor a staged
// image names), before and after a bless makes it the fallback.
func TestEvictKeepsGoodImages(t *testing.T) {
	ctx := context.Background()
	root := t.TempDir()
	tr := stageTrial(t, root, agent.StageRequest{}, false)
	withBootID(t, root, "boot-2")
	a, _ := newAgent(t, agent.Options{Root: root, Resume: true})
	site1, _ := tr.m1.Module("site.cpio")
	has := func() bool {
		ls, err := a.Cache(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range ls.Modules {
			if m.Digest == site1.SHA256 {
				return true
			}
		}
		return false
	}
	if !has() {
		t.Fatal("v1's site piece was not carried into generation 2's cache")
	}
	for _, step := range []string{"on trial", "blessed"} {
		rep, err := a.Evict(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Modules != 0 || !has() {
			t.Errorf("%s: evicted %+v; v1's site piece kept: %v", step, rep, has())
		}
		if _, err := a.Bless(ctx, agent.BlessRequest{}); err != nil && step == "on trial" {
			t.Fatal(err)
		}
	}
}

// TestCrashLoopArmsFallback: the fallback's modules are not in the crash
// image (it carries only its own manifest's), so the generation after a
// crash of blessed v2 does not hold v1's site piece; when its next crash
// would be the K-th within the window, the crash arm of the running image
// must arm the fallback v1 (reason rollback), reading what is missing from
// the fallback's directory.
func TestCrashLoopArmsFallback(t *testing.T) {
	ctx := context.Background()
	root2 := crashRoot(t, 384<<20)
	tr := stageTrial(t, root2, agent.StageRequest{Policy: &rollback.Policy{MaxCrashes: 2, Window: time.Hour}}, true)
	withBootID(t, root2, "boot-2")
	newCrashAgent := func(root string) (*agent.Agent, *flagLoader) {
		l := &flagLoader{}
		a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), Resume: true, Machine: fastreboot.Options{
			Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a, l
	}
	gen2, l2 := newCrashAgent(root2)
	if _, err := gen2.Bless(ctx, agent.BlessRequest{}); err != nil {
		t.Fatal(err)
	}
	arm, err := gen2.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatal(err)
	}
	if arm.Decision == nil || arm.Decision.Action != rollback.ActionCrash || arm.Image.Manifest != "v2" {
		t.Fatalf("gen 2 armed %s with decision %+v", arm.Image.Manifest, arm.Decision)
	}

	// Generation 2 crashes: the direct crash kernel is generation 3,
	// resumed from the crash image's handoff.
	root3 := crashRoot(t, 384<<20)
	withBootID(t, root3, "boot-3")
	unpackHandoff(t, l2.initrd, arm.Image, root3)
	gen3, l3 := newCrashAgent(root3)
	r := rbInfo(t, gen3)
	if r.Generation != 3 || len(r.State.Crashes) != 1 || r.State.Fallback == nil || r.NextCrash.Action != rollback.ActionRollback ||
		r.NextCrash.Image == nil || r.NextCrash.Image.ID != rollback.ImageID(tr.m1) {
		t.Fatalf("generation 3 after a crash: %+v (next crash %+v)", r, r.NextCrash)
	}
	rep, err := gen3.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("crash arm of a crash-looping image with a fallback: %v", err)
	}
	h := handoffOf(t, l3.initrd, rep.Image)
	if !rep.Armed || h.Manifest.Name != "v1" || h.Reason != fastreboot.ReasonRollback || h.Rollback.Pending == nil || h.Rollback.Pending.Image.ID != rollback.ImageID(tr.m1) {
		t.Errorf("armed %v: %s, reason %s, pending %+v; want the fallback v1, reason rollback", rep.Armed, h.Manifest.Name, h.Reason, h.Rollback.Pending)
	}
}

// TestDeadlineSurvivesRestart: a trial's deadline counts from the
// generation's first daemon; a daemon restarted later in the same boot
// keeps it (it does not give the trial a new deadline).
func TestDeadlineSurvivesRestart(t *testing.T) {
	root := t.TempDir()
	stageTrial(t, root, agent.StageRequest{Trial: &rollback.TrialOptions{Deadline: 10 * time.Minute}}, false)
	withBootID(t, root, "boot-2")
	state := t.TempDir()
	first := time.Date(2026, 12, 6, 1, 0, 0, 0, time.UTC)
	clock := first
	now := func() time.Time { return clock }
	a, _ := newAgent(t, agent.Options{Root: root, StateDir: state, Resume: true, Now: now})
	if r := rbInfo(t, a); !r.OnTrial || !r.Deadline.Equal(first.Add(10*time.Minute)) {
		t.Fatalf("first daemon: on trial %v, deadline %v; want %v", r.OnTrial, r.Deadline, first.Add(10*time.Minute))
	}
	a.Close()
	clock = first.Add(7 * time.Minute)
	a2, _ := newAgent(t, agent.Options{Root: root, StateDir: state, Resume: true, Now: now})
	if r := rbInfo(t, a2); !r.OnTrial || !r.Deadline.Equal(first.Add(10*time.Minute)) {
		t.Errorf("restarted daemon: on trial %v, deadline %v; want the first daemon's %v", r.OnTrial, r.Deadline, first.Add(10*time.Minute))
	}
}

// TestColdAssessmentMakesStateDir: an in-process agent (a command run
// before any daemon, whose /run/fastreboot does not exist yet) saves its
// cold boot's assessment in a state directory it makes.
func TestColdAssessmentMakesStateDir(t *testing.T) {
	state := filepath.Join(t.TempDir(), "run/fastreboot")
	newAgent(t, agent.Options{StateDir: state})
	if _, err := os.Stat(filepath.Join(state, "rollback.json")); err != nil {
		t.Errorf("the cold boot's assessment was not saved: %v", err)
	}
}
