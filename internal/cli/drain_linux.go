package cli

import (
	"io"

	"golang.org/x/sys/unix"
)

// drain waits until what was written to w has left the terminal, when w is
// one (tcdrain: ioctl TCSBRK with a non-zero argument). The last lines a
// generation prints before reboot(2) would otherwise die in the tty buffer
// with the kernel, and the serial console would never show them.
func drain(w io.Writer) {
	f := fileOf(w)
	if f == nil {
		return
	}
	if _, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS); err != nil {
		return // not a terminal
	}
	unix.IoctlSetInt(int(f.Fd()), unix.TCSBRK, 1)
}
