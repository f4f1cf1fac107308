package qemutests

import (
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// jmpSelf is x86's two-byte jump to itself (jmp . = eb fe): a loop that
// never leaves the function and never calls into the scheduler.
var jmpSelf = []byte{0xeb, 0xfe}

// TestCrashSoftLockup provokes a soft lockup in kernel context without a
// module: QEMU's gdbstub writes jmp . over the entry of the guest kernel's
// sync(2) (see TestCrashOops), and `sync` then spins in kernel mode with
// interrupts on. Debian's kernel is PREEMPT_DYNAMIC booting in voluntary
// mode, so the spinning task is never preempted: the watchdog's stopper
// thread cannot run on that CPU, the watchdog hrtimer reports a soft lockup
// after 2*watchdog_thresh seconds, and kernel.softlockup_panic (routed by
// the arming) panics into the crash path. Direct mode only: the fault path
// is the same in both modes, and TestCrashOops covers two-stage's
// handling of a trap in kernel context.
func TestCrashSoftLockup(t *testing.T) {
	c := startCrashVM(t, crashhandler.ModeDirect, reserveDirect, false)

	// In preempt=full the spin would be preempted at the next timer tick
	// and the stopper would run: no lockup, and the wait below would run
	// into its timeout.
	out, err := c.g.Run("grep -q debugfs /proc/mounts || mount -t debugfs debugfs /sys/kernel/debug; cat /sys/kernel/debug/sched/preempt")
	if err != nil {
		t.Fatalf("reading the preemption mode: %v", err)
	}
	if mode := strings.TrimSpace(out); !strings.Contains(mode, "(none)") && !strings.Contains(mode, "(voluntary)") {
		t.Fatalf("preemption mode %q: a spinning kernel task is only a soft lockup with preempt=none or voluntary", mode)
	} else {
		t.Logf("preemption mode: %s", mode)
	}

	c.arm()
	routed := false
	for _, f := range c.crashStatus().Faults {
		if f.Name == crashhandler.SysctlSoftlockupPanic {
			routed = f.Routed
		}
	}
	if !routed {
		t.Fatalf("armed, but %s is not routed", crashhandler.SysctlSoftlockupPanic)
	}
	// A soft lockup is reported after 2*watchdog_thresh seconds (the
	// default 10 would make it 20s).
	if _, err := c.g.Run("echo 1 > /proc/sys/kernel/watchdog_thresh"); err != nil {
		t.Fatalf("lowering kernel.watchdog_thresh: %v", err)
	}

	addr := kernelSymbol(t, c, oopsSymbol)
	sock := filepath.Join(t.TempDir(), "gdb.sock")
	if out, err := c.vm.Monitor("gdbserver unix:" + sock + ",server=on,wait=off"); err != nil {
		t.Fatalf("starting QEMU's gdbstub: %v (%s)", err, out)
	}
	c.crash("soft lockup", "soft lockup", func() error {
		if err := gdbPoke(sock, addr, jmpSelf); err != nil {
			return fmt.Errorf("writing jmp . at %s %#x: %w", oopsSymbol, addr, err)
		}
		return c.vm.SendLine("sync")
	})
	ev := c.crashStatus().Last
	if ev == nil {
		return // checkProduction reported it
	}
	// The lockup line names the spinning task, and the register dump
	// shows it stuck in kernel mode (code segment 0x10) at the entry of
	// sync(2), where the jmp . is.
	var lockup, rip string
	for _, l := range ev.Log {
		if strings.Contains(l, "BUG: soft lockup") {
			lockup = l
		}
		// The kernel may name the address by an alias of the symbol
		// (__do_sys_sync+0x0 for __x64_sys_sync).
		if strings.Contains(l, "RIP: 0010:") && strings.Contains(l, "sys_sync+0x0/") {
			rip = l
		}
	}
	if !strings.Contains(ev.Cause, "BUG: soft lockup") || !strings.Contains(ev.Cause, "[sync:") {
		t.Errorf("crash evidence cause = %q, want the watchdog's soft lockup line naming sync", ev.Cause)
	}
	if lockup == "" || rip == "" {
		t.Errorf("crash evidence log does not show the soft lockup in %s in kernel mode (lockup %q, rip %q); reason %q cause %q, log tail %q", oopsSymbol, lockup, rip, ev.Reason, ev.Cause, ev.Log)
	} else {
		t.Logf("soft lockup in the evidence: %s, %s", strings.TrimSpace(lockup), strings.TrimSpace(rip))
	}
}
