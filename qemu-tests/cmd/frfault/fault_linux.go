package main

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// fifreeze is _IOWR('X', 119, int) (include/uapi/linux/fs.h).
const fifreeze = 0xc0045877

func hang(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, d.Fd(), fifreeze, 0); errno != 0 {
		return fmt.Errorf("ioctl(%s, FIFREEZE): %w", dir, errno)
	}
	fmt.Printf("frfault: %s frozen, writing to it\n", dir)
	go os.WriteFile(filepath.Join(dir, "frfault-hang"), []byte("x"), 0o644)
	// The writer blocks in the kernel (D state) until the file system is
	// thawed, which nothing does.
	time.Sleep(24 * time.Hour)
	return nil
}

// orphan kills every other process for a few seconds: u-root's init runs
// its commands one after the other (uinit, /bin/defaultsh, then /bin/sh),
// so each new shell is killed too, until init has run out of commands and,
// once this process exits, of children.
func orphan() error {
	// The shell this runs from is killed first: its terminal hangs up,
	// which would end this process too before the next shell is started.
	signal.Ignore(syscall.SIGHUP, syscall.SIGTERM)
	fmt.Println("frfault: killing every process but init")
	for i := 0; i < 25; i++ {
		if err := unix.Kill(-1, unix.SIGKILL); err != nil && err != unix.ESRCH {
			return fmt.Errorf("kill(-1, SIGKILL): %w", err)
		}
		time.Sleep(200 * time.Millisecond)
	}
	return nil
}
