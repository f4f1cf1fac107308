package kexecsys

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/u-root/u-root/pkg/boot/kexec"
	"golang.org/x/sys/unix"
)

// kexec_file_load(2) flags (include/uapi/linux/kexec.h).
const (
	FileUnload      = unix.KEXEC_FILE_UNLOAD
	FileOnCrash     = unix.KEXEC_FILE_ON_CRASH
	FileNoInitramfs = unix.KEXEC_FILE_NO_INITRAMFS
	// LoadOnCrash is kexec_load(2)'s KEXEC_ON_CRASH.
	LoadOnCrash = unix.KEXEC_ON_CRASH
)

// FileLoad calls kexec_file_load(kernel, initrd, cmdline, flags). A nil
// file is passed as fd -1 (the kernel ignores the fds for an unload); a nil
// initrd adds KEXEC_FILE_NO_INITRAMFS unless flags ask for an unload. The kernel reads both files from
// offset 0 whatever their file offsets are. Errors are *KexecError values
// naming the files, the command line's length and the flags.
func FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	kfd, kname := -1, "none"
	if kernel != nil {
		kfd, kname = int(kernel.Fd()), kernel.Name()
	}
	ifd, iname := -1, "none"
	if initrd != nil {
		ifd, iname = int(initrd.Fd()), initrd.Name()
	} else if flags&FileUnload == 0 {
		flags |= FileNoInitramfs
	}
	err := kexecFileLoad(kfd, ifd, cmdline, flags)
	return Classify(OpFileLoad, fmt.Sprintf("kernel=%s, initrd=%s, cmdline %d bytes, flags %#x", kname, iname, len(cmdline), flags), err)
}

// FileLoadFd calls kexec_file_load with raw file descriptors; it is for
// probes (fd -1) that must not name a file.
func FileLoadFd(kernelFd, initrdFd int, cmdline string, flags int) error {
	return Classify(OpFileLoad, fmt.Sprintf("%d, %d, %q, %#x", kernelFd, initrdFd, cmdline, flags), kexecFileLoad(kernelFd, initrdFd, cmdline, flags))
}

// Segment is one piece of a kexec_load image: Buf is copied to physical
// address Phys, and the segment takes Size bytes there.
type Segment struct {
	Buf  []byte
	Phys uint64
	Size uint64
}

// Load calls kexec_load(2). flags is 0 or LoadOnCrash (KEXEC_ARCH_DEFAULT
// is implied). Segments that all start on a page go to the kernel as they
// are, their sizes rounded up to pages (see pageAligned): the buffers are
// not copied, which matters to a crash kernel loading a whole image in a
// small reservation. Others (and segments that share a page once rounded)
// go through u-root's kexec.Load, which aligns and merges them by copying
// every buffer. Either way the segments must not overlap and the entry
// must be inside one. Errors of the call are *KexecError values; EPERM
// also matches ErrKexecLoadForbidden.
func Load(entry uint64, segments []Segment, flags uint64) error {
	fl := "KEXEC_ARCH_DEFAULT"
	if flags&LoadOnCrash != 0 {
		fl = "KEXEC_ON_CRASH|" + fl
	}
	args := fmt.Sprintf("entry %#x, %d segments, %s", entry, len(segments), fl)
	if pageAligned(segments) {
		if segs, err := checkDisjoint(entry, segments); err == nil {
			if errno := rawLoad(entry, segs, flags); errno != 0 {
				return &KexecError{Op: OpLoad, Args: args, Errno: errno}
			}
			return nil
		}
		// Overlapping once rounded to pages: u-root merges them.
	}
	segs := make(kexec.Segments, 0, len(segments))
	for _, s := range segments {
		segs = append(segs, kexec.NewSegment(s.Buf, kexec.Range{Start: uintptr(s.Phys), Size: uint(s.Size)}))
	}
	err := kexec.Load(uintptr(entry), segs, flags)
	if err == nil {
		return nil
	}
	var ke kexec.ErrKexec
	if errors.As(err, &ke) {
		return &KexecError{Op: OpLoad, Args: args, Errno: ke.Errno}
	}
	return fmt.Errorf("%s(%s): %w", OpLoad, args, err)
}

// Sync calls sync(2).
func Sync() error {
	unix.Sync()
	return nil
}

// Reboot calls reboot(2) with LINUX_REBOOT_CMD_KEXEC (kexec true) or
// LINUX_REBOOT_CMD_RESTART. It does not return on success.
func Reboot(kexec bool) error {
	c, name := unix.LINUX_REBOOT_CMD_RESTART, "LINUX_REBOOT_CMD_RESTART"
	if kexec {
		c, name = unix.LINUX_REBOOT_CMD_KEXEC, "LINUX_REBOOT_CMD_KEXEC"
	}
	return Classify(OpReboot, name, unix.Reboot(c))
}

// maxMemfdName is the longest name memfd_create accepts (NAME_MAX minus the
// "memfd:" prefix the kernel adds).
const maxMemfdName = 249

// SealAll makes a memfd immutable: no write, no resize, no change of seals.
const SealAll = unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL

// MemfdCreate creates an empty memfd that can be sealed
// (MFD_CLOEXEC|MFD_ALLOW_SEALING), named "memfd:"+name. The returned fd is
// the only open of the inode; kexec_file_load does not count it as a writer
// (ETXTBSY would follow from any reopen for writing).
func MemfdCreate(name string) (*os.File, error) {
	name = strings.ReplaceAll(name, "\x00", "_")
	if len(name) > maxMemfdName {
		name = name[:maxMemfdName]
	}
	fd, err := unix.MemfdCreate(name, unix.MFD_CLOEXEC|unix.MFD_ALLOW_SEALING)
	if err != nil {
		return nil, fmt.Errorf("memfd_create(%q, MFD_CLOEXEC|MFD_ALLOW_SEALING): %w", name, err)
	}
	return os.NewFile(uintptr(fd), "memfd:"+name), nil
}

// Seal applies SealAll with fcntl(F_ADD_SEALS). kexec_file_load reads
// sealed memfds (the seals do not prevent the load); the seals keep the
// loaded bytes what was built.
func Seal(f *os.File) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		_, serr = unix.FcntlInt(fd, unix.F_ADD_SEALS, SealAll)
	}); err != nil {
		return fmt.Errorf("seal %s: %w", f.Name(), err)
	}
	if serr != nil {
		return fmt.Errorf("fcntl(%s, F_ADD_SEALS, %#x): %w", f.Name(), SealAll, serr)
	}
	return nil
}

// Seals returns the seals of a memfd (F_GET_SEALS).
func Seals(f *os.File) (int, error) {
	return unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
}

// CopyFileRange copies n bytes from src at offset 0 to dst at dstOff with
// copy_file_range(2) and explicit offsets (neither file's offset moves, so
// a shared file can be read concurrently). The kernel copies page to page;
// the bytes never pass through user space. It returns an error wrapping
// ErrNotSupported if the kernel cannot copy between these files before any
// byte was copied (ENOSYS, EXDEV, EINVAL, EOPNOTSUPP): the caller falls
// back to read and write.
func CopyFileRange(dst *os.File, dstOff int64, src *os.File, n int64) (int64, error) {
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
						opErr = fmt.Errorf("copy_file_range(%s -> %s): %w: %w", src.Name(), dst.Name(), ErrNotSupported, err)
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
