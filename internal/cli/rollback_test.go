package cli

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// writeRollbackHandoff puts into root what the kernel unpacks from the
// handoff piece of an image that runs m (read from dir) under the boot
// assessment rb, carrying m's modules and those of rb's good images (read
// from goodDir), as a stage on trial does.
func writeRollbackHandoff(t *testing.T, root string, m *bootimage.Manifest, dir string, rb *rollback.State, goodDir string) {
	t.Helper()
	var blobs []fastreboot.Blob
	seen := map[string]bool{}
	add := func(m *bootimage.Manifest, dir string) {
		for _, mod := range m.Modules {
			if seen[mod.SHA256] {
				continue
			}
			seen[mod.SHA256] = true
			b, err := os.ReadFile(filepath.Join(dir, mod.Source))
			if err != nil {
				t.Fatal(err)
			}
			blobs = append(blobs, handoffBlob{bytes.NewReader(b), mod.SHA256})
		}
	}
	add(m, dir)
	for _, im := range []*rollback.Image{rb.Good, rb.Fallback} {
		if im != nil {
			add(&im.Manifest, goodDir)
		}
	}
	h := &fastreboot.Handoff{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: *m, Rollback: rb}
	var piece bytes.Buffer
	if _, err := fastreboot.WriteHandoffPiece(&piece, h, blobs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(piece.Bytes())), func(r cpio.Record) error {
		return cpio.CreateFileInRoot(r, root, false)
	}); err != nil {
		t.Fatal(err)
	}
}

// trialState is the assessment generation 2 starts under after generation
// 1, a cold boot of v1, staged v2 on trial with opts.
func trialState(m1, m2 *bootimage.Manifest, opts rollback.TrialOptions, now time.Time) *rollback.State {
	s := rollback.Cold(1, m1, now.Add(-time.Hour))
	s, err := s.Stage(2, m2, rollback.EventUpdate, &opts, now.Add(-time.Minute))
	if err != nil {
		panic(err)
	}
	return &s
}

func label(m *bootimage.Manifest) string { return m.Name + "@" + rollback.ImageID(m) }

// TestBlessNothingOnTrial: bless and rollback refuse, exit 1, when no
// generation is on trial, with rollback.ErrNotOnTrial's kind under --json.
func TestBlessNothingOnTrial(t *testing.T) {
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	h := newHarness(t)

	// A cold boot whose image is not known.
	r := h.run("--no-daemon", "bless")
	if r.code != ExitFailed || !strings.Contains(r.stderr, rollback.ErrNotOnTrial.Error()) {
		t.Errorf("bless without a daemon: exit %d, stderr %q; want %d and %q", r.code, r.stderr, ExitFailed, rollback.ErrNotOnTrial)
	}
	r = h.run("--no-daemon", "bless", "--json")
	var e ErrorV1
	decodeStdout(t, r, &e)
	if r.code != ExitFailed || e.Error.ExitCode != ExitFailed || e.Error.Command != "bless" || !slices.Contains(e.Error.Kinds, "rollback.not_on_trial") {
		t.Errorf("bless --json: exit %d, %+v; want exit %d and the kind rollback.not_on_trial", r.code, e, ExitFailed)
	}

	// The daemon of a cold boot takes the first manifest synced for the
	// running image, which is good.
	h.startDaemon()
	if r := h.run("cache", "sync", p1); r.code != ExitOK {
		t.Fatalf("cache sync: %s", r.stderr)
	}
	r = h.run("bless")
	if r.code != ExitFailed || !strings.Contains(r.stderr, rollback.ErrNotOnTrial.Error()+": generation 1 runs last-known-good image "+label(m1)) || r.stdout != "" {
		t.Errorf("bless of last-known-good: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	// The unit that blesses at every boot: nothing on trial is fine.
	r = h.run("bless", "--if-trial")
	if r.code != ExitOK || !strings.Contains(r.stdout, "nothing to bless") || !strings.Contains(r.stdout, rollback.ErrNotOnTrial.Error()) {
		t.Errorf("bless --if-trial of last-known-good: exit %d, stdout %q, stderr %q; want success saying nothing is on trial", r.code, r.stdout, r.stderr)
	}
	if r := h.run("bless", "--if-trial", "--json"); r.code != ExitUsage {
		t.Errorf("bless --if-trial --json: exit %d, want a usage error", r.code)
	}
	r = h.run("bless", "--json")
	e = ErrorV1{}
	decodeStdout(t, r, &e)
	if r.code != ExitFailed || !slices.Contains(e.Error.Kinds, "rollback.not_on_trial") {
		t.Errorf("bless --json through the daemon: exit %d, %+v", r.code, e)
	}
	r = h.run("rollback")
	if r.code != ExitFailed || !strings.Contains(r.stderr, rollback.ErrNotOnTrial.Error()) || h.loader.Calls() != 0 {
		t.Errorf("rollback with nothing on trial: exit %d, stderr %q, %d loads", r.code, r.stderr, h.loader.Calls())
	}
}

// TestStageTrialFlags: every bad trial or crash-loop value is a usage
// error naming the flag and the value, and nothing is read or staged.
func TestStageTrialFlags(t *testing.T) {
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--max-crashes", "0"}, "--max-crashes 0: "},
		{[]string{"--max-crashes", "1000"}, "--max-crashes 1000: "},
		{[]string{"--max-crashes", "-1", "--crash-window", "1h"}, "--max-crashes -1: "},
		{[]string{"--crash-window", "1ms"}, "--crash-window 1ms: "},
		{[]string{"--crash-window", "1000h"}, "--crash-window 1000h0m0s: "},
		{[]string{"--trial-deadline", "1ms"}, "--trial-deadline 1ms: "},
		{[]string{"--trial-deadline", "-1m"}, "--trial-deadline -1m0s: "},
		{[]string{"--health-timeout", "1m"}, "--health-timeout 1m0s: "},
		{[]string{"--health", "true", "--health-timeout", "-1s"}, "--health-timeout -1s: "},
		{[]string{"--health", ""}, `--health "": `},
		{[]string{"--health", "  "}, `--health "  ": `},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newHarness(t)
			for _, cmd := range [][]string{{"stage", p1}, {"reboot", p1}} {
				r := h.run(append(append([]string{"--no-daemon"}, cmd...), tc.args...)...)
				if r.code != ExitUsage || !strings.Contains(r.stderr, "fastreboot "+cmd[0]+": "+tc.want) {
					t.Errorf("%s: exit %d, stderr %q; want %d and %q", cmd[0], r.code, r.stderr, ExitUsage, tc.want)
				}
				if strings.Contains(r.stderr, "staging") {
					t.Errorf("%s: staging began before the flags were checked: %q", cmd[0], r.stderr)
				}
			}
			if h.loader.Calls() != 0 || len(h.rebooter.Calls()) != 0 {
				t.Errorf("%d loads, reboots %q after a bad flag", h.loader.Calls(), h.rebooter.Calls())
			}
		})
	}
	// A health command this system cannot find is refused when staged,
	// not found failing in the next generation; nothing is loaded.
	{
		h := newHarness(t)
		r := h.run("--no-daemon", "stage", "--health", "/nonexistent/health-check --quick", p1)
		if r.code != ExitFailed || !strings.Contains(r.stderr, `health command "/nonexistent/health-check"`) || !strings.Contains(r.stderr, "invalid policy") {
			t.Errorf("stage --health with a missing command: exit %d, stderr %q", r.code, r.stderr)
		}
		if h.loader.Calls() != 0 {
			t.Errorf("%d loads after a missing health command", h.loader.Calls())
		}
	}
	// reboot takes them only for a MANIFEST it stages.
	h := newHarness(t)
	h.writeRoot(map[string]string{"sys/kernel/kexec_loaded": "1\n"})
	r := h.run("--no-daemon", "reboot", "--health", "true")
	if r.code != ExitUsage || !strings.Contains(r.stderr, "for the MANIFEST") || len(h.rebooter.Calls()) != 0 {
		t.Errorf("reboot --health without a manifest: exit %d, stderr %q, reboots %q", r.code, r.stderr, h.rebooter.Calls())
	}
}

// TestStageOnTrial: the trial and crash-loop flags reach the staged
// generation's handoff, and stage says whether it goes on trial.
func TestStageOnTrial(t *testing.T) {
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	h := newHarness(t)
	h.startDaemon()
	if r := h.run("cache", "sync", p1); r.code != ExitOK {
		t.Fatalf("cache sync: %s", r.stderr)
	}
	r := h.run("stage", p2, "--trial-deadline", "10m", "--health", " /bin/true  --quick ", "--max-crashes", "5")
	for _, w := range []string{
		"  crash-loop policy: the 5th crash of one image within 15m0s leaves it (from generation 2 on)\n",
		"  on trial: last-known-good " + label(m1) + "; deadline 10m0s; health /bin/true --quick\n",
	} {
		if r.code != ExitOK || !strings.Contains(r.stdout, w) {
			t.Errorf("stage on trial: exit %d, no %q in stdout:\n%s", r.code, w, r.stdout)
		}
	}
	var rep fastreboot.StageReport
	decode(t, h.run("stage", p2, "--json", "--trial-deadline", "10m", "--health", "/bin/true --quick", "--health-timeout", "30s", "--crash-window", "1h"), &rep)
	ho := h.loader.handoff(t, &rep)
	want := rollback.TrialOptions{Deadline: 10 * time.Minute, Health: []string{"/bin/true", "--quick"}, HealthTimeout: 30 * time.Second}
	if rb := ho.Rollback; rb == nil || rb.Trial == nil || rb.Trial.ID != rollback.ImageID(m2) || rb.Trial.Generation != 2 ||
		!slices.Equal(rb.Trial.Health, want.Health) || rb.Trial.Deadline != want.Deadline || rb.Trial.HealthTimeout != want.HealthTimeout ||
		rb.Policy != (rollback.Policy{MaxCrashes: rollback.DefaultMaxCrashes, Window: time.Hour}) || rb.Good == nil || rb.Good.ID != rollback.ImageID(m1) {
		t.Errorf("the staged handoff's assessment: %+v; want v2 on trial with %+v, K=3 within 1h, v1 good", ho.Rollback, want)
	}

	// The running image is last-known-good: not on trial, whatever the flags.
	r = h.run("stage", p1, "--trial-deadline", "10m")
	if r.code != ExitOK || !strings.Contains(r.stdout, "  not on trial: "+label(m1)+" is last-known-good\n  (its trial flags apply only to an image on trial)\n") {
		t.Errorf("stage of last-known-good: exit %d, stdout:\n%s", r.code, r.stdout)
	}
	r = h.run("stage", p2)
	if r.code != ExitOK || !strings.Contains(r.stdout, "  on trial: last-known-good "+label(m1)+"; deadline none; health none: on trial until `fastreboot bless`\n") {
		t.Errorf("stage without trial flags: exit %d, stdout:\n%s", r.code, r.stdout)
	}
}

// TestRollbackStatus: a generation on trial: status shows the boot
// assessment (text and JSON), crash arm says a crash boots last-known-good,
// bless makes it last-known-good, and rollback stages last-known-good and
// (--reboot) the daemon jumps into it.
func TestRollbackStatus(t *testing.T) {
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	now := time.Now()
	setup := func(t *testing.T) *harness {
		h := newHarness(t)
		h.writeRoot(crashFiles("402653184"))
		h.writeRoot(map[string]string{"sys/kernel/kexec_loaded": "1\n"})
		rb := trialState(m1, m2, rollback.TrialOptions{Deadline: time.Hour}, now)
		writeRollbackHandoff(t, h.root, m2, filepath.Dir(p2), rb, filepath.Dir(p1))
		h.startDaemon()
		return h
	}

	t.Run("status, crash arm, bless", func(t *testing.T) {
		h := setup(t)
		if w := "fastreboot daemon: generation 2 on trial: image " + label(m2) + ", last-known-good " + label(m1) + ", deadline "; !strings.Contains(h.daemonErr.String(), w) ||
			!strings.Contains(h.daemonErr.String(), " (1h0m0s), no health command\n") {
			t.Errorf("the daemon's stderr has no %q ... (1h0m0s), no health command:\n%s", w, h.daemonErr.String())
		}
		var st StatusV1
		decode(t, h.run("status", "--json"), &st)
		rb := st.Rollback
		if rb == nil {
			t.Fatal("status --json has no rollback")
		}
		if !rb.OnTrial || rb.Generation != 2 || rb.Good == nil || rb.Good.ID != rollback.ImageID(m1) || rb.Good.Name != "v1" || rb.Good.By != "cold boot" ||
			rb.Fallback != nil || rb.Trial == nil || rb.Trial.ID != rollback.ImageID(m2) || rb.Trial.Deadline != time.Hour ||
			rb.NextCrash.Action != "rollback" || rb.NextCrash.Image == nil || rb.NextCrash.Image.ID != rollback.ImageID(m1) ||
			rb.Policy != (RollbackPolicyV1{MaxCrashes: 3, Window: 15 * time.Minute}) || len(rb.History) != 2 || rb.History[1].Reason != "update" {
			t.Errorf("status --json rollback: %+v", rb)
		}
		if left := time.Until(rb.Deadline); left < 59*time.Minute || left > time.Hour {
			t.Errorf("deadline %v, want an hour after the daemon started", rb.Deadline)
		}

		out := h.run("status").stdout
		for _, w := range []string{
			"boot assessment: generation 2 on trial: " + label(m2) + " (staged ",
			"  last-known-good: " + label(m1) + " (generation 1, by cold boot, since ",
			"  fallback:        none (a crash loop of last-known-good reboots through the firmware)\n",
			"  deadline:        ",
			"  health command:  none\n",
			"  next crash:      rollback: generation 2 runs " + label(m2) + " on trial: a crash rolls back to last-known-good " + label(m1) + "\n",
			"  crashes:         0 of this image within the last 15m0s (policy: the 3rd within 15m0s leaves it)\n",
			"  history (last 2 of 2):\n",
			" generation 1 cold " + label(m1) + "\n",
			" generation 2 update " + label(m2) + ": on trial; last-known-good " + label(m1) + "\n",
		} {
			if !strings.Contains(out, w) {
				t.Errorf("status has no %q:\n%s", w, out)
			}
		}

		r := h.run("crash", "arm", "--mode", "direct")
		if r.code != ExitOK || !strings.Contains(r.stdout, "a crash boots: "+label(m1)+" (reason rollback): generation 2 runs "+label(m2)+" on trial") {
			t.Errorf("crash arm: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		var arm CrashArmV1
		decode(t, h.run("crash", "arm", "--mode", "direct", "--json"), &arm)
		if d := arm.Decision; d == nil || d.Action != "rollback" || d.Image == nil || d.Image.ID != rollback.ImageID(m1) {
			t.Errorf("crash arm --json decision: %+v", arm.Decision)
		}

		r = h.run("bless")
		for _, w := range []string{
			"fastreboot: blessed generation 2: " + label(m2) + " is last-known-good\n",
			"  fallback: " + label(m1) + " (a crash loop of " + label(m2) + " boots it)\n",
			"  crash path: armed again: a crash now recovers into the blessed image\n",
			"  staged image: none staged through this agent: nothing to restage\n",
		} {
			if r.code != ExitOK || !strings.Contains(r.stdout, w) {
				t.Errorf("bless: exit %d, no %q in stdout %q (stderr %q)", r.code, w, r.stdout, r.stderr)
			}
		}
		decode(t, h.run("status", "--json"), &st)
		if rb := st.Rollback; rb.OnTrial || rb.Good.ID != rollback.ImageID(m2) || rb.Good.By != "bless" || rb.Fallback == nil || rb.Fallback.ID != rollback.ImageID(m1) || rb.NextCrash.Action != "crash" {
			t.Errorf("status --json after bless: %+v", rb)
		}
		var rearm CrashArmV1
		decode(t, h.run("crash", "arm", "--mode", "direct", "--json"), &rearm)
		if d := rearm.Decision; d == nil || d.Action != "crash" || d.Image != nil {
			t.Errorf("crash arm --json decision after bless: %+v", rearm.Decision)
		}
		if out := h.run("status").stdout; !strings.Contains(out, "boot assessment: generation 2 not on trial\n") || !strings.Contains(out, "  fallback:        "+label(m1)+" (generation 1, by cold boot)\n") {
			t.Errorf("status after bless:\n%s", out)
		}
		if r := h.run("bless"); r.code != ExitFailed || !strings.Contains(r.stderr, rollback.ErrNotOnTrial.Error()) {
			t.Errorf("a second bless: exit %d, stderr %q", r.code, r.stderr)
		}
	})

	t.Run("rollback", func(t *testing.T) {
		h := setup(t)
		var rep RollbackV1
		decode(t, h.run("rollback", "--why", "smoke test failed", "--json"), &rep)
		if rep.Good.ID != rollback.ImageID(m1) || rep.Why != "smoke test failed" || rep.Rebooting || rep.Staged == nil ||
			rep.Staged.Reason != "rollback" || rep.Staged.Generation != 3 || !rep.Staged.Loaded || h.loader.Calls() != 1 {
			t.Errorf("rollback --json: %+v, %d loads", rep, h.loader.Calls())
		}
		if out := h.run("status").stdout; !strings.Contains(out, "  rolling back:    smoke test failed\n") {
			t.Errorf("status after rollback:\n%s", out)
		}
		r := h.run("rollback", "--reboot")
		if r.code != ExitOK || !strings.Contains(r.stdout, "fastreboot: rolling back to last-known-good "+label(m1)+": asked by an operator\n") ||
			!strings.Contains(r.stdout, "  staged v1 for generation 3 (rollback), loaded yes with kexec_file_load\n  rebooting into it now\n") {
			t.Errorf("rollback --reboot: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		// The daemon reboots as `fastreboot reboot` does: no systemd
		// here, so sync(2) and reboot(2) at once.
		deadline := time.Now().Add(10 * time.Second)
		for !slices.Equal(h.rebooter.Calls(), []string{"sync", fastreboot.RebootKexec.String()}) {
			if time.Now().After(deadline) {
				t.Fatalf("the daemon did not reboot: %q", h.rebooter.Calls())
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// TestCrashArmFirmware: a crash loop of the only good image: crash arm
// arms no crash image, says so with the decision, and a panic reboots
// through the firmware (kernel.panic set when it was 0).
func TestCrashArmFirmware(t *testing.T) {
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	h.writeRoot(map[string]string{"proc/sys/kernel/panic": "0\n"})
	now := time.Now()
	rb := rollback.Cold(1, m1, now.Add(-time.Hour))
	rb.Crashes = []time.Time{now.Add(-2 * time.Minute), now.Add(-time.Minute)}
	writeRollbackHandoff(t, h.root, m1, filepath.Dir(p1), &rb, filepath.Dir(p1))
	h.startDaemon()

	why := "crash 3 within 15m0s (max crashes 3): a crash loop of " + label(m1) + ", with no other good image: rebooting through the firmware"
	r := h.run("crash", "arm", "--mode", "direct")
	if r.code != ExitOK || !strings.Contains(r.stdout, "crash path not armed: "+why+": no crash image armed; a panic reboots through the firmware (kernel.panic=10)\n") {
		t.Errorf("crash arm: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	var arm CrashArmV1
	decode(t, h.run("crash", "arm", "--mode", "direct", "--json"), &arm)
	if d := arm.Decision; arm.Armed || d == nil || d.Action != "firmware" || d.Why != why || d.LoopEnds.IsZero() {
		t.Errorf("crash arm --json: armed %v, decision %+v", arm.Armed, arm.Decision)
	}
	out := h.run("status").stdout
	if !strings.Contains(out, "  next crash:      firmware: "+why+"\n") ||
		!strings.Contains(out, "  crashes:         2 of this image within the last 15m0s") {
		t.Errorf("status:\n%s", out)
	}
}
