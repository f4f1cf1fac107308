package qemutests

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// reserveMinimal is the reservation of TestCrashMinimalInitrd: what `crash
// estimate --initrd minimal` asks for the test image (issue 10 asks for
// 256M or less). The crash stage reloads production with kexec_load of the
// compressed kernel; when it reloaded with kexec_file_load, which holds the
// kernel and initrd it read besides the image, 256M ran out of memory (see
// crashhandler.MinimalHeadroom). FASTREBOOT_CRASHMIN_RESERVE overrides it
// (to measure with room to spare, or to try less).
const reserveMinimal = "240M"

// issue10Goal is the reservation issue 10 asks of this image in two-stage
// mode with the minimal crash initramfs; the test logs how far it is.
const issue10Goal = 256 << 20

var (
	// The crash stage's line of fastreboot running as PID 1 (cli.CrashInit).
	crashStageRE     = regexp.MustCompile(`^fastreboot: crash stage mode=(\S+) uptime=(\S+) memtotal_kb=(\d+) memfree_kb=(\d+) memavailable_kb=(\d+)`)
	crashRecoveredRE = regexp.MustCompile(`^fastreboot: crash stage recovered: .* took=?\s*([0-9.]+)s; min_memfree_kb=(-?\d+) memfree_kb=(\d+)(?: rss_anon_kb=(-?\d+))?`)
	crashFinishedRE  = regexp.MustCompile(`^fastreboot: crash stage (?:recovered|failed)`)
)

// TestCrashMinimalInitrd arms the two-stage crash path with the minimal
// crash initramfs (crash arm --initrd minimal: only the fastreboot binary
// as /init and the handoff piece with the carried modules) in a
// reservation of reserveMinimal, panics with sysrq, and proves that the
// crash kernel ran fastreboot as PID 1 (its crash stage line, with the
// crash kernel's memory), and that production came back: all CPUs,
// generation and reason crash, the evidence naming the panic, re-armed
// with the minimal initramfs.
func TestCrashMinimalInitrd(t *testing.T) {
	reserve := reserveMinimal
	if r := os.Getenv("FASTREBOOT_CRASHMIN_RESERVE"); r != "" {
		reserve = r
	}
	c := startCrashVM(t, crashhandler.ModeTwoStage, reserve, false)
	g := c.g
	manifest := scenario.MountPoint + "/" + scenario.ManifestV1

	// What each initrd choice needs, like kdumpctl estimate.
	need := map[crashpath.Initrd]int64{}
	for _, initrd := range []crashpath.Initrd{crashpath.InitrdImage, crashpath.InitrdMinimal} {
		var est cli.CrashEstimateV1
		cmd := fmt.Sprintf("crash estimate --mode two-stage --initrd %s --json %s", initrd, manifest)
		out, err := g.Run("fastreboot " + cmd)
		if err != nil {
			t.Fatalf("fastreboot %s: %v", cmd, err)
		}
		t.Logf("crash estimate --initrd %s --json: %s", initrd, out)
		if err := g.FastrebootJSON(cmd, &est); err != nil {
			t.Fatalf("fastreboot %s: %v", cmd, err)
		}
		if est.Initrd != string(initrd) {
			t.Errorf("estimate --initrd %s: built with initrd %q", initrd, est.Initrd)
		}
		need[initrd] = est.Sizing.Total
		t.Logf("estimate two-stage --initrd %s: %s (%d MiB: %s), kernel %d bytes, initrd %d bytes",
			initrd, est.Crashkernel, est.Sizing.Total>>20, est.Breakdown, est.KernelBytes, est.InitrdBytes)
	}
	if need[crashpath.InitrdMinimal] > c.reserve {
		t.Errorf("crash estimate --initrd minimal: %d MiB, more than the %s this VM reserves", need[crashpath.InitrdMinimal]>>20, reserve)
	}
	if n := need[crashpath.InitrdMinimal]; n > issue10Goal {
		t.Logf("crash estimate --initrd minimal: %d MiB, %d MiB over issue 10's goal of %d MiB", n>>20, (n-issue10Goal)>>20, issue10Goal>>20)
	}
	if need[crashpath.InitrdMinimal] >= need[crashpath.InitrdImage] {
		t.Errorf("crash estimate: minimal %d MiB, image %d MiB: want minimal smaller", need[crashpath.InitrdMinimal]>>20, need[crashpath.InitrdImage]>>20)
	}

	var armed cli.CrashArmV1
	cmd := "crash arm --mode two-stage --initrd minimal " + manifest
	if err := g.FastrebootJSON(cmd, &armed); err != nil {
		t.Fatalf("fastreboot %s: %v", cmd, err)
	}
	if !armed.Armed || armed.State == nil || armed.Initrd != string(crashpath.InitrdMinimal) {
		t.Fatalf("crash arm --initrd minimal: armed %v initrd %q state %+v", armed.Armed, armed.Initrd, armed.State)
	}
	t.Logf("armed two-stage --initrd minimal: initrd %d bytes (crash init piece %d, handoff %d), reservation %d MiB (needs %d MiB: %s), took %v",
		armed.State.InitrdBytes, armed.Image.PiecesBytes, armed.Image.HandoffBytes, armed.State.ReservationBytes>>20,
		armed.State.Sizing.Total>>20, sizingText(armed.State.Sizing), armed.Took)

	trigger := c.vm.Elapsed()
	if err := sysrqCrash(c)(); err != nil {
		t.Fatal(err)
	}
	stage, err := c.vm.Expect(5*time.Minute, crashStageRE)
	if err != nil {
		t.Fatalf("no crash stage line from fastreboot as PID 1: %v", err)
	}
	if pt, ok := lastLineBefore(c.vm, panicLineRE, trigger, stage.At); ok {
		trigger = pt
	}
	if stage.Groups[1] != string(crashhandler.ModeTwoStage) {
		t.Errorf("crash stage mode %s, want two-stage", stage.Groups[1])
	}
	if n := broughtUpBefore(c.vm, trigger, stage.At); n != 4 {
		t.Errorf("the crash kernel brought up %d CPUs, want all 4", n)
	}
	memTotal, _ := strconv.ParseInt(stage.Groups[3], 10, 64)
	memFree, _ := strconv.ParseInt(stage.Groups[4], 10, 64)
	// The jump is proven by production's kernel and userspace (WaitReboot
	// from the crash stage line); the crash stage's own last lines, printed
	// right before its kexec, may never reach the console, so its memory
	// report is read when it arrived, and a failure line fails the test.
	j, err := c.vm.WaitReboot(stage.At, kexecRE, 5*time.Minute)
	if err != nil {
		t.Fatalf("production after the minimal crash stage: %v", err)
	}
	var rec string
	for _, l := range c.vm.Lines() {
		if l.T >= stage.At && l.T < j.Boot.KernelAt && crashFinishedRE.MatchString(l.Text) {
			rec = l.Text
		}
	}
	switch m := crashRecoveredRE.FindStringSubmatch(rec); {
	case rec == "":
		t.Logf("the crash stage's report line did not reach the console before the jump (its memory figures are lost this run)")
	case m == nil:
		t.Fatalf("crash stage: %s", rec)
	default:
		minFree, _ := strconv.ParseInt(m[2], 10, 64)
		t.Logf("crash kernel (crashkernel=%s): MemTotal %d kB, MemFree %d kB at the crash stage's start, lowest MemFree while recovering %d kB (%.1f MiB used by the recovery), PID 1's RssAnon %s kB at the end, crash stage took %ss",
			reserve, memTotal, memFree, minFree, float64(memFree-minFree)/1024, m[4], m[1])
	}
	if !j.LineLost {
		t.Logf("crash stage's kexec -> production's kernel %.2fs", j.ToKernel().Seconds())
	}
	c.gen++
	t.Logf("sysrq (two-stage, minimal initrd): panic -> crash stage line %.2fs, -> production userspace %.2fs, -> armed and ready %.2fs",
		(stage.At - trigger).Seconds(), (j.Boot.StartAt - trigger).Seconds(), (j.Boot.ReadyAt - trigger).Seconds())
	c.wantELF = true // armed by the daemon, with the default (segments) method
	c.checkProduction("sysrq (minimal initrd)", "sysrq triggered crash", fastreboot.ReasonCrash)

	// Re-armed with the minimal initramfs again (crash arm --auto takes
	// the choice from the handoff): its initrd is the size armed before.
	st := c.crashStatus()
	if st.State == nil {
		t.Fatal("no crash state after the re-arm")
	}
	// Within 1 MiB: the handoff's record of where the decompressed kernel
	// lies (a run per physically contiguous stretch of its pages) grows
	// with how fragmented memory was when it was derived; production's
	// initramfs would add tens of MB.
	if d := st.State.InitrdBytes - armed.State.InitrdBytes; d < -1<<20 || d > 1<<20 {
		t.Errorf("re-armed crash initrd %d bytes, armed with --initrd minimal %d bytes: not the minimal initramfs", st.State.InitrdBytes, armed.State.InitrdBytes)
	}
	t.Logf("CLOSING minimal two-stage: crashkernel=%s, estimate minimal %d MiB / image %d MiB", reserve, need[crashpath.InitrdMinimal]>>20, need[crashpath.InitrdImage]>>20)
}
