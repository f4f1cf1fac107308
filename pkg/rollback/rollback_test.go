package rollback

import (
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/google/go-cmp/cmp"
)

var t0 = time.Date(2026, 12, 5, 10, 0, 0, 0, time.UTC)

func manifest(name, kernelDigest string) *bootimage.Manifest {
	return &bootimage.Manifest{
		Version: bootimage.SchemaVersion, Name: name, Cmdline: "console=ttyS0",
		Modules: []bootimage.Module{
			{Name: "vmlinuz", Role: bootimage.RoleKernel, Size: 1, SHA256: strings.Repeat(kernelDigest, 64)},
			{Name: "initrd", Role: bootimage.RoleInitrd, Size: 1, SHA256: strings.Repeat("f", 64)},
		},
	}
}

var (
	imgA = manifest("a", "a")
	imgB = manifest("b", "b")
	imgC = manifest("c", "c")
)

func mustStage(t *testing.T, s State, next int, m *bootimage.Manifest, opts *TrialOptions, now time.Time) State {
	t.Helper()
	n, err := s.Stage(next, m, EventUpdate, opts, now)
	if err != nil {
		t.Fatalf("Stage(%d, %s): %v", next, m.Name, err)
	}
	return n
}

func TestImageIDModulesOnly(t *testing.T) {
	a2 := *imgA
	a2.Cmdline = "console=ttyS0 quiet"
	a2.Name = "renamed"
	if ImageID(imgA) != ImageID(&a2) {
		t.Errorf("a command line or name change changed the image ID")
	}
	if ImageID(imgA) == ImageID(imgB) {
		t.Errorf("images with other kernels share ID %s", ImageID(imgA))
	}
	if len(ImageID(imgA)) != 16 {
		t.Errorf("ID %q: want 16 hex digits", ImageID(imgA))
	}
}

func TestUpdateTrialBless(t *testing.T) {
	s := Cold(1, imgA, t0)
	if s.Good == nil || s.Good.ID != ImageID(imgA) || s.Trial != nil {
		t.Fatalf("cold state: good %v trial %v", s.Good, s.Trial)
	}
	s = mustStage(t, s, 2, imgB, &TrialOptions{Deadline: time.Minute}, t0.Add(time.Second))
	if !s.OnTrial(2) || s.Trial.Deadline != time.Minute || s.Good.ID != ImageID(imgA) {
		t.Fatalf("after staging b: trial %+v good %v", s.Trial, s.Good.Label())
	}
	d := s.Decide(2, t0.Add(2*time.Second))
	if d.Action != ActionRollback || d.Image.ID != ImageID(imgA) {
		t.Fatalf("crash on trial: %+v, want rollback to a", d)
	}
	// Bless with the wrong generation or image: refused, state unchanged.
	if _, err := s.Bless(1, imgB, "bless", t0); !errors.Is(err, ErrNotOnTrial) {
		t.Errorf("bless of generation 1: %v, want ErrNotOnTrial", err)
	}
	if _, err := s.Bless(2, imgC, "bless", t0); err == nil {
		t.Errorf("bless of generation 2 running c: no error")
	}
	b, err := s.Bless(2, imgB, "bless", t0.Add(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	if b.Trial != nil || b.Good.ID != ImageID(imgB) || b.Fallback.ID != ImageID(imgA) || b.Good.Generation != 2 {
		t.Fatalf("blessed: good %v fallback %v trial %v", b.Good.Label(), b.Fallback.Label(), b.Trial)
	}
	if _, err := b.Bless(2, imgB, "bless", t0); !errors.Is(err, ErrNotOnTrial) {
		t.Errorf("second bless: %v, want ErrNotOnTrial", err)
	}
	if d := b.Decide(2, t0.Add(4*time.Second)); d.Action != ActionCrash {
		t.Errorf("crash of the blessed generation: %+v, want crash", d)
	}
	if got := b.History[len(b.History)-1]; got.Reason != EventBless || got.Generation != 2 {
		t.Errorf("last event %+v, want the bless", got)
	}
}

func TestStageGoodAgainEndsTrial(t *testing.T) {
	s := mustStage(t, Cold(1, imgA, t0), 2, imgB, nil, t0)
	s = mustStage(t, s, 3, imgB, nil, t0)
	if !s.OnTrial(3) {
		t.Fatalf("restaging the trial image: trial %+v, want generation 3 on trial", s.Trial)
	}
	s = mustStage(t, s, 4, imgA, nil, t0)
	if s.Trial != nil {
		t.Fatalf("staging last-known-good: still on trial %+v", s.Trial)
	}
}

func TestCrashTrialRollback(t *testing.T) {
	s := mustStage(t, Cold(1, imgA, t0), 2, imgB, nil, t0)
	d := s.Decide(2, t0.Add(time.Minute))
	armed := s.Armed(d)
	// The generation the crash image boots (3) adopts the decision.
	got := armed.Adopt(3, EventRollback, t0.Add(time.Minute), "Kernel panic - not syncing: init", t0.Add(2*time.Minute))
	if got.Trial != nil || got.Good.ID != ImageID(imgA) || got.Pending != nil || len(got.Crashes) != 0 {
		t.Fatalf("after rollback: good %v trial %v pending %v crashes %v", got.Good.Label(), got.Trial, got.Pending, got.Crashes)
	}
	last := got.History[len(got.History)-1]
	if last.Reason != EventRollback || !strings.Contains(last.Note, "Kernel panic") || !strings.Contains(last.Note, "trial of b@") {
		t.Errorf("last event %+v", last)
	}
}

func TestCrashLoop(t *testing.T) {
	s, err := Cold(1, imgA, t0).WithPolicy(Policy{MaxCrashes: 2, Window: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	s = mustStage(t, s, 2, imgB, nil, t0)
	s, err = s.Bless(2, imgB, "bless", t0)
	if err != nil {
		t.Fatal(err)
	}
	gen := 2
	crash := func(at time.Time) Decision {
		d := s.Decide(gen, at)
		s = s.Armed(d).Adopt(gen+1, string(map[Action]string{ActionCrash: EventCrash, ActionRollback: EventRollback}[d.Action]), at, "panic", at)
		gen++
		return d
	}
	if d := crash(t0.Add(time.Minute)); d.Action != ActionCrash {
		t.Fatalf("first crash of b: %+v", d)
	}
	if len(s.Crashes) != 1 {
		t.Fatalf("crashes %v, want 1", s.Crashes)
	}
	d := crash(t0.Add(2 * time.Minute))
	if d.Action != ActionRollback || d.Image.ID != ImageID(imgA) {
		t.Fatalf("second crash of b within the hour: %+v, want rollback to a", d)
	}
	if s.Good.ID != ImageID(imgA) || s.Fallback != nil || len(s.Crashes) != 0 {
		t.Fatalf("after the loop: good %v fallback %v crashes %v", s.Good.Label(), s.Fallback.Label(), s.Crashes)
	}
	if d := crash(t0.Add(3 * time.Minute)); d.Action != ActionCrash {
		t.Fatalf("first crash of a: %+v", d)
	}
	// Outside the window the first crash no longer counts.
	if d := s.Decide(gen, t0.Add(3*time.Minute+time.Hour)); d.Action != ActionCrash {
		t.Errorf("crash an hour later: %+v, want crash", d)
	}
	d = s.Decide(gen, t0.Add(4*time.Minute))
	if d.Action != ActionFirmware || d.LoopEnds != t0.Add(3*time.Minute+time.Hour) {
		t.Fatalf("second crash of a: %+v, want firmware, loop ends an hour after the first", d)
	}
}

func TestRollBackDeadline(t *testing.T) {
	s := mustStage(t, Cold(1, imgA, t0), 2, imgB, &TrialOptions{Deadline: 30 * time.Second}, t0)
	r, err := s.RollBack(2, 3, "no bless within 30s", t0.Add(time.Minute))
	if err != nil {
		t.Fatal(err)
	}
	if r.Trial != nil || r.Good.ID != ImageID(imgA) {
		t.Fatalf("after rollback: trial %v good %v", r.Trial, r.Good.Label())
	}
	if _, err := r.RollBack(3, 4, "x", t0); !errors.Is(err, ErrNotOnTrial) {
		t.Errorf("rollback with nothing on trial: %v", err)
	}
	noGood := mustStage(t, Cold(1, nil, t0), 2, imgB, nil, t0)
	if _, err := noGood.RollBack(2, 3, "x", t0); !errors.Is(err, ErrNoGood) {
		t.Errorf("rollback with no good image: %v", err)
	}
}

func TestBadInput(t *testing.T) {
	s := Cold(1, imgA, t0)
	for _, p := range []Policy{{0, time.Minute}, {101, time.Minute}, {3, 0}, {3, time.Millisecond}, {3, 31 * 24 * time.Hour}} {
		got, err := s.WithPolicy(p)
		if !errors.Is(err, ErrPolicy) {
			t.Errorf("policy %+v: %v, want ErrPolicy", p, err)
		}
		if diff := cmp.Diff(s, got); diff != "" {
			t.Errorf("policy %+v changed the state:\n%s", p, diff)
		}
	}
	for _, o := range []TrialOptions{{Deadline: time.Millisecond}, {Deadline: -time.Second}, {HealthTimeout: time.Second}, {Health: []string{" "}}} {
		got, err := s.Stage(2, imgB, EventUpdate, &o, t0)
		if !errors.Is(err, ErrPolicy) {
			t.Errorf("trial %+v: %v, want ErrPolicy", o, err)
		}
		if diff := cmp.Diff(s, got); diff != "" {
			t.Errorf("trial %+v changed the state:\n%s", o, diff)
		}
	}
	if _, err := s.Bless(1, imgA, "bless", t0); !errors.Is(err, ErrNotOnTrial) || !strings.Contains(err.Error(), "a@") {
		t.Errorf("bless with nothing on trial: %v", err)
	}
}

func TestHistoryBounded(t *testing.T) {
	s := Cold(1, imgA, t0)
	for g := 2; g < 40; g++ {
		s = mustStage(t, s, g, imgA, nil, t0)
	}
	if len(s.History) != HistoryLen || s.History[len(s.History)-1].Generation != 39 {
		t.Errorf("history %d events ending at %+v", len(s.History), s.History[len(s.History)-1])
	}
}

func TestCrashOnTrialWithoutGood(t *testing.T) {
	s := mustStage(t, Cold(1, nil, t0), 2, imgB, nil, t0)
	d := s.Decide(2, t0)
	if d.Action != ActionCrash {
		t.Fatalf("crash on trial with no good image: %+v, want crash", d)
	}
	got := s.Armed(d).Adopt(3, EventCrash, t0, "panic", t0)
	if !got.OnTrial(3) {
		t.Errorf("the recovered generation 3 is not on trial: %+v", got.Trial)
	}
	if _, err := got.Bless(3, imgB, "bless", t0); err != nil {
		t.Errorf("bless of the recovered trial generation: %v", err)
	}
}
