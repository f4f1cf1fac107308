package ttydrain

import (
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// Patience bounds how long Drain waits for the terminal.
const Patience = 3 * time.Second

// Drain waits until what was written to f has left the terminal, when f is
// one. The last lines a generation prints before reboot(2) would otherwise
// die in the tty buffer with the kernel, and the serial console would never
// show them.
//
// tcdrain (ioctl TCSBRK with a non-zero argument) sleeps until the tty's
// buffer is empty, but it can return without waiting: EINTR when a signal
// is pending (a Go program takes signals of its own), EIO or SIGTTOU for a
// process outside the terminal's foreground process group, and the serial
// core gives up on the UART's transmitter after twice the time of a FIFO.
// The console still lost the "rebooting through kexec" line now and then
// (a crash stage and an update reboot, one each in a day of soaks and a CI
// run). So Drain then checks what is left: the bytes queued in the tty
// (TIOCOUTQ) and, on a serial port, whether the transmitter is empty
// (TIOCSERGETLSR), polling every millisecond for at most Patience.
func Drain(f *os.File) {
	fd := int(f.Fd())
	if _, err := unix.IoctlGetTermios(fd, unix.TCGETS); err != nil {
		return // not a terminal
	}
	unix.IoctlSetInt(fd, unix.TCSBRK, 1)
	for deadline := time.Now().Add(Patience); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
		if drained(fd, unix.IoctlGetInt) {
			return
		}
	}
}

// drained reports whether fd's output queue is empty and, if it is a serial
// port, its transmitter too, asking with query (unix.IoctlGetInt). A query
// the terminal does not support counts as empty.
func drained(fd int, query func(fd int, req uint) (int, error)) bool {
	if n, err := query(fd, unix.TIOCOUTQ); err == nil && n > 0 {
		return false
	}
	lsr, err := query(fd, unix.TIOCSERGETLSR)
	return err != nil || lsr&unix.TIOCSER_TEMT != 0
}
