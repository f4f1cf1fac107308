package qemutests

import (
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// EnvCrashSoak asks TestCrashSoak for N crash recoveries in one VM, in the
// mode EnvCrashSoakMode names (default two-stage).
const (
	EnvCrashSoak     = "FASTREBOOT_CRASH_SOAK"
	EnvCrashSoakMode = "FASTREBOOT_CRASH_SOAK_MODE"
	// EnvCrashSoakCPU, when set, makes every crash a sysrq on that CPU
	// (the crash and production kernels then start on it, and the boot
	// CPU is among those the panic stopped).
	EnvCrashSoakCPU = "FASTREBOOT_CRASH_SOAK_CPU"
	// EnvCrashSoakWatch, when set, polls every CPU's halt state and
	// instruction pointer through the monitor (see watchCPUs) into
	// <console log>.cpus: how the CPUs the panic stopped were found waking
	// up.
	EnvCrashSoakWatch = "FASTREBOOT_CRASH_SOAK_WATCH"
)

// TestCrashSoak hunts rare failures of the crash -> production jump: it
// crashes one VM over and over (sysrq, then an NMI from the monitor, in
// turn), each time checking the recovered generation like the crash story
// does, and stops at the first failure. The VM may reboot through the
// firmware, so that a guest reset makes QEMU log every CPU's registers
// (QEMU debug log, see harness.DebugLogPath) instead of exiting. It takes
// ~25 s per crash under TCG, so it only runs when asked:
//
//	cd qemu-tests && FASTREBOOT_CRASH_SOAK=200 go test -run TestCrashSoak -timeout 3h ./
func TestCrashSoak(t *testing.T) {
	n, _ := strconv.Atoi(os.Getenv(EnvCrashSoak))
	if n <= 0 {
		t.Skipf("%s=N not set: the crash soak runs only when asked (N crashes, ~25 s each)", EnvCrashSoak)
	}
	mode := crashhandler.ModeTwoStage
	if m := os.Getenv(EnvCrashSoakMode); m != "" {
		mode = crashhandler.Mode(m)
	}
	reserve := reserveTwoStage
	if mode == crashhandler.ModeDirect {
		reserve = reserveDirect
	}
	cpu := -1
	if v := os.Getenv(EnvCrashSoakCPU); v != "" {
		var err error
		if cpu, err = strconv.Atoi(v); err != nil || cpu < 0 || cpu > 3 {
			t.Fatalf("%s=%q: want a CPU number 0-3", EnvCrashSoakCPU, v)
		}
	}
	c := startCrashVM(t, mode, reserve, true)
	if os.Getenv(EnvCrashSoakWatch) != "" {
		stop := make(chan struct{})
		defer close(stop)
		go watchCPUs(c.vm, c.vm.LogPath()+".cpus", stop)
	}
	c.arm()
	start := time.Now()
	for i := 1; i <= n; i++ {
		before := resets(c.vm)
		if cpu >= 0 {
			c.crash(fmt.Sprintf("sysrq on cpu%d #%d", cpu, i), "sysrq triggered crash", func() error {
				return c.vm.SendLine(fmt.Sprintf("oncpu -cpu %d /proc/sysrq-trigger c", cpu))
			})
		} else if i%2 == 1 {
			c.crash(fmt.Sprintf("sysrq #%d", i), "sysrq triggered crash", sysrqCrash(c))
		} else {
			c.crash(fmt.Sprintf("nmi #%d", i), "NMI", nmiCrash(c))
		}
		if r := resets(c.vm); r != before {
			t.Fatalf("crash %d: QEMU saw %d guest resets: the jump went through the firmware (QEMU debug log %s)",
				i, r-before, harness.DebugLogPath(c.vm.LogPath()))
		}
		if t.Failed() {
			t.Fatalf("stopping after crash %d of %d", i, n)
		}
	}
	t.Logf("%d %s crash recoveries in %v (accel %s), none failed", n, mode, time.Since(start).Round(time.Second), c.vm.Options().Accel)
}

func resets(vm *harness.VM) int {
	var n int
	for _, ev := range vm.Events() {
		if ev.Name == "RESET" {
			n++
		}
	}
	return n
}
