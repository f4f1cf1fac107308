package qemutests

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// rbState reads the boot assessment of the running generation.
func (c *crashVM) rbState(what string) *cli.StatusV1 {
	c.t.Helper()
	var st cli.StatusV1
	if err := c.g.FastrebootJSON("status", &st); err != nil {
		c.t.Fatalf("%s: fastreboot status: %v", what, err)
	}
	if st.Rollback == nil {
		c.t.Fatalf("%s: status has no boot assessment", what)
	}
	return &st
}

// lastEvent is the newest history event.
func lastEvent(s *cli.StatusV1) string {
	h := s.Rollback.History
	if len(h) == 0 {
		return ""
	}
	e := h[len(h)-1]
	return fmt.Sprintf("gen %d %s %s: %s", e.Generation, e.Reason, e.Image, e.Note)
}

// expectGood checks which image is last-known-good, whether the running
// generation is on trial, and what a crash would boot.
func (c *crashVM) expectGood(what string, st *cli.StatusV1, good string, onTrial bool, nextCrash string) {
	c.t.Helper()
	r := st.Rollback
	if r.Good == nil || r.Good.Name != good {
		c.t.Errorf("%s: last-known-good %+v, want image %s", what, r.Good, good)
	}
	if r.OnTrial != onTrial {
		c.t.Errorf("%s: on trial %v, want %v (trial %+v)", what, r.OnTrial, onTrial, r.Trial)
	}
	if r.NextCrash.Action != nextCrash {
		c.t.Errorf("%s: a crash would %s (%s), want %s", what, r.NextCrash.Action, r.NextCrash.Why, nextCrash)
	}
	c.t.Logf("%s: gen %d (%s), good %s, on trial %v, next crash %s: %s; last event %s",
		what, st.Generation, st.Reason, good, r.OnTrial, r.NextCrash.Action, r.NextCrash.Why, lastEvent(st))
}

// release is the site release of the generation that printed the newest
// FRGUEST_READY line.
func (c *crashVM) release() string {
	lines := c.vm.Lines()
	for i := len(lines) - 1; i >= 0; i-- {
		if harness.ReadyRE.MatchString(lines[i].Text) {
			r, _ := harness.ParseReady(lines[i].Text)
			return r.Release
		}
	}
	return ""
}

// stageReboot stages args and reboots into it; it returns the update's
// downtime.
func (c *crashVM) stageReboot(what, args string) time.Duration {
	c.t.Helper()
	// Every generation mounts the storage disk again.
	if _, err := c.g.Run("grep -q ' " + scenario.MountPoint + " ' /proc/mounts || mount -t ext4 -o ro /dev/vda " + scenario.MountPoint); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	if _, err := c.g.Run("fastreboot stage " + args); err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	r, err := c.g.RebootWith("fastreboot reboot", scenario.RebootingRE, 5*time.Minute)
	if err != nil {
		c.t.Fatalf("%s: %v", what, err)
	}
	c.gen++
	return r.Downtime()
}

// waitRollback waits for the reboot the trial generation's daemon starts
// on its own (a missed deadline, a failed health command): the next
// generation's userspace, with a kernel banner since from (the trial
// generation's ready marker: the jump may have begun while the test was
// still reading its status). It returns how long after from the next
// userspace started.
func (c *crashVM) waitRollback(what string, from time.Duration, timeout time.Duration) time.Duration {
	c.t.Helper()
	boot, err := c.vm.WaitBoot(timeout)
	if err != nil {
		c.t.Fatalf("%s: no rollback reboot: %v", what, err)
	}
	if _, ok := lastLineBefore(c.vm, harness.KernelStartRE, from, boot.StartAt); !ok {
		c.t.Errorf("%s: userspace started again with no kernel banner since %.2fs: no kexec", what, from.Seconds())
	}
	c.gen++
	return boot.StartAt - from
}

// readyAt is when the newest FRGUEST_READY line arrived.
func (c *crashVM) readyAt() time.Duration {
	t, _ := lastLineBefore(c.vm, harness.ReadyRE, 0, c.vm.Elapsed()+time.Second)
	return t
}

// v2Manifest writes, in the guest, a manifest of the v2 image (the site v2
// piece) with extra command line words after the harness's console and
// panic words (fastreboot adds crashkernel= and the pstore region as for
// any manifest; the VM's own command line has a memmap=...$... the guest
// shell would expand).
func (c *crashVM) v2Manifest(path, name, extra string) {
	c.t.Helper()
	m := scenario.MountPoint + "/"
	cmd := fmt.Sprintf("fastreboot manifest create --name %s --kernel %s%s --initrd %s%s --initrd %s%s --initrd %s%s --cmdline %q -o %s",
		name, m, scenario.KernelFile, m, scenario.BaseFile, m, scenario.KmodsFile, m, scenario.SiteV2File,
		strings.TrimSpace(harness.DefaultCmdline+" "+extra), path)
	if _, err := c.g.Run(cmd); err != nil {
		c.t.Fatal(err)
	}
}

// TestRollbackTrial: an update that boots but is never blessed goes back to
// last-known-good when its trial deadline passes, and one whose health
// command fails (here: does not finish within its timeout) goes back at
// once; both with reason rollback and the failure in the history, from the
// cache alone (the daemon stages last-known-good and kexecs into it).
func TestRollbackTrial(t *testing.T) {
	c := startCrashVM(t, crashhandler.ModeTwoStage, reserveTwoStage, false)
	g := c.g
	v1, v2 := scenario.MountPoint+"/"+scenario.ManifestV1, scenario.MountPoint+"/"+scenario.ManifestV2
	if _, err := g.Run("fastreboot cache sync " + v1); err != nil {
		t.Fatal(err)
	}
	c.expectGood("gen 1 (cold)", c.rbState("gen 1"), c.s.V1.Name, false, "crash")
	c.arm()

	// Bad input: nothing on trial to bless, a deadline out of range.
	if _, err := g.Run("fastreboot bless"); err == nil || !strings.Contains(err.Error(), "nothing on trial") {
		t.Errorf("bless with nothing on trial: %v; want an error saying nothing is on trial", err)
	}
	if _, err := g.Run("fastreboot stage --trial-deadline 1ms " + v2); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("stage --trial-deadline 1ms: %v; want an error naming the deadline", err)
	}
	if _, err := g.Run("fastreboot stage --max-crashes 0 " + v2); err == nil || !strings.Contains(err.Error(), "crashes") {
		t.Errorf("stage --max-crashes 0: %v; want an error naming the max crashes", err)
	}
	c.expectGood("gen 1 after the refused requests", c.rbState("gen 1"), c.s.V1.Name, false, "crash")

	// 1. Never blessed: back on v1 when the deadline passes.
	const deadline = 60 * time.Second
	down := c.stageReboot("update to v2 on trial", fmt.Sprintf("--trial-deadline %s %s", deadline, v2))
	st := c.rbState("gen 2 (v2 on trial)")
	if st.Generation != c.gen || c.release() != "v2" {
		t.Fatalf("gen %d release %s, want gen %d v2", st.Generation, c.release(), c.gen)
	}
	c.expectGood("gen 2 (v2 on trial)", st, c.s.V1.Name, true, "rollback")
	if st.Rollback.Deadline.IsZero() {
		t.Errorf("gen 2: on trial with --trial-deadline %s, but status shows no deadline", deadline)
	}
	// The crash path was re-armed at start-up with last-known-good.
	if cs := c.crashStatus(); !cs.Armed {
		t.Errorf("gen 2: crash path not armed while on trial")
	}
	startedAt := c.readyAt()
	took := c.waitRollback("deadline", startedAt, 3*time.Minute)
	st = c.rbState("after the deadline")
	if st.Generation != c.gen || st.Reason != string(fastreboot.ReasonRollback) || c.release() != "v1" {
		t.Errorf("after the deadline: gen %d reason %s release %s, want gen %d rollback v1", st.Generation, st.Reason, c.release(), c.gen)
	}
	c.expectGood("after the deadline", st, c.s.V1.Name, false, "crash")
	if e := lastEvent(st); !strings.Contains(e, "rollback") || !strings.Contains(e, "deadline") {
		t.Errorf("after the deadline: last event %q, want the rollback and the deadline", e)
	}
	t.Logf("never blessed: update downtime %.2fs; from v2's ready marker to v1's userspace %.2fs (deadline %s from the daemon's start)", down.Seconds(), took.Seconds(), deadline)

	// 2. A health command that does not finish in time: back on v1 at
	// its timeout.
	down = c.stageReboot("update to v2 with a health command", "--health \"sleep 600\" --health-timeout 45s "+v2)
	st = c.rbState("v2 with a health command")
	c.expectGood("v2 with a health command", st, c.s.V1.Name, true, "rollback")
	// Running, or (on a loaded host, where the test reads the status
	// late) already failed by its timeout.
	if h := st.Rollback.Health; h == nil || (h.State != "running" && !(h.State == "failed" && strings.Contains(h.Error, "did not finish"))) {
		t.Errorf("v2 with a health command: health %+v, want running or failed by its timeout", h)
	}
	startedAt = c.readyAt()
	took = c.waitRollback("health command", startedAt, 3*time.Minute)
	st = c.rbState("after the failed health command")
	if st.Reason != string(fastreboot.ReasonRollback) || c.release() != "v1" {
		t.Errorf("after the failed health command: reason %s release %s, want rollback v1", st.Reason, c.release())
	}
	c.expectGood("after the failed health command", st, c.s.V1.Name, false, "crash")
	if e := lastEvent(st); !strings.Contains(e, "health command") {
		t.Errorf("after the failed health command: last event %q, want the health command named", e)
	}
	t.Logf("failed health command: update downtime %.2fs; from v2's ready marker to v1's userspace %.2fs (timeout 45s from the daemon's start)", down.Seconds(), took.Seconds())

	// 3. A health command that passes blesses v2.
	c.stageReboot("update to v2 with a passing health command", "--health true "+v2)
	deadlineAt := time.Now().Add(time.Minute)
	for {
		st = c.rbState("v2 with a passing health command")
		if !st.Rollback.OnTrial || time.Now().After(deadlineAt) {
			break
		}
		time.Sleep(2 * time.Second)
	}
	c.expectGood("v2 blessed by its health command", st, c.s.V2.Name, false, "crash")
	if st.Rollback.Fallback == nil || st.Rollback.Fallback.Name != c.s.V1.Name {
		t.Errorf("v2 blessed: fallback %+v, want v1", st.Rollback.Fallback)
	}
}

var faultRE = regexp.MustCompile(`^FRGUEST_FAULT orphan pid=`)

// TestRollbackCrash: a bad update whose init dies at start comes back on
// last-known-good through the crash path (armed with last-known-good while
// the update is on trial), reason rollback, the evidence naming the panic;
// a blessed update becomes last-known-good and a crash recovers into it;
// a crash loop of it (2 crashes within the hour) goes back to the
// fallback, and a crash loop of that reboots through the firmware.
func TestRollbackCrash(t *testing.T) {
	// The disk frguest mounts on /var/lib/fastreboot (as a distribution's
	// root file system holds it): the daemon's boot record outlives the
	// firmware reboot there.
	persist := filepath.Join(t.TempDir(), "persist.img")
	if err := harness.BuildLabeledDisk(persist, "frpersist", 16<<20); err != nil {
		t.Fatal(err)
	}
	c := startCrashVM(t, crashhandler.ModeTwoStage, reserveTwoStage, true, harness.Disk{Path: persist})
	g := c.g
	v1, v2 := scenario.MountPoint+"/"+scenario.ManifestV1, scenario.MountPoint+"/"+scenario.ManifestV2
	if _, err := g.Run("fastreboot cache sync " + v1); err != nil {
		t.Fatal(err)
	}
	c.arm()

	// 1. A bad update: v2's modules, and its init dies at start.
	const bad = "/tmp/bad-v2.json"
	c.v2Manifest(bad, "bad-v2", "frguest.orphan")
	// Its init kills the shell before any prompt: wait for frguest's
	// fault line, not for a prompt.
	if _, err := g.Run("fastreboot stage " + bad); err != nil {
		t.Fatal(err)
	}
	if err := c.vm.SendLine("fastreboot reboot"); err != nil {
		t.Fatal(err)
	}
	c.gen++
	if _, err := c.vm.Expect(5*time.Minute, faultRE); err != nil {
		t.Fatalf("the bad image's init fault: %v", err)
	}
	c.crashInto("bad update: init dies at start", "Attempted to kill init", func() error { return nil }, fastreboot.ReasonRollback)
	st := c.rbState("after the bad update")
	if c.release() != "v1" {
		t.Errorf("after the bad update: release %s, want v1", c.release())
	}
	c.expectGood("after the bad update", st, c.s.V1.Name, false, "crash")
	if e := lastEvent(st); !strings.Contains(e, "rollback") || !strings.Contains(e, "bad-v2") || !strings.Contains(e, "kill init") {
		t.Errorf("after the bad update: last event %q, want the rollback, the bad image and the panic", e)
	}

	// 2. A good update, blessed: a crash recovers into it.
	c.stageReboot("update to v2", "--max-crashes 2 --crash-window 1h "+v2)
	c.expectGood("v2 on trial", c.rbState("v2 on trial"), c.s.V1.Name, true, "rollback")
	var bl cli.BlessV1
	if err := g.FastrebootJSON("bless", &bl); err != nil {
		t.Fatalf("bless: %v", err)
	}
	if bl.Generation != c.gen || bl.Good.Name != c.s.V2.Name || bl.Fallback == nil || bl.Fallback.Name != c.s.V1.Name || !bl.Rearmed {
		t.Errorf("bless: %+v, want gen %d good v2 fallback v1 re-armed", bl, c.gen)
	}
	c.expectGood("v2 blessed", c.rbState("v2 blessed"), c.s.V2.Name, false, "crash")
	c.crash("crash of the blessed v2", "sysrq triggered crash", sysrqCrash(c))
	if c.release() != "v2" {
		t.Errorf("after the crash of the blessed v2: release %s, want v2", c.release())
	}

	// 3. Its second crash within the hour is a crash loop: back on v1.
	c.expectGood("v2 after a crash", c.rbState("v2 after a crash"), c.s.V2.Name, false, "rollback")
	c.crashInto("second crash of v2 (a crash loop)", "sysrq triggered crash", sysrqCrash(c), fastreboot.ReasonRollback)
	if c.release() != "v1" {
		t.Errorf("after v2's crash loop: release %s, want v1", c.release())
	}
	st = c.rbState("after v2's crash loop")
	c.expectGood("after v2's crash loop", st, c.s.V1.Name, false, "crash")
	if st.Rollback.Fallback != nil {
		t.Errorf("after v2's crash loop: fallback %+v, want none", st.Rollback.Fallback)
	}

	// 4. v1 crash-loops too: no crash image is armed, and the panic
	// reboots through the firmware.
	c.firmwareNext = true
	c.crash("crash of v1", "sysrq triggered crash", sysrqCrash(c))
	st = c.rbState("v1 after a crash")
	c.expectGood("v1 after a crash", st, c.s.V1.Name, false, "firmware")
	// No crash image, but an oops still panics (into the firmware).
	if out, err := g.Run("cat /proc/sys/kernel/panic_on_oops /sys/kernel/kexec_crash_loaded"); err != nil || strings.Join(strings.Fields(out), " ") != "1 0" {
		t.Errorf("v1 set for the firmware: panic_on_oops, kexec_crash_loaded = %q (%v), want 1 and 0", out, err)
	}
	trigger := c.vm.Elapsed()
	if err := c.vm.SendLine("echo c > /proc/sysrq-trigger"); err != nil {
		t.Fatal(err)
	}
	boot, err := c.vm.WaitBoot(5 * time.Minute)
	if err != nil {
		t.Fatalf("after v1's crash loop: no boot: %v", err)
	}
	if _, ok := lastLineBefore(c.vm, harness.CrashStageRE, trigger, boot.StartAt); ok {
		t.Errorf("after v1's crash loop: a crash kernel ran; want the firmware")
	}
	reset := false
	for _, e := range c.vm.Events() {
		if e.Name == "RESET" && e.T >= trigger {
			reset = true
		}
	}
	if !reset {
		t.Errorf("after v1's crash loop: QEMU reported no reset")
	}
	st = c.rbState("cold boot after the firmware reset")
	if st.Generation != 1 || st.Reason != string(fastreboot.ReasonCold) {
		t.Errorf("after the firmware reset: gen %d reason %s, want a cold boot", st.Generation, st.Reason)
	}
	// The cold boot shows the evidence chain: the previous boot's record
	// (kept on the persist disk) and its last panic (kept by pstore).
	checkPreviousBoot(t, st, c.s.V1.Name)
	if out, err := g.Run("fastreboot status"); err != nil || !strings.Contains(out, "previous boot:") || !strings.Contains(out, "rebooted through the firmware") {
		t.Errorf("status after the firmware reset (%v) has no previous boot section:\n%s", err, out)
	}
	t.Logf("v1's crash loop: panic -> firmware -> userspace %.2fs", (boot.StartAt - trigger).Seconds())
}

// checkPreviousBoot asserts what the cold boot after v1's crash loop knows
// of the boot before it: its crash path was armed for the firmware, its
// last panic is the sysrq crash, and its history holds the chain (the bad
// update rolled back, v2's crash loop back on v1, v1's crash).
func checkPreviousBoot(t *testing.T, st *cli.StatusV1, good string) {
	t.Helper()
	r := st.Rollback
	pb := r.PreviousBoot
	if pb == nil {
		t.Fatalf("after the firmware reset: no previous boot in the assessment: %+v", r)
	}
	if pb.Armed == nil || pb.Armed.Action != "firmware" || !strings.Contains(pb.Panic, "sysrq triggered crash") ||
		!strings.Contains(pb.Ended, "rebooted through the firmware") {
		t.Errorf("previous boot: armed %+v, panic %q, ended %q; want the firmware decision and the sysrq panic", pb.Armed, pb.Panic, pb.Ended)
	}
	var chain []string
	for _, e := range pb.History {
		chain = append(chain, fmt.Sprintf("gen %d %s %s", e.Generation, e.Reason, e.Image))
	}
	joined := strings.Join(chain, "; ")
	for _, want := range []string{"rollback " + good, "crash " + good} {
		if !strings.Contains(joined, want) {
			t.Errorf("previous boot's history %q has no %q", joined, want)
		}
	}
	if len(r.History) == 0 || r.History[0].Reason != "firmware" || !strings.Contains(r.History[0].Note, "sysrq triggered crash") {
		t.Errorf("cold boot's history %+v, want a firmware start naming the panic", r.History)
	}
	t.Logf("after the firmware reset: %s; chain: %s", pb.Ended, joined)
}
