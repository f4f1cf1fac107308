package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
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

// keptMagic is the first bytes of a valid kept region header.
var keptMagic = []byte(keptmem.Magic)

// midwrite runs args and panics the kernel once dev's header, which must be
// a valid one when it starts, reads back as zeros: keptmem.Write's first
// step. The zeros are read through the device's page cache, where the
// writer's buffered write lands first; sync_file_range of the header's page
// then puts them in the region itself before the panic, while the writer
// is on its second step (the modules, about 100 ms under TCG for 18 MiB),
// so the crash tears the write. Polls sleep 200µs: the guest's vCPUs share one
// host thread under TCG, and a busy loop would slow the writer it waits
// for.
func midwrite(dev string, args []string) error {
	f, err := os.Open(dev)
	if err != nil {
		return err
	}
	defer f.Close()
	buf := make([]byte, len(keptMagic))
	head := func() ([]byte, error) {
		if _, err := f.ReadAt(buf, 0); err != nil {
			return nil, err
		}
		return buf, nil
	}
	h, err := head()
	if err != nil {
		return err
	}
	if !bytes.Equal(h, keptMagic) {
		return fmt.Errorf("%s holds no kept region header to watch (%q)", dev, h)
	}
	trigger, err := os.OpenFile("/proc/sysrq-trigger", os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	start := time.Now()
	for polls := 1; ; polls++ {
		select {
		case err := <-done:
			return fmt.Errorf("%v ended (%v) before %s's header was zeroed (%d reads)", args, err, dev, polls)
		default:
		}
		h, err := head()
		if err != nil {
			return err
		}
		if allZero(h) {
			// Only the header's page: an fsync of the device would also
			// wait for the modules the writer is writing meanwhile, and
			// could return after its last step, the new header.
			if err := unix.SyncFileRange(int(f.Fd()), 0, 4096, unix.SYNC_FILE_RANGE_WAIT_BEFORE|unix.SYNC_FILE_RANGE_WRITE|unix.SYNC_FILE_RANGE_WAIT_AFTER); err != nil {
				return fmt.Errorf("sync_file_range %s: %w", dev, err)
			}
			fmt.Printf("frfault: %s header zeroed %.3fs after the command began (%d reads): panicking\n", dev, time.Since(start).Seconds(), polls)
			_, err := trigger.Write([]byte("c"))
			return fmt.Errorf("sysrq c did not panic: %v", err)
		}
		time.Sleep(200 * time.Microsecond)
	}
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}
