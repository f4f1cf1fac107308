package fastreboot

import (
	"fmt"
	"os"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// FileLoad calls kexec_file_load(kernel, initrd, cmdline, flags). A nil
// initrd adds KEXEC_FILE_NO_INITRAMFS. The kernel reads both files from
// offset 0 whatever their file offsets are.
func (KexecLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return kexecsys.FileLoad(kernel, initrd, cmdline, flags)
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
	return kexecsys.FileLoadFd(-1, -1, "", 0)
}

// Sync calls sync(2).
func (SyscallRebooter) Sync() error { return kexecsys.Sync() }

// Reboot calls reboot(2) with LINUX_REBOOT_CMD_KEXEC or
// LINUX_REBOOT_CMD_RESTART. It does not return on success.
func (SyscallRebooter) Reboot(cmd RebootCmd) error {
	switch cmd {
	case RebootKexec:
		return kexecsys.Reboot(true)
	case RebootRestart:
		return kexecsys.Reboot(false)
	}
	return fmt.Errorf("reboot(%v): unknown command", cmd)
}
