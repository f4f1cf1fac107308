package fastreboot

import (
	"os"
	"strconv"
)

// Loader loads a kexec image. The real one is [KexecLoader]; tests inject a
// fake. FileLoad must load kernel and initrd as they are at the time of the
// call (kexec_file_load copies both into kernel memory) and must replace a
// previously loaded image only on success.
type Loader interface {
	FileLoad(kernel, initrd *os.File, cmdline string, flags int) error
}

// KexecLoader is the [Loader] that calls kexec_file_load(2). Errors are
// *[KexecError] values naming the call and its arguments, matching with
// errors.Is both the errno and one of ErrNotSupported (ENOSYS),
// ErrNotPermitted (EPERM), ErrSignature (EKEYREJECTED, EBADMSG, ENOKEY,
// ENODATA, EKEYEXPIRED, EKEYREVOKED), ErrBusy (EBUSY, ETXTBSY) and
// ErrNoMemory (ENOMEM, EADDRNOTAVAIL). On systems other than Linux it
// returns ErrNotSupported.
type KexecLoader struct{}

// RebootCmd is what Rebooter.Reboot asks the kernel to do.
type RebootCmd int

// Reboot commands.
const (
	// RebootKexec jumps into the loaded kexec image
	// (reboot(LINUX_REBOOT_CMD_KEXEC)).
	RebootKexec RebootCmd = iota + 1
	// RebootRestart resets the machine through the firmware
	// (reboot(LINUX_REBOOT_CMD_RESTART)).
	RebootRestart
)

func (c RebootCmd) String() string {
	switch c {
	case RebootKexec:
		return "LINUX_REBOOT_CMD_KEXEC"
	case RebootRestart:
		return "LINUX_REBOOT_CMD_RESTART"
	}
	return "RebootCmd(" + strconv.Itoa(int(c)) + ")"
}

// Rebooter performs the last steps of a reboot. The real one is
// [SyscallRebooter]; tests inject a fake.
type Rebooter interface {
	// Sync flushes file system buffers (sync(2)).
	Sync() error
	// Reboot does not return on success.
	Reboot(cmd RebootCmd) error
}

// SyscallRebooter is the [Rebooter] that calls sync(2) and reboot(2).
// Reboot's error names the call, e.g. "reboot(LINUX_REBOOT_CMD_KEXEC): invalid
// argument" when no image is loaded. On systems other than Linux both methods
// return ErrNotSupported.
type SyscallRebooter struct{}
