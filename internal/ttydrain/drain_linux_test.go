package ttydrain

import (
	"os"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// openPTY returns the slave side of a new pseudo-terminal (the master is
// closed with the test).
func openPTY(t *testing.T) *os.File {
	t.Helper()
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminal here: %v", err)
	}
	t.Cleanup(func() { m.Close() })
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		t.Fatalf("unlockpt: %v", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		t.Fatalf("TIOCGPTN: %v", err)
	}
	s, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("opening the pty's slave: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// A terminal that is not a serial port (no TIOCSERGETLSR) with nothing
// queued counts as drained, and Drain returns at once; a file is not a
// terminal and is left alone.
func TestDrain(t *testing.T) {
	s := openPTY(t)
	if _, err := s.WriteString("fastreboot: rebooting through kexec\n"); err != nil {
		t.Fatal(err)
	}
	if !drained(int(s.Fd()), unix.IoctlGetInt) {
		t.Errorf("drained(pty) = false, want true (a pty queues nothing and has no UART)")
	}
	start := time.Now()
	Drain(s)
	if d := time.Since(start); d > Patience/2 {
		t.Errorf("drain(pty) took %v, want it to return at once", d)
	}
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	start = time.Now()
	Drain(f)
	if d := time.Since(start); d > Patience/2 {
		t.Errorf("drain(file) took %v, want it to return at once", d)
	}
}

// drained waits for both the tty's queue and a serial port's transmitter,
// and takes what a terminal cannot answer as empty.
func TestDrained(t *testing.T) {
	for _, tc := range []struct {
		name        string
		outq, lsr   int
		outqErr     error
		lsrErr      error
		wantDrained bool
	}{
		{"bytes queued in the tty", 37, unix.TIOCSER_TEMT, nil, nil, false},
		{"UART still sending", 0, 0, nil, nil, false},
		{"queue and transmitter empty", 0, unix.TIOCSER_TEMT, nil, nil, true},
		{"not a serial port", 0, 0, nil, unix.ENOTTY, true},
		{"no queue size either", 0, 0, unix.ENOTTY, unix.ENOTTY, true},
	} {
		query := func(fd int, req uint) (int, error) {
			switch req {
			case unix.TIOCOUTQ:
				return tc.outq, tc.outqErr
			case unix.TIOCSERGETLSR:
				return tc.lsr, tc.lsrErr
			}
			t.Fatalf("unexpected ioctl %#x", req)
			return 0, nil
		}
		if got := drained(3, query); got != tc.wantDrained {
			t.Errorf("%s: drained = %v, want %v", tc.name, got, tc.wantDrained)
		}
	}
}
