package qemutests

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// userManifest is where the user's manifest is written in the guest (the
// storage disk is read-only; the rootfs does not outlive a generation).
const userManifest = "/tmp/user-manifest.json"

// TestCrashAsUser sets the crash path up as a new user would, not as the
// rest of the suite does: crashkernel= on the cold boot's command line and
// nothing else of the crash path's (no pstore or ramoops words, no
// crash_kexec_post_notifiers, no earlyprintk), ramoops on disk but not
// loaded (a distribution has every module under /lib/modules), -smp 4
// without maxcpus, and a manifest made in the guest by `fastreboot manifest
// create` from the files on the storage disk, without crashkernel=. Each
// mode arms with that manifest (direct after an update reboot, so that
// the generation that crashes is one fastreboot staged), panics with sysrq
// c, and must come back as a user expects: all CPUs and memory, reason
// crash, re-armed at start-up by `crash arm --auto`, `crash last` showing
// the panic and agreeing with `status`; then a second crash of the
// recovered generation must come back too.
//
// Without maxcpus the kernels route interrupts in flat logical mode; a
// direct-mode failure there may be the rare wake-up of the crashed
// kernel's halted boot CPU the README describes (see
// harness.CrashVMMaxCPUs): look at the console log before blaming the
// crash path, and do not hide it with maxcpus.
func TestCrashAsUser(t *testing.T) {
	for _, tc := range []struct {
		mode    crashhandler.Mode
		reserve string
	}{
		{crashhandler.ModeTwoStage, reserveTwoStage},
		{crashhandler.ModeDirect, reserveDirect},
	} {
		t.Run(string(tc.mode), func(t *testing.T) { crashAsUser(t, tc.mode, tc.reserve) })
	}
}

func crashAsUser(t *testing.T, mode crashhandler.Mode, reserve string) {
	c := startUserVM(t, mode, reserve)
	g := c.g

	if mode == crashhandler.ModeDirect {
		// An update reboot first: the generation that crashes is one
		// fastreboot staged, as on a system that updates with it.
		makeUserManifest(c)
		if _, err := g.Run("fastreboot stage " + userManifest); err != nil {
			t.Fatal(err)
		}
		r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 5*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		c.gen++
		t.Logf("update reboot: downtime %.2fs (line lost: %v)", r.Downtime().Seconds(), r.LineLost)
		if st := guestStatus(t, g); st.Generation != c.gen || st.Reason != string(fastreboot.ReasonUpdate) {
			t.Errorf("after the update reboot: generation %d reason %s, want %d update", st.Generation, st.Reason, c.gen)
		}
		checkUpdateTimeline(t, g, c.gen)
		checkUserCmdline(c, "the update-staged generation")
	}

	makeUserManifest(c)
	refuseUnrearmable(c)
	logEstimate(c)
	armUser(c)

	// The second crash runs even when the first recovery had failures:
	// whether the recovered generation is still protected is the point.
	for _, what := range []string{"first crash", "second crash (of the recovered generation)"} {
		c.crash(what, "sysrq triggered crash", sysrqCrash(c))
		checkUserRecovery(c, what)
	}
}

// startUserVM boots generation 1 as a user's machine: crashkernel= the only
// crash word on the command line, ramoops in the initramfs but not loaded,
// 4 CPUs and no hot-plug slots.
func startUserVM(t *testing.T, mode crashhandler.Mode, reserve string) *crashVM {
	t.Helper()
	s := prepare(t, scenario.Options{
		Cmdline:       "crashkernel=" + reserve,
		ModulesOnDisk: []string{"ramoops"},
	})
	if slices.ContainsFunc(s.Kmods.Modules, func(e harness.LoadEntry) bool { return harness.ModName(e.Path) == "ramoops" }) ||
		!slices.ContainsFunc(s.Kmods.OnDisk, func(e harness.LoadEntry) bool { return harness.ModName(e.Path) == "ramoops" }) {
		t.Fatalf("kmods piece: load list %v, on disk %v; want ramoops on disk only", s.Kmods.Modules, s.Kmods.OnDisk)
	}
	o := s.VMOptions()
	o.Name = "crashuser-" + string(mode)
	o.CPUs = 4 // and MaxCPUs 0: -smp 4, no maxcpus
	vm, boot := harness.StartBootT(t, o, 3*time.Minute)
	c := &crashVM{t: t, s: s, vm: vm, g: &scenario.Guest{VM: vm}, mode: mode, gen: 1}
	fmt.Sscanf(reserve, "%dM", &c.reserve)
	c.reserve <<= 20
	if boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want cpus 0-3, daemon started", boot.Ready)
	}
	c.coldKB = boot.MemTotalKB
	t.Logf("gen 1 (cold, %s): MemTotal %d kB, QEMU start -> userspace %.2fs", s.Cmdline, c.coldKB, boot.StartAt.Seconds())
	// The module is where a distribution keeps it, and nothing loaded it.
	out, err := c.g.Run("ls /lib/modules/$(uname -r)/kernel/fs/pstore/; cat /proc/modules")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "ramoops.ko") {
		t.Errorf("gen 1: no ramoops.ko under /lib/modules: %q", out)
	}
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "ramoops ") {
			t.Errorf("gen 1: ramoops is loaded at boot (%q); the user's machine loads it only if fastreboot does", l)
		}
	}
	return c
}

// makeUserManifest writes userManifest in the guest with `fastreboot
// manifest create` from the storage disk's files: the kernel, the three
// initrd pieces of v1, and the command line the harness needs (the console
// and panic=-1). --cmdline, not --append: --append would copy the running
// command line, crashkernel= included, and the point is a manifest without
// it.
func makeUserManifest(c *crashVM) {
	c.t.Helper()
	createManifest(c, userManifest, "user", harness.DefaultCmdline)
}

// createManifest runs `fastreboot manifest create` in the guest for the v1
// image from the storage disk, with the given command line, to path.
func createManifest(c *crashVM, path, name, cmdline string) {
	c.t.Helper()
	g := c.g
	if _, err := g.Run("grep -q ' " + scenario.MountPoint + " ' /proc/mounts || mount -t ext4 -o ro /dev/vda " + scenario.MountPoint); err != nil {
		c.t.Fatal(err)
	}
	m := scenario.MountPoint + "/"
	cmd := fmt.Sprintf("fastreboot manifest create --name %s --kernel %s%s --initrd %s%s --initrd %s%s --initrd %s%s --cmdline %q -o %s",
		name, m, scenario.KernelFile, m, scenario.BaseFile, m, scenario.KmodsFile, m, scenario.SiteV1File, cmdline, path)
	if _, err := g.Run(cmd); err != nil {
		c.t.Fatal(err)
	}
	out, err := g.Run("cat " + path)
	if err != nil {
		c.t.Fatal(err)
	}
	var man bootimage.Manifest
	if err := scenario.DecodeJSON(out, &man); err != nil {
		c.t.Fatal(err)
	}
	if man.Cmdline != cmdline || len(man.Modules) != 4 {
		c.t.Fatalf("manifest %s: cmdline %q, %d modules; want %q and the kernel with 3 initrd pieces", path, man.Cmdline, len(man.Modules), cmdline)
	}
}

// refuseUnrearmable: a manifest whose own crashkernel= is too small for its
// crash image is honoured, so the generation booted after a crash could not
// re-arm: `crash arm` refuses it, says what to add and how to arm anyway,
// and arms nothing.
func refuseUnrearmable(c *crashVM) {
	c.t.Helper()
	const small = "/tmp/small-crashkernel.json"
	createManifest(c, small, "small", harness.DefaultCmdline+" crashkernel=16M")
	_, err := c.g.Run(fmt.Sprintf("fastreboot crash arm --mode %s %s", c.mode, small))
	if err == nil || !strings.Contains(err.Error(), "could not re-arm") || !strings.Contains(err.Error(), "--allow-no-rearm") {
		c.t.Errorf("arming a manifest with its own crashkernel=16M: %v; want a refusal saying the next generation could not re-arm", err)
	}
	if st := c.crashStatus(); st.Armed || st.State != nil {
		c.t.Errorf("after the refused arm: armed %v state %+v, want nothing armed", st.Armed, st.State)
	}
}

// logEstimate logs what `crash estimate` says the user's image needs, and
// checks that it fits the reservation the test booted with.
func logEstimate(c *crashVM) {
	c.t.Helper()
	var est cli.CrashEstimateV1
	cmd := fmt.Sprintf("crash estimate --mode %s %s", c.mode, userManifest)
	if err := c.g.FastrebootJSON(cmd, &est); err != nil {
		c.t.Fatalf("fastreboot %s: %v", cmd, err)
	}
	c.t.Logf("crash estimate (%s, %s): %s (%s), reservation %d MiB, fits %v", c.mode, est.Sizing.Method, est.Crashkernel, est.Breakdown, est.ReservationBytes>>20, est.Fits)
	if !est.Fits || est.ReservationBytes != c.reserve {
		c.t.Errorf("crash estimate: fits %v, reservation %d; want it to fit the %d MiB reservation (problems %q)", est.Fits, est.ReservationBytes, c.reserve>>20, est.Problems)
	}
}

// armUser arms the crash path in c.mode with the user's manifest.
func armUser(c *crashVM) {
	c.t.Helper()
	var rep cli.CrashArmV1
	cmd := fmt.Sprintf("crash arm --mode %s %s", c.mode, userManifest)
	if err := c.g.FastrebootJSON(cmd, &rep); err != nil {
		c.t.Fatalf("gen %d: fastreboot %s: %v", c.gen, cmd, err)
	}
	if !rep.Armed || rep.State == nil || rep.State.Mode != string(c.mode) {
		c.t.Fatalf("gen %d: crash arm: %+v, want armed in mode %s", c.gen, rep, c.mode)
	}
	c.t.Logf("gen %d armed %s: reservation %d MiB (needs %d MiB), crash cmdline %q", c.gen, c.mode, rep.State.ReservationBytes>>20, rep.State.Sizing.Total>>20, rep.State.Cmdline)
}

// checkUserCmdline asserts that the running generation has a crashkernel=
// reservation: without it `crash arm --auto` cannot protect it.
func checkUserCmdline(c *crashVM, what string) {
	c.t.Helper()
	out, err := c.g.Run("cat /proc/cmdline")
	if err != nil {
		c.t.Fatal(err)
	}
	if !strings.Contains(out, "crashkernel=") {
		c.t.Errorf("%s (gen %d): no crashkernel= on the command line, so it cannot be armed again: %q", what, c.gen, strings.TrimSpace(out))
	}
}

// checkUserRecovery asserts what c.crash does not: the reservation came
// back, `status` says crash, and `crash last` shows the panic and agrees
// with `crash status`.
func checkUserRecovery(c *crashVM, what string) {
	c.t.Helper()
	checkUserCmdline(c, what)
	if st := guestStatus(c.t, c.g); st.Generation != c.gen || st.Reason != string(fastreboot.ReasonCrash) {
		c.t.Errorf("%s: status generation %d reason %s, want %d crash", what, st.Generation, st.Reason, c.gen)
	}
	cs := c.crashStatus()
	if !cs.Armed {
		c.t.Errorf("%s: crash status not armed in gen %d: the start-up `crash arm --auto` did not protect it", what, c.gen)
	}
	var last cli.CrashLastV1
	if err := c.g.FastrebootJSON("crash last", &last); err != nil {
		c.t.Errorf("%s: crash last: %v (status says reason %s)", what, err, cs.Reason)
		return
	}
	if !strings.Contains(last.Reason, "sysrq triggered crash") {
		c.t.Errorf("%s: crash last reason %q cause %q, want the sysrq panic", what, last.Reason, last.Cause)
	}
	if cs.Last == nil || cs.Last.Reason != last.Reason || !cs.Last.Time.Equal(last.Time) {
		c.t.Errorf("%s: crash last (%q at %v) and crash status (%+v) disagree", what, last.Reason, last.Time, cs.Last)
	}
}
