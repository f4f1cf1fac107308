package preserve

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// Attach maps the area a of dev (the region's device, root/dev/pmemN, as
// Find returns it) as a loop block device and returns it: an existing
// loop device that maps exactly a, or a free one (LOOP_CTL_GET_FREE on
// root/dev/loop-control) configured with LOOP_CONFIGURE (Linux 5.8+) at
// the area's offset and size. Writes through it reach dev's page cache and
// are in the region once SyncLoops and Table.Sync return. The device stays
// until Detach (it is not auto-cleared) and does not survive the kexec:
// the next generation attaches again.
func Attach(root, dev string, a Area) (string, error) {
	if root == "" {
		root = "/"
	}
	loops, err := Loops(root, dev)
	if err != nil {
		return "", err
	}
	for _, l := range loops {
		if l.Maps(a) {
			return l.Device, nil
		}
	}
	back, err := os.OpenFile(dev, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("preserve: %w", err)
	}
	defer back.Close()
	devSize, err := back.Seek(0, 2)
	if err != nil {
		return "", fmt.Errorf("preserve: seek to the end of %s: %w", dev, err)
	}
	off, size, err := loopRange(a, devSize)
	if err != nil {
		return "", err
	}
	ctlPath := filepath.Join(root, "dev/loop-control")
	ctl, err := os.OpenFile(ctlPath, os.O_RDWR, 0)
	if err != nil {
		return "", fmt.Errorf("preserve: %w (is the loop module loaded?)", err)
	}
	defer ctl.Close()
	// Another program may take the free device between the two calls:
	// LOOP_CONFIGURE then fails with EBUSY, and the next one is asked for.
	for try := 0; ; try++ {
		n, err := unix.IoctlRetInt(int(ctl.Fd()), unix.LOOP_CTL_GET_FREE)
		if err != nil {
			return "", fmt.Errorf("preserve: ioctl(%s, LOOP_CTL_GET_FREE): %w", ctlPath, err)
		}
		p := filepath.Join(root, "dev", "loop"+strconv.Itoa(n))
		err = configure(p, back, off, size, dev)
		if errors.Is(err, unix.EBUSY) && try < 8 {
			continue
		}
		if err != nil {
			return "", err
		}
		return p, nil
	}
}

func configure(p string, back *os.File, off, size uint64, name string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("preserve: %w", err)
	}
	defer f.Close()
	cfg := unix.LoopConfig{Fd: uint32(back.Fd()), Info: unix.LoopInfo64{Offset: off, Sizelimit: size}}
	copy(cfg.Info.File_name[:len(cfg.Info.File_name)-1], name)
	if err := unix.IoctlLoopConfigure(int(f.Fd()), &cfg); err != nil {
		return fmt.Errorf("preserve: ioctl(%s, LOOP_CONFIGURE, %s offset %d size %d): %w", p, name, off, size, err)
	}
	return nil
}

// SyncLoops fsyncs every loop device over dev (Loops), so that what was
// written through them, and through mappings of them, is in dev's page
// cache and, with the flush the loop driver passes down, in the region: a
// write through a loop device's mapping sits in the loop device's own page
// cache, which Table.Sync (an fsync of dev) does not write. It returns the
// devices synced. Before a fast reboot, before Table.Sync.
func SyncLoops(root, dev string) ([]string, error) {
	loops, err := Loops(root, dev)
	if err != nil {
		return nil, err
	}
	var synced []string
	for _, l := range loops {
		if err := syncFile(l.Device); err != nil {
			return synced, err
		}
		synced = append(synced, l.Device)
	}
	return synced, nil
}

// Detach syncs and releases (LOOP_CLR_FD) the loop devices over dev that
// map exactly the area a, and returns them; none is not an error.
func Detach(root, dev string, a Area) ([]string, error) {
	loops, err := Loops(root, dev)
	if err != nil {
		return nil, err
	}
	var done []string
	for _, l := range loops {
		if !l.Maps(a) {
			continue
		}
		f, err := os.OpenFile(l.Device, os.O_RDWR, 0)
		if err != nil {
			return done, fmt.Errorf("preserve: %w", err)
		}
		if err := f.Sync(); err != nil {
			f.Close()
			return done, fmt.Errorf("preserve: fsync %s: %w", l.Device, err)
		}
		err = unix.IoctlSetInt(int(f.Fd()), unix.LOOP_CLR_FD, 0)
		f.Close()
		if err != nil {
			return done, fmt.Errorf("preserve: ioctl(%s, LOOP_CLR_FD): %w", l.Device, err)
		}
		done = append(done, l.Device)
	}
	return done, nil
}

func syncFile(p string) error {
	f, err := os.OpenFile(p, os.O_RDWR, 0)
	if err != nil {
		return fmt.Errorf("preserve: %w", err)
	}
	defer f.Close()
	if err := f.Sync(); err != nil {
		return fmt.Errorf("preserve: fsync %s: %w", p, err)
	}
	return nil
}
