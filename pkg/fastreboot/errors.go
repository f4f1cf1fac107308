package fastreboot

import (
	"errors"
	"fmt"
	"syscall"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotSupported: the kernel or the platform lacks the facility
	// (kexec_file_load returned ENOSYS, or this is not Linux).
	ErrNotSupported = errors.New("not supported")
	// ErrNotPermitted: the kernel refused the kexec (EPERM): no CAP_SYS_BOOT,
	// kernel.kexec_load_disabled=1, kernel.kexec_load_limit_reboot used up,
	// or lockdown refused an image without a trusted signature.
	ErrNotPermitted = errors.New("not permitted")
	// ErrSignature: the kernel rejected the image's signature (lockdown or
	// CONFIG_KEXEC_SIG_FORCE require a kernel signed by a trusted key).
	ErrSignature = errors.New("kernel signature rejected")
	// ErrBusy: another kexec load is in progress (EBUSY), or a file given
	// to kexec_file_load is open for writing elsewhere (ETXTBSY).
	ErrBusy = errors.New("busy")
	// ErrNoMemory: the kernel found no room for the image's segments.
	ErrNoMemory = errors.New("not enough memory for the kexec image")
	// ErrNotLoaded: no kexec image is loaded, so reboot(LINUX_REBOOT_CMD_KEXEC)
	// cannot jump.
	ErrNotLoaded = errors.New("no kexec image loaded")
	// ErrPreflight: at least one preflight check failed; the message names
	// each failed check.
	ErrPreflight = errors.New("preflight failed")
	// ErrNoHandoff: the root holds no fastreboot/handoff.json: the system
	// booted cold (generation 1) or the previous generation carried nothing.
	ErrNoHandoff = errors.New("no handoff")
	// ErrHandoff: a handoff exists but cannot be used (bad JSON, an
	// unsupported version, an invalid manifest or digest list).
	ErrHandoff = errors.New("invalid handoff")
)

// KexecError is a failed kexec syscall. It matches, with errors.Is, both the
// raw errno and the package sentinel that describes the condition (for
// example ErrNotPermitted and syscall.EPERM).
type KexecError struct {
	// Call names the syscall and its arguments.
	Call string
	// Errno is what the kernel returned.
	Errno syscall.Errno
	// Kind is the sentinel for the condition, or nil.
	Kind error
	// Hint says what usually causes this errno, or is empty.
	Hint string
}

func (e *KexecError) Error() string {
	s := fmt.Sprintf("%s: %v", e.Call, e.Errno)
	if e.Hint != "" {
		s += " (" + e.Hint + ")"
	}
	return s
}

// Unwrap returns the sentinel and the errno.
func (e *KexecError) Unwrap() []error {
	if e.Kind == nil {
		return []error{e.Errno}
	}
	return []error{e.Kind, e.Errno}
}
