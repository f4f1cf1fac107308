package qemutests

import (
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// TestCrashDirectSegments proves the crash path's segments method in
// direct mode: generation 1 arms with kexec_load(KEXEC_ON_CRASH) of the
// kernel decompressed ahead of time (no digest pass, no decompression at
// panic time), a sysrq panic brings production back (all 4 CPUs, all
// memory, the next generation, reason crash, the evidence from pstore,
// armed again), then the recovered generation arms with the file method
// and panics again, so that the same VM shows panic -> next kernel's first
// line and panic -> production userspace for both methods.
func TestCrashDirectSegments(t *testing.T) {
	crashLoadStory(t, crashhandler.ModeDirect, reserveDirect)
}

// TestCrashTwoStageSegments is TestCrashDirectSegments in two-stage mode:
// the segments image carries the ELF core header built in user space and
// gives the crash kernel only the reservation as RAM; the crash kernel
// reads the evidence from /proc/vmcore (its recover line says the vmcore's
// RAM matched the recorded map) and reloads production with the file
// method.
func TestCrashTwoStageSegments(t *testing.T) {
	crashLoadStory(t, crashhandler.ModeTwoStage, reserveTwoStage)
}

// vmcoreCheckRE is the two-stage recover's line once /proc/vmcore opened
// and its RAM matched the recorded memory map: `crash recover`'s (run by
// frguest, crash arm --initrd image) or the minimal crash stage's.
var vmcoreCheckRE = regexp.MustCompile(`crash recover: mode two-stage, evidence read in \S+, memory map check ok|fastreboot: crash stage recovered: evidence from "[^"]*vmcore" in \S+, memory map check ok`)

func crashLoadStory(t *testing.T, mode crashhandler.Mode, reserve string) {
	c := startCrashVM(t, mode, reserve, false)

	var times []string
	for i, load := range []crashhandler.LoadMethod{crashhandler.LoadSegments, crashhandler.LoadFile} {
		if i > 0 {
			if err := c.g.MountStorage(); err != nil {
				t.Fatal(err)
			}
		}
		var rep cli.CrashArmV1
		cmd := fmt.Sprintf("crash arm --mode %s --load %s %s/%s", mode, load, scenario.MountPoint, scenario.ManifestV1)
		if err := c.g.FastrebootJSON(cmd, &rep); err != nil {
			t.Fatalf("fastreboot %s: %v", cmd, err)
		}
		st := rep.State
		if !rep.Armed || st == nil || st.Mode != string(mode) || st.Load != string(load) || st.LoadFallback != "" {
			t.Fatalf("crash arm --load %s: %+v, want armed in %s mode with %s and no fallback", load, rep, mode, load)
		}
		t.Logf("armed %s with %s: image %d bytes, reservation %d MiB (needs %d MiB: %s), took %v",
			mode, load, st.ImageBytes, st.ReservationBytes>>20, st.Sizing.Total>>20, sizingText(st.Sizing), rep.Took)
		if seg := rep.Image.Segments; load == crashhandler.LoadSegments {
			if seg == nil || len(seg.Segments) == 0 {
				t.Fatalf("crash arm --load segments: no placement reported: %+v", rep.Image)
			}
			t.Logf("segments: entry %#x, kernel %#x-%#x (entry %#x), boot_params %#x, %d segments, free tail %+v, decompressed now %v (%v)",
				seg.Entry, seg.KernelStart, seg.KernelEnd, seg.KernelEntry, seg.BootParams, len(seg.Segments), seg.Avoided, seg.Decompressed, seg.DecompressTime)
		}
		if cs := c.crashStatus(); !cs.Armed || cs.State == nil || cs.State.Load != string(load) {
			t.Fatalf("crash status after arming with %s: armed %v state %+v", load, cs.Armed, cs.State)
		}

		// The daemon armed with segments: it holds the decompressed
		// kernel the crash stage maps.
		c.wantELF = load == crashhandler.LoadSegments
		r := c.crash("sysrq "+string(load), "sysrq triggered crash", sysrqCrash(c))
		if _, ok := firstLineAfter(c.vm, vmcoreCheckRE, r.Trigger); mode == crashhandler.ModeTwoStage && !ok {
			t.Errorf("%s: the two-stage crash kernel did not read /proc/vmcore (no %q line)", load, vmcoreCheckRE)
		}
		kernelAt, ok := firstLineAfter(c.vm, harness.KernelStartRE, r.Trigger)
		if !ok || kernelAt > r.Start {
			t.Errorf("%s: no \"Linux version\" line between the panic and production's userspace", load)
		}
		times = append(times, fmt.Sprintf("%s: panic -> next kernel's first line %.2fs, -> production userspace %.2fs, -> armed and ready %.2fs",
			load, (kernelAt-r.Trigger).Seconds(), r.toUser().Seconds(), r.toReady().Seconds()))
	}
	t.Logf("CLOSING %s mode, same VM: %s; %s", mode, times[0], times[1])
}

// firstLineAfter returns the time of the first console line matching re
// at or after from.
func firstLineAfter(vm *harness.VM, re interface{ MatchString(string) bool }, from time.Duration) (time.Duration, bool) {
	// Healed: a kernel message printed into the middle of the line must
	// not hide it (seen on a loaded host: "... in 0.1[ 5.738396] hrtimer:
	// interrupt took 155410490 ns" then "2s, memory map check ok").
	for _, l := range harness.Healed(vm.Lines()) {
		if l.T >= from && re.MatchString(l.Text) {
			return l.T, true
		}
	}
	return 0, false
}
