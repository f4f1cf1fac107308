package fastreboot

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// Sync calls sync(2).
func (SyscallRebooter) Sync() error {
	unix.Sync()
	return nil
}

// Reboot calls reboot(2) with LINUX_REBOOT_CMD_KEXEC or
// LINUX_REBOOT_CMD_RESTART. It does not return on success.
func (SyscallRebooter) Reboot(cmd RebootCmd) error {
	var c int
	switch cmd {
	case RebootKexec:
		c = unix.LINUX_REBOOT_CMD_KEXEC
	case RebootRestart:
		c = unix.LINUX_REBOOT_CMD_RESTART
	default:
		return fmt.Errorf("reboot(%v): unknown command", cmd)
	}
	if err := unix.Reboot(c); err != nil {
		return fmt.Errorf("reboot(%v): %w", cmd, err)
	}
	return nil
}

// sealAll makes a memfd immutable: no write, no resize, no change of seals.
const sealAll = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// newImageFile creates the empty, sealable memfd the initrd is assembled in.
func newImageFile(name string) (*os.File, error) {
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create(%q, MFD_CLOEXEC|MFD_ALLOW_SEALING): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "memfd:"+name), nil
}

// sealImage applies sealAll with fcntl(F_ADD_SEALS). kexec_file_load reads
// sealed memfds (the seals do not prevent the load; docs/kernel-facts.md,
// kexec_file_load and memfds); the seals keep the loaded bytes what was
// built.
func sealImage(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.FcntlInt(fd, unix.F_ADD_SEALS, sealAll)
	}); err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	if serr != nil {
		return fmt.Errorf("fcntl(%s, F_ADD_SEALS, %#x): %w", f.Name(), sealAll, serr)
	}
	return nil
}

// errNoFastCopy says copy_file_range cannot be used between these files;
// the caller falls back to pread/pwrite.
var errNoFastCopy = errors.New("copy_file_range not usable")

// copyFileRange copies n bytes from src at offset 0 to dst at dstOff with
// copy_file_range(2) and explicit offsets (neither file's offset moves, so
// the shared cached memfd can be read concurrently). The kernel copies page
// to page; the bytes never pass through user space. It returns
// errNoFastCopy if the kernel cannot copy between these files before any
// byte was copied.
func copyFileRange(dst *os.File, dstOff int64, src *os.File, n int64) (int64, error) {
	var done int64
	srcRC, err := src.SyscallConn()
	if err != nil {
		return 0, err
	}
	dstRC, err := dst.SyscallConn()
	if err != nil {
		return 0, err
	}
	var opErr error
	cerr := srcRC.Control(func(sfd uintptr) {
		derr := dstRC.Control(func(dfd uintptr) {
			roff, woff := int64(0), dstOff
			for done < n {
				chunk := n - done
				if chunk > 1<<30 {
					chunk = 1 << 30
				}
				c, err := unix.CopyFileRange(int(sfd), &roff, int(dfd), &woff, int(chunk), 0)
				if err == unix.EINTR {
					continue
				}
				if err != nil {
					if done == 0 && (err == unix.ENOSYS || err == unix.EXDEV || err == unix.EINVAL || err == unix.EOPNOTSUPP) {
						opErr = errNoFastCopy
					} else {
						opErr = fmt.Errorf("copy_file_range(%s -> %s at %d): %w", src.Name(), dst.Name(), dstOff+done, err)
					}
					return
				}
				if c == 0 {
					opErr = fmt.Errorf("copy_file_range(%s -> %s): source ended after %d of %d bytes", src.Name(), dst.Name(), done, n)
					return
				}
				done += int64(c)
			}
		})
		if derr != nil {
			opErr = derr
		}
	})
	if cerr != nil {
		return done, cerr
	}
	return done, opErr
}
