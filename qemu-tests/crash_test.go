package qemutests

import (
	"fmt"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// Reservations for the test image (kernel 8 MB, crash initrd about 21 MB
// with the carried modules): crashhandler.RequiredReservation asks about
// 368 MiB for two-stage (4 CPUs and 12 hot-plug slots: see
// harness.CrashVMMaxCPUs) and 112 MiB for direct.
const (
	reserveTwoStage = "416M"
	reserveDirect   = "128M"
	// frfaultCmd provokes the faults the shell cannot (hung task, init death).
	frfaultCmd = harness.ModulePath + "/qemu-tests/cmd/frfault"
	// scratchDir is where the guest mounts the writable scratch disk.
	scratchDir = "/scratch"
	// pstoreCmdline keeps 1 MiB at the top of the guest's RAM out of every
	// kernel's hands (memmap=SIZE$START survives kexec) for ramoops, and
	// makes a panic dump the log there before the crash kexec: the
	// evidence of a direct-mode crash, whose vmcore x86 cannot read.
	pstoreCmdline = "memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers"
	// earlyConsole prints the kernel's messages from its first line, so
	// that a generation which dies before the serial console is set up
	// (a panic in setup_arch, with panic=-1) still says why. Once in 89
	// crash-kernel -> production jumps, QEMU reset ~5 s after the jump
	// with nothing printed.
	earlyConsole = "earlyprintk=ttyS0,115200"
)

var (
	kexecRE     = regexp.MustCompile(`^fastreboot: rebooting through kexec`)
	crashArmRE  = regexp.MustCompile(`^FRGUEST_CRASH_ARM (\S+) took=(\S+)s`)
	panicLineRE = regexp.MustCompile(`Kernel panic - not syncing`)
	physflatRE  = regexp.MustCompile(`APIC routing to physical flat`)
	broughtUpRE = regexp.MustCompile(`smp: Brought up \d+ nodes?, (\d+) CPUs?`)
)

// crashVM is one guest session of the crash story.
type crashVM struct {
	t       *testing.T
	s       *scenario.Setup
	vm      *harness.VM
	g       *scenario.Guest
	mode    crashhandler.Mode
	reserve int64 // bytes
	gen     int
	coldKB  int64
	// firmwareNext says the generation a crash brings up arms no crash
	// image (a crash loop's firmware decision).
	firmwareNext bool
	// timings, host side
	recoveries []recovery
	// wantELF says the next two-stage crash stage must reload production
	// from its decompressed kernel in the crashed kernel's memory (the
	// crash path was armed by the daemon with the segments method).
	wantELF bool
}

// recovery is one crash seen from the host.
type recovery struct {
	fault string
	// Trigger is when the fault was provoked; CrashUser when the crash
	// kernel's userspace began (two-stage) ; Start when production's
	// userspace began; Ready when it was armed again and ready.
	Trigger, CrashUser, Start, Ready time.Duration
	boot                             harness.Ready
}

func (r recovery) toUser() time.Duration  { return r.Start - r.Trigger }
func (r recovery) toReady() time.Duration { return r.Ready - r.Trigger }

func startCrashVM(t *testing.T, mode crashhandler.Mode, reserve string, allowReboot bool, extra ...harness.Disk) *crashVM {
	t.Helper()
	s := prepare(t, scenario.Options{
		Cmdline:       "crashkernel=" + reserve + " " + pstoreCmdline + " " + earlyConsole,
		ExtraCommands: []string{frfaultCmd, oncpuCmd},
		Modules:       []string{"ramoops"},
	})
	scratch := filepath.Join(t.TempDir(), "scratch.img")
	if err := harness.BuildDisk(scratch, 32<<20, harness.File{Path: "README", Data: []byte("scratch\n")}); err != nil {
		t.Fatal(err)
	}
	o := s.VMOptions()
	o.Name = "crash-" + string(mode)
	o.Disks = append(o.Disks, harness.Disk{Path: scratch})
	o.Disks = append(o.Disks, extra...)
	o.AllowReboot = allowReboot
	o.MaxCPUs = harness.CrashVMMaxCPUs
	vm, boot := harness.StartBootT(t, o, 3*time.Minute)
	c := &crashVM{t: t, s: s, vm: vm, g: &scenario.Guest{VM: vm}, mode: mode, gen: 1}
	fmt.Sscanf(reserve, "%dM", &c.reserve)
	c.reserve <<= 20
	if boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want cpus 0-3, daemon started", boot.Ready)
	}
	c.coldKB = boot.MemTotalKB
	t.Logf("gen 1 (cold, crashkernel=%s): MemTotal %d kB, QEMU start -> userspace %.2fs", reserve, c.coldKB, boot.StartAt.Seconds())
	if err := c.g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	return c
}

// arm arms the crash path of generation 1 with manifest v1.
func (c *crashVM) arm() *cli.CrashArmV1 {
	c.t.Helper()
	var rep cli.CrashArmV1
	cmd := fmt.Sprintf("crash arm --mode %s %s/%s", c.mode, scenario.MountPoint, scenario.ManifestV1)
	if err := c.g.FastrebootJSON(cmd, &rep); err != nil {
		c.t.Fatalf("fastreboot %s: %v", cmd, err)
	}
	if !rep.Armed || rep.State == nil || rep.State.Mode != string(c.mode) {
		c.t.Fatalf("crash arm: %+v, want armed in mode %s", rep, c.mode)
	}
	c.t.Logf("armed %s: image %d bytes, reservation %d MiB (needs %d MiB: %s), took %v",
		c.mode, rep.State.ImageBytes, rep.State.ReservationBytes>>20, rep.State.Sizing.Total>>20, sizingText(rep.State.Sizing), rep.Took)
	return &rep
}

func (c *crashVM) crashStatus() *cli.CrashStatusV1 {
	c.t.Helper()
	var st cli.CrashStatusV1
	if err := c.g.FastrebootJSON("crash status", &st); err != nil {
		c.t.Fatalf("fastreboot crash status: %v", err)
	}
	return &st
}

// crash provokes a fault with provoke (which must not wait for the shell)
// and waits for the production generation the crash path brings up, then
// checks it.
func (c *crashVM) crash(fault, wantReason string, provoke func() error) recovery {
	c.t.Helper()
	return c.crashInto(fault, wantReason, provoke, fastreboot.ReasonCrash)
}

// crashInto is crash for a production generation started for reason
// (crash, or rollback when the crash path was armed with last-known-good).
func (c *crashVM) crashInto(fault, wantReason string, provoke func() error, reason fastreboot.Reason) recovery {
	c.t.Helper()
	r := recovery{fault: fault, Trigger: c.vm.Elapsed()}
	if err := provoke(); err != nil {
		c.t.Fatalf("%s: provoking: %v", fault, err)
	}
	m, err := c.vm.Expect(5*time.Minute, harness.CrashStageRE)
	if err != nil {
		c.t.Fatalf("%s: no crash kernel userspace: %v", fault, err)
	}
	if got := crashhandler.Mode(m.Groups[1]); got != c.mode {
		c.t.Errorf("%s: crash kernel mode %s, want %s", fault, got, c.mode)
	}
	// The panic line, when the console shows it (a hung task panics
	// seconds after it was provoked; an NMI's panic may not print).
	if pt, ok := lastLineBefore(c.vm, panicLineRE, r.Trigger, m.At); ok {
		r.Trigger = pt
	}
	r.CrashUser = m.At
	if c.mode == crashhandler.ModeTwoStage {
		// The crash kernel takes back every CPU the panic stopped in the
		// crashed kernel (crashhandler: twoStageWords) before production,
		// whose RAM is the crashed kernel's memory, boots.
		if n := broughtUpBefore(c.vm, r.Trigger, m.At); n != 4 {
			c.t.Errorf("%s: the crash kernel brought up %d CPUs, want all 4", fault, n)
		}
		// Production's banner and markers prove the crash stage's
		// jump; its "rebooting through kexec" line may never reach the
		// console (the kexec can stop the CPUs while it is still in
		// the tty buffer), so it only dates the jump when it is there.
		j, err := c.vm.WaitReboot(m.At, kexecRE, 5*time.Minute)
		if err != nil {
			c.t.Fatalf("%s: production after the crash stage: %v", fault, err)
		}
		if j.LineLost {
			c.t.Logf("%s: the crash stage's %q line never reached the console; production's kernel did", fault, kexecRE)
		} else {
			c.t.Logf("%s: crash stage's kexec -> production's kernel %.2fs", fault, j.ToKernel().Seconds())
		}
		r.Start, r.Ready, r.boot = j.Boot.StartAt, j.Boot.ReadyAt, j.Boot.Ready
	} else {
		// A kernel booted between the fault and the recover marker. The
		// window opens at the crashed generation's ready marker, not at
		// the fault: a console line is timed by its first byte, and the
		// banner of a crash kernel that starts within milliseconds (the
		// segments method) can share a line with the shell prompt printed
		// before the fault ("$ [    0.000000] Linux version ...").
		since, _ := lastLineBefore(c.vm, harness.ReadyRE, 0, r.Trigger)
		if _, ok := lastLineBefore(c.vm, harness.KernelStartRE, since, m.At); !ok {
			c.t.Errorf("%s: no kernel banner between the fault and %q: no crash kernel booted", fault, m.Text)
		}
		// The direct crash kernel routes interrupts in physical mode
		// (possible_cpus=9 where the VM has no hot-plug slots), so that
		// nothing reaches the CPUs the panic left halted.
		if _, ok := lastLineBefore(c.vm, physflatRE, since, m.At); !ok {
			c.t.Errorf("%s: the direct crash kernel did not switch to physical APIC routing (no %q line)", fault, physflatRE)
		}
		// The direct crash kernel is production: its FRGUEST_START came
		// just before the recover marker.
		if st, ok := lastLineBefore(c.vm, harness.StartRE, r.Trigger, m.At+time.Millisecond); ok {
			r.Start = st
		}
		ready, err := c.vm.Expect(3*time.Minute, harness.ReadyRE)
		if err != nil {
			c.t.Fatalf("%s: direct crash kernel not ready: %v", fault, err)
		}
		if r.boot, err = harness.ParseReady(ready.Text); err != nil {
			c.t.Fatal(err)
		}
		r.Ready = ready.At
		if err := c.vm.WaitPrompt(time.Minute); err != nil {
			c.t.Fatal(err)
		}
	}
	c.gen++
	c.t.Logf("%s (%s): panic -> crash userspace %.2fs, -> production userspace %.2fs, -> armed and ready %.2fs",
		fault, c.mode, (r.CrashUser - r.Trigger).Seconds(), r.toUser().Seconds(), r.toReady().Seconds())
	c.checkProduction(fault, wantReason, reason)
	c.recoveries = append(c.recoveries, r)
	return r
}

// checkProduction asserts the generation now up: all CPUs, all memory,
// generation and reason, armed again, and (after a crash) the evidence.
func (c *crashVM) checkProduction(what, wantReason string, reason fastreboot.Reason) {
	c.t.Helper()
	lines := c.vm.Lines()
	var ready harness.Ready
	for i := len(lines) - 1; i >= 0; i-- {
		if harness.ReadyRE.MatchString(lines[i].Text) {
			ready, _ = harness.ParseReady(lines[i].Text)
			break
		}
	}
	if ready.CPUs != "0-3" || ready.Daemon != "started" {
		c.t.Errorf("%s: gen %d ready %+v, want cpus 0-3 and the daemon", what, c.gen, ready)
	}
	if d := ready.MemTotalKB - c.coldKB; d < -c.reserve>>10 || d > c.reserve>>10 {
		c.t.Errorf("%s: gen %d MemTotal %d kB, cold boot had %d kB: differs by more than the reservation (%d MiB)", what, c.gen, ready.MemTotalKB, c.coldKB, c.reserve>>20)
	}
	for i := len(lines) - 1; i >= 0; i-- {
		if m := crashArmRE.FindStringSubmatch(lines[i].Text); m != nil {
			if m[1] != "ok" {
				c.t.Errorf("%s: start-up re-arm: %s", what, lines[i].Text)
			}
			break
		}
	}
	st := c.crashStatus()
	if st.Generation != c.gen || st.Reason != string(reason) {
		c.t.Errorf("%s: generation %d reason %s, want %d %s", what, st.Generation, st.Reason, c.gen, reason)
	}
	if c.firmwareNext {
		// The boot assessment decided that the next crash goes through
		// the firmware: no crash image is armed (TestRollbackCrash).
		if st.Armed {
			c.t.Errorf("%s: crash path armed, want no crash image (the next crash reboots through the firmware)", what)
		}
	} else if !st.Armed || st.Mode != string(c.mode) {
		c.t.Errorf("%s: crash path armed %v mode %q, want armed again in mode %s", what, st.Armed, st.Mode, c.mode)
	}
	if wantReason != "" {
		ev := st.Last
		if ev == nil {
			c.t.Errorf("%s: no crash evidence in gen %d", what, c.gen)
			return
		}
		if !strings.Contains(ev.Reason+" | "+ev.Cause, wantReason) {
			c.t.Errorf("%s: evidence reason %q cause %q, want %q (problems %v)", what, ev.Reason, ev.Cause, wantReason, ev.Problems)
		}
		if ev.CPU < 0 || ev.Time.IsZero() || len(ev.Log) == 0 {
			c.t.Errorf("%s: evidence incomplete: cpu %d time %v, %d log lines, problems %v", what, ev.CPU, ev.Time, len(ev.Log), ev.Problems)
		}
		c.t.Logf("%s: evidence: %q cause %q CPU %d at %v, %d log lines", what, ev.Reason, ev.Cause, ev.CPU, ev.Time, ev.LogLines)
		if c.mode == crashhandler.ModeTwoStage {
			c.t.Logf("%s: the crash stage reloaded production's %s kernel %s", what, ev.ProductionKernel, ev.ProductionKernelWhy)
			if c.wantELF && ev.ProductionKernel != "elf" {
				c.t.Errorf("%s: the crash stage reloaded production's %q kernel (%s), want its decompressed kernel from the crashed kernel's memory",
					what, ev.ProductionKernel, ev.ProductionKernelWhy)
			}
		}
	}
}

// lastLineBefore returns the time of the last console line matching re
// arriving in [from, to).
func lastLineBefore(vm *harness.VM, re *regexp.Regexp, from, to time.Duration) (time.Duration, bool) {
	var t time.Duration
	ok := false
	for _, at := range vm.Console().LineTimes(re) {
		if at >= from && at < to {
			t, ok = at, true
		}
	}
	return t, ok
}

// broughtUpBefore returns the CPU count of the last "smp: Brought up" line
// in [from, to), or -1.
func broughtUpBefore(vm *harness.VM, from, to time.Duration) int {
	n := -1
	for _, l := range vm.Lines() {
		if l.T >= from && l.T < to {
			if m := broughtUpRE.FindStringSubmatch(l.Text); m != nil {
				n, _ = strconv.Atoi(m[1])
			}
		}
	}
	return n
}

func sysrqCrash(c *crashVM) func() error {
	return func() error { return c.vm.SendLine("echo c > /proc/sysrq-trigger") }
}

func nmiCrash(c *crashVM) func() error {
	return func() error { _, err := c.vm.Monitor("nmi"); return err }
}

// TestCrashTwoStage and TestCrashDirect tell the crash story in one VM per
// mode: generation 1 arms the crash path, then each fault panics the
// production generation, the crash path brings production back (all CPUs,
// all memory, reason crash, the evidence naming the panic, armed again: so
// each fault after the first is a crash of a recovered generation), an
// update reboot in the middle shows that the update path keeps the memory
// map and the arming, and a crash while an update is being staged comes
// back on the armed image.
func TestCrashTwoStage(t *testing.T) { crashStory(t, crashhandler.ModeTwoStage, reserveTwoStage) }

func TestCrashDirect(t *testing.T) { crashStory(t, crashhandler.ModeDirect, reserveDirect) }

func crashStory(t *testing.T, mode crashhandler.Mode, reserve string) {
	c := startCrashVM(t, mode, reserve, false)
	g := c.g

	// Bad input first: nothing may be half-armed after a refused arm.
	_, err := g.Run(fmt.Sprintf("fastreboot crash arm --mode %s %s/%s", mode, scenario.MountPoint, scenario.ManifestCorrupt))
	if err == nil || !strings.Contains(err.Error(), scenario.SiteV3Module) {
		t.Errorf("arming a corrupt image: %v; want an error naming %s", err, scenario.SiteV3Module)
	}
	if mode == crashhandler.ModeDirect {
		// The direct reservation is too small for a two-stage image.
		_, err := g.Run(fmt.Sprintf("fastreboot crash arm --mode two-stage %s/%s", scenario.MountPoint, scenario.ManifestV1))
		if err == nil || !strings.Contains(err.Error(), "crashkernel=") || !strings.Contains(err.Error(), "needs") {
			t.Errorf("arming two-stage in a %s reservation: %v; want a too-small error with the crashkernel= to use", reserve, err)
		}
	}
	if st := c.crashStatus(); st.Armed || st.State != nil {
		t.Errorf("after refused arms: armed %v state %+v, want nothing armed", st.Armed, st.State)
	} else {
		for _, f := range st.Faults {
			if f.Routed {
				t.Errorf("after refused arms: %s routed (%s), want the sysctls untouched", f.Name, f.Value)
			}
		}
	}

	c.arm()
	if st := c.crashStatus(); !st.Armed || st.Mode != string(mode) {
		t.Fatalf("gen 1 crash status: armed %v mode %s", st.Armed, st.Mode)
	}

	// 1. sysrq c.
	c.crash("sysrq", "sysrq triggered crash", sysrqCrash(c))

	// 2. An update reboot of the recovered generation: the next kernel
	// must still get all memory and re-arm. Its downtime is the
	// reference for the crash path.
	if _, err := g.Run("fastreboot stage --current"); err != nil {
		t.Fatal(err)
	}
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	c.gen++
	t.Logf("update reboot (%s run): reboot request -> userspace %.2fs, -> ready %.2fs", mode, r.Downtime().Seconds(), (r.Boot.ReadyAt - r.Requested).Seconds())
	c.checkProduction("update after a crash", "", fastreboot.ReasonUpdate)
	checkUpdateTimeline(t, g, c.gen)
	update := r.Downtime()

	// 3. An unknown NMI from the QEMU monitor, routed by unknown_nmi_panic.
	c.crash("nmi", "NMI", nmiCrash(c))

	// 4. A hung task, routed by hung_task_panic: freeze a file system and
	// write to it.
	if _, err := g.Run("mkdir -p " + scratchDir + " && mount -t ext4 /dev/vdb " + scratchDir); err != nil {
		t.Fatal(err)
	}
	c.crash("hung task", "hung_task", func() error {
		return c.vm.SendLine("echo 5 > /proc/sys/kernel/hung_task_timeout_secs; frfault hang " + scratchDir)
	})

	// 5. A crash while an update is being staged: production comes back
	// on the armed image (v1), not the half-staged one.
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	c.crash("crash while staging", "NMI", func() error {
		// Not inside kexec_file_load itself: it holds kexec_mutex, and
		// a panic that finds it held cannot crash-kexec (the kernel
		// falls back to panic=; see the report). So the storage disk is
		// throttled to 64 KiB/s: the stage spends ~16 s reading the
		// 1 MiB site-v2 piece, and the NMI lands in that read, not at
		// a moment that depends on how fast this host runs the guest.
		if err := throttle(c.vm, 64<<10); err != nil {
			return err
		}
		defer throttle(c.vm, 0)
		if err := c.vm.SendLine("fastreboot stage " + scenario.MountPoint + "/" + scenario.ManifestV2); err != nil {
			return err
		}
		time.Sleep(3 * time.Second)
		_, err := c.vm.Monitor("nmi")
		return err
	})
	if rel := c.recoveries[len(c.recoveries)-1].boot.Release; rel != "v1" {
		t.Errorf("after a crash while staging v2: release %s, want v1 (the armed image)", rel)
	}

	// 6. PID 1 exits: every process but init is killed, init runs out of
	// children and exits.
	c.crash("init exit", "Attempted to kill init", func() error { return c.vm.SendLine("frfault orphan") })

	var sum time.Duration
	for _, r := range c.recoveries {
		sum += r.toUser()
	}
	t.Logf("CLOSING %s: mean panic -> production userspace %.2fs over %d crashes (each: %s); update reboot -> userspace %.2fs in the same run",
		mode, (sum / time.Duration(len(c.recoveries))).Seconds(), len(c.recoveries), recoverySummary(c.recoveries), update.Seconds())
}

func recoverySummary(rs []recovery) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, fmt.Sprintf("%s %.1fs/%.1fs", r.fault, r.toUser().Seconds(), r.toReady().Seconds()))
	}
	return strings.Join(parts, ", ")
}

// TestCrashKernelPanics: a panic inside the two-stage crash kernel itself
// must end in a reboot through the firmware (the crash kernel has panic=N
// and nothing armed), never a hang: the machine comes back cold.
func TestCrashKernelPanics(t *testing.T) {
	c := startCrashVM(t, crashhandler.ModeTwoStage, reserveTwoStage, true)
	var rep cli.CrashArmV1
	// --initrd image: the panic comes from frguest's frguest.crashpanic
	// hook, which runs only when the crash kernel runs production's
	// initramfs (frguest as init); the minimal crash initramfs, two-stage
	// mode's default, runs fastreboot as /init and ignores the word.
	cmd := fmt.Sprintf("crash arm --mode two-stage --initrd image --panic-timeout 3 --append frguest.crashpanic %s/%s", scenario.MountPoint, scenario.ManifestV1)
	if err := c.g.FastrebootJSON(cmd, &rep); err != nil || !rep.Armed {
		t.Fatalf("fastreboot %s: %v", cmd, err)
	}
	if !strings.Contains(rep.State.Cmdline, "panic=3") {
		t.Errorf("crash cmdline %q lacks panic=3", rep.State.Cmdline)
	}
	t0 := c.vm.Elapsed()
	if err := c.vm.SendLine("echo c > /proc/sysrq-trigger"); err != nil {
		t.Fatal(err)
	}
	// The crash kernel is proven by its own command line; frguest's
	// marker before it panics the crash kernel is a best effort (the
	// panic stops the CPUs and a busy host's tty may never send it).
	if m, err := c.vm.Expect(3*time.Minute, harness.CrashKernelRE); err != nil {
		t.Fatalf("no crash kernel: %v", err)
	} else if m.Groups[1] != string(crashhandler.ModeTwoStage) {
		t.Errorf("crash kernel mode %q, want %s", m.Groups[1], crashhandler.ModeTwoStage)
	}
	if _, err := c.vm.Expect(3*time.Minute, regexp.MustCompile(`Kernel panic - not syncing`)); err != nil {
		t.Fatalf("the crash kernel did not panic: %v", err)
	}
	boot, err := c.vm.WaitBoot(4 * time.Minute)
	if err != nil {
		t.Fatalf("no boot after the crash kernel's panic: %v", err)
	}
	var st status
	if err := c.g.FastrebootJSON("status", &st); err != nil {
		t.Fatal(err)
	}
	if st.Generation != 1 || st.Reason != string(fastreboot.ReasonCold) || boot.CPUs != "0-3" {
		t.Errorf("after the crash kernel's panic: generation %d reason %s cpus %s, want a cold boot (1, cold, 0-3)", st.Generation, st.Reason, boot.CPUs)
	}
	if resets(c.vm) == 0 {
		t.Errorf("QEMU saw no RESET: the machine did not reboot through the firmware")
	}
	t.Logf("panic in the crash kernel -> firmware reboot -> cold userspace %.2fs", (boot.StartAt - t0).Seconds())
}

// throttle limits the storage disk (the VM's first drive, disk0) to bps
// bytes per second of reads through QEMU's block throttling; 0 lifts it.
func throttle(vm *harness.VM, bps int64) error {
	_, err := vm.QMP("block_set_io_throttle", map[string]any{
		"device": "disk0", "bps": 0, "bps_rd": bps, "bps_wr": 0, "iops": 0, "iops_rd": 0, "iops_wr": 0,
	})
	if err != nil {
		return fmt.Errorf("throttling disk0 to %d B/s: %w", bps, err)
	}
	return nil
}

// checkUpdateTimeline asserts that the generation an update reboot brought
// up knows when its image was staged (the handoff's timeline): with its
// generation and reason, what proves the jump came from fastreboot's stage.
func checkUpdateTimeline(t *testing.T, g *scenario.Guest, gen int) {
	t.Helper()
	st := guestStatus(t, g)
	if tl := st.Timeline; tl.StageStart.IsZero() || tl.StageEnd.Before(tl.StageStart) {
		t.Errorf("gen %d (update) timeline incomplete: %+v", gen, tl)
	}
}
