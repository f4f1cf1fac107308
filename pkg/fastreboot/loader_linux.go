package fastreboot

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// FileLoad calls kexec_file_load(kernel, initrd, cmdline, flags). A nil
// initrd adds KEXEC_FILE_NO_INITRAMFS. The kernel reads both files from
// offset 0 whatever their file offsets are.
func (KexecLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	initrdFd, initrdName := -1, "none"
	if initrd != nil {
		initrdFd, initrdName = int(initrd.Fd()), initrd.Name()
	} else {
		flags |= unix.KEXEC_FILE_NO_INITRAMFS
	}
	err := kexecFileLoad(int(kernel.Fd()), initrdFd, cmdline, flags)
	if err == nil {
		return nil
	}
	call := fmt.Sprintf("kexec_file_load(kernel=%s, initrd=%s, cmdline %d bytes, flags %#x)", kernel.Name(), initrdName, len(cmdline), flags)
	return kexecError(call, err)
}

// kexecError wraps a kexec syscall error with the sentinel and a hint.
func kexecError(call string, err error) error {
	var errno unix.Errno
	if !errors.As(err, &errno) {
		return fmt.Errorf("%s: %w", call, err)
	}
	e := &KexecError{Call: call, Errno: errno}
	switch errno {
	case unix.ENOSYS:
		e.Kind = ErrNotSupported
		e.Hint = "the kernel has no kexec_file_load: CONFIG_KEXEC_FILE off or an architecture without it"
	case unix.EPERM:
		e.Kind = ErrNotPermitted
		e.Hint = "needs CAP_SYS_BOOT, kernel.kexec_load_disabled=0 and a kexec load left in kernel.kexec_load_limit_reboot; " +
			"under lockdown (/sys/kernel/security/lockdown) an image without a trusted signature is refused with EPERM too; " +
			"a seccomp filter may also return EPERM"
	case unix.EKEYREJECTED, unix.EBADMSG, unix.ENOKEY, unix.ENODATA, unix.EKEYEXPIRED, unix.EKEYREVOKED:
		e.Kind = ErrSignature
		e.Hint = "the kernel's signature did not verify against a trusted key; lockdown (/sys/kernel/security/lockdown) " +
			"or CONFIG_KEXEC_SIG_FORCE require a signed kernel"
	case unix.EBUSY:
		e.Kind = ErrBusy
		e.Hint = "another kexec load is in progress"
	case unix.ETXTBSY:
		e.Kind = ErrBusy
		e.Hint = "the kernel or initrd file is open for writing elsewhere"
	case unix.ENOMEM, unix.EADDRNOTAVAIL:
		e.Kind = ErrNoMemory
		e.Hint = "no room for the image's segments: free memory or make the image smaller"
	case unix.ENOEXEC:
		e.Hint = "no kexec loader of this kernel recognises the image (e.g. not a bzImage with a 64-bit entry)"
	case unix.EINVAL:
		e.Hint = "invalid flags or command line (it must be NUL-terminated and fit COMMAND_LINE_SIZE)"
	case unix.EBADF:
		e.Hint = "a file descriptor is not open for reading"
	}
	return e
}

// ProbeKexecFileLoad tells whether kexec_file_load exists by calling
// kexec_file_load(-1, -1, "", 0). It returns the call's error: ENOSYS when
// the syscall is missing; EPERM when this process may not load (no
// CAP_SYS_BOOT, kexec_load_disabled, limit used up, or seccomp); EBADF
// (the expected answer) or EBUSY when it exists and may be used.
//
// The probe cannot change what is loaded (read in kernel/kexec_file.c,
// Linux 6.1 to 6.18): after the permission and flag checks the kernel takes
// the kexec lock and fails reading the kernel fd -1 with EBADF, before it
// could replace or unload any image; flags 0 avoid both KEXEC_FILE_UNLOAD and
// KEXEC_FILE_ON_CRASH, which frees the loaded crash image before reading the
// fds. One side effect remains on Linux 6.2+: the permission check
// (kexec_load_permitted) decrements kernel.kexec_load_limit_reboot when it
// is not -1, which is why Preflight skips the probe in that case. No
// CAP_SYS_BOOT is needed to tell "missing" (ENOSYS) from "present" (any
// other answer).
func ProbeKexecFileLoad() error {
	if err := kexecFileLoad(-1, -1, "", 0); err != nil {
		return fmt.Errorf("kexec_file_load(-1, -1, \"\", 0): %w", err)
	}
	return nil
}
