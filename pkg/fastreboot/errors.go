package fastreboot

import (
	"errors"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotSupported: the kernel or the platform lacks the facility
	// (kexec_file_load returned ENOSYS, or this is not Linux).
	ErrNotSupported = kexecsys.ErrNotSupported
	// ErrNotPermitted: the kernel refused the kexec (EPERM): no CAP_SYS_BOOT,
	// kernel.kexec_load_disabled=1, kernel.kexec_load_limit_reboot used up,
	// or lockdown refused an image without a trusted signature.
	ErrNotPermitted = kexecsys.ErrNotPermitted
	// ErrSignature: the kernel rejected the image's signature (lockdown or
	// CONFIG_KEXEC_SIG_FORCE require a kernel signed by a trusted key).
	ErrSignature = kexecsys.ErrSignature
	// ErrBusy: another kexec load is in progress (EBUSY), or a file given
	// to kexec_file_load is open for writing elsewhere (ETXTBSY).
	ErrBusy = kexecsys.ErrBusy
	// ErrNoMemory: the kernel found no room for the image's segments.
	ErrNoMemory = kexecsys.ErrNoMemory
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

// KexecError is a failed kexec syscall: Op names it, Args its arguments,
// Errno is what the kernel returned. It matches, with errors.Is, both the
// errno and the sentinel that describes the condition (for example
// ErrNotPermitted and syscall.EPERM); the classification is
// kexecsys.Kinds, shared with pkg/crashhandler.
type KexecError = kexecsys.KexecError
