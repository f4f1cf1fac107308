package cli

import (
	"errors"
	"io"
	"time"

	"golang.org/x/sys/unix"
)

// drainPatience bounds how long drain retries a tcdrain a signal cut short.
const drainPatience = 5 * time.Second

// drain waits until what was written to w has left the terminal, when w is
// one (tcdrain: ioctl TCSBRK with a non-zero argument). The last lines a
// generation prints before reboot(2) would otherwise die in the tty buffer
// with the kernel, and the serial console would never show them.
//
// The wait is interruptible (tty_wait_until_sent returns at a pending
// signal and the TCSBRK ioctl fails with EINTR), and a Go program takes
// signals of its own (the runtime's preemption signal), so an EINTR means
// "not drained yet": drain asks again, for at most drainPatience. A crash
// soak lost the crash stage's last three lines once, after its kernel began
// running with four CPUs instead of one; an interrupted wait is the one way
// found in the kernel source for them to stay behind, not a proven cause.
func drain(w io.Writer) {
	f := fileOf(w)
	if f == nil {
		return
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return // not a terminal
	}
	deadline := time.Now().Add(drainPatience)
	for {
		err := unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
		if !errors.Is(err, unix.EINTR) || time.Now().After(deadline) {
			return
		}
	}
}
