package kexecsys

import (
	"errors"
	"fmt"
	"syscall"
)

// The error kinds the kexec paths share; test with errors.Is.
var (
	// ErrNotSupported: the kernel or the platform lacks the facility (the
	// system call returned ENOSYS, or this is not Linux).
	ErrNotSupported = errors.New("not supported")
	// ErrNotPermitted: the kernel refused the kexec (EPERM): no
	// CAP_SYS_BOOT, kernel.kexec_load_disabled=1,
	// kernel.kexec_load_limit_reboot used up, a seccomp filter, or lockdown
	// refused an image without a trusted signature.
	ErrNotPermitted = errors.New("not permitted")
	// ErrSignature: the kernel rejected the image's signature (lockdown or
	// CONFIG_KEXEC_SIG_FORCE require a kernel signed by a trusted key).
	ErrSignature = errors.New("kernel signature rejected")
	// ErrBusy: another kexec load is in progress (EBUSY), or a file given
	// to kexec_file_load is open for writing elsewhere (ETXTBSY).
	ErrBusy = errors.New("busy")
	// ErrNoMemory: the kernel found no room for the image's segments
	// (ENOMEM, EADDRNOTAVAIL).
	ErrNoMemory = errors.New("not enough memory for the kexec image")
	// ErrKexecLoadForbidden: the kernel forbids the legacy kexec_load
	// (EPERM from kexec_load: under lockdown it is refused whatever the
	// image, while kexec_file_load still loads signed kernels). It comes
	// with ErrNotPermitted.
	ErrKexecLoadForbidden = errors.New("kexec_load forbidden: use the file load method (kexec_file_load)")
)

// Names of the system calls, as KexecError.Op holds them.
const (
	OpFileLoad = "kexec_file_load"
	OpLoad     = "kexec_load"
	OpReboot   = "reboot"
)

// KexecError is a failed kexec system call. It matches, with errors.Is,
// both the raw errno and the sentinel that describes the condition (for
// example ErrNotPermitted and syscall.EPERM); see [Kinds].
type KexecError struct {
	// Op is the system call: OpFileLoad, OpLoad or OpReboot.
	Op string
	// Args describes the arguments (files by name, sizes, flags), or is
	// empty.
	Args string
	// Errno is what the kernel returned.
	Errno syscall.Errno
}

func (e *KexecError) Error() string {
	s := fmt.Sprintf("%s(%s): %v", e.Op, e.Args, e.Errno)
	if h := Hint(e.Op, e.Errno); h != "" {
		s += " (" + h + ")"
	}
	return s
}

// Unwrap returns the sentinels the errno means, then the errno.
func (e *KexecError) Unwrap() []error {
	return append(Kinds(e.Op, e.Errno), e.Errno)
}

// Kinds is the one classification of kexec errnos (read in Linux 6.1 to
// 6.18, kernel/kexec.c, kernel/kexec_file.c, kernel/kexec_core.c):
//   - ENOSYS: the call does not exist (CONFIG_KEXEC / CONFIG_KEXEC_FILE off).
//   - EPERM: kexec_load_permitted failed (no CAP_SYS_BOOT,
//     kexec_load_disabled, the load limit) or lockdown refused the image;
//     for kexec_load also ErrKexecLoadForbidden. EACCES: a security module
//     refused reading the file (security_kernel_read_file: IMA appraisal,
//     LoadPin).
//   - EKEYREJECTED, ENOKEY, EBADMSG, ENODATA, ENOPKG, EKEYEXPIRED,
//     EKEYREVOKED: kimage_validate_signature passes on what
//     verify_pefile_signature returned when a signature is required.
//   - EBUSY: kexec_trylock failed; ETXTBSY: a file is open for writing
//     (kernel_read_file denies writers).
//   - ENOMEM, EADDRNOTAVAIL: no room for the segments (in the crash
//     reservation, for a crash load).
//
// Other errnos (ENOEXEC, EINVAL, EBADF, ...) have no kind.
func Kinds(op string, errno syscall.Errno) []error {
	switch errno {
	case syscall.ENOSYS:
		return []error{ErrNotSupported}
	case syscall.EACCES:
		return []error{ErrNotPermitted}
	case syscall.EPERM:
		if op == OpLoad {
			return []error{ErrNotPermitted, ErrKexecLoadForbidden}
		}
		return []error{ErrNotPermitted}
	case syscall.EBUSY, syscall.ETXTBSY:
		return []error{ErrBusy}
	case syscall.ENOMEM, syscall.EADDRNOTAVAIL:
		return []error{ErrNoMemory}
	}
	if isSignatureErrno(errno) {
		return []error{ErrSignature}
	}
	return nil
}

// Hint says what usually causes errno from op, or is "".
func Hint(op string, errno syscall.Errno) string {
	if op == OpLoad {
		switch errno {
		case syscall.EPERM:
			return "the kernel refuses the legacy kexec_load under lockdown (Secure Boot) even where kexec_file_load of a signed kernel works: " +
				"use the file load method (--load=file); kexec_load also needs CAP_SYS_BOOT and kernel.kexec_load_disabled=0"
		case syscall.ENOSYS:
			return "the kernel has no kexec_load (CONFIG_KEXEC off): use the file load method (--load=file) if it has kexec_file_load"
		case syscall.EADDRNOTAVAIL, syscall.ENOMEM:
			return "a segment is outside the memory the kernel accepts, or there is no memory to copy the image"
		case syscall.EINVAL:
			return "segments overlap, are not page-aligned, or are too many (KEXEC_SEGMENT_MAX)"
		case syscall.EBUSY:
			return "another kexec load is in progress"
		}
		return ""
	}
	if op == OpReboot {
		if errno == syscall.EINVAL {
			return "no kexec image is loaded"
		}
		if errno == syscall.EPERM {
			return "needs CAP_SYS_BOOT"
		}
		return ""
	}
	switch errno {
	case syscall.ENOSYS:
		return "the kernel has no kexec_file_load: CONFIG_KEXEC_FILE off, an architecture without it, or a seccomp filter answering ENOSYS"
	case syscall.EPERM:
		return "needs CAP_SYS_BOOT, kernel.kexec_load_disabled=0 and a kexec load left in kernel.kexec_load_limit_reboot; " +
			"under lockdown (/sys/kernel/security/lockdown) an image without a trusted signature is refused with EPERM too; " +
			"a seccomp filter may also return EPERM"
	case syscall.EACCES:
		return "a security module (IMA appraisal, LoadPin) refused reading the kernel or initrd"
	case syscall.EBUSY:
		return "another kexec load is in progress"
	case syscall.ETXTBSY:
		return "the kernel or initrd file is open for writing elsewhere (seal the memfd and close writable reopens)"
	case syscall.ENOMEM, syscall.EADDRNOTAVAIL:
		return "no room for the image's segments: free memory, make the image smaller or, for a crash image, enlarge crashkernel="
	case syscall.ENOEXEC:
		return "no kexec loader of this kernel recognises the image (e.g. not a bzImage with a 64-bit entry)"
	case syscall.EINVAL:
		return "invalid flags or command line (it must be NUL-terminated and fit COMMAND_LINE_SIZE)"
	case syscall.EBADF:
		return "a file descriptor is not open for reading"
	}
	if isSignatureErrno(errno) {
		return "the kernel's signature did not verify against a trusted key; lockdown (/sys/kernel/security/lockdown) " +
			"or CONFIG_KEXEC_SIG_FORCE require a signed kernel"
	}
	return ""
}

// Classify returns err as a *KexecError of op when it is (or wraps) a
// syscall.Errno, keeping args; other errors are wrapped with the call's name.
func Classify(op, args string, err error) error {
	if err == nil {
		return nil
	}
	var ke *KexecError
	if errors.As(err, &ke) {
		return err
	}
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return &KexecError{Op: op, Args: args, Errno: errno}
	}
	return fmt.Errorf("%s(%s): %w", op, args, err)
}

// ErrorKinds names the shared kinds for the daemon's error registry; the
// names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"kexec.not_supported":        ErrNotSupported,
		"kexec.not_permitted":        ErrNotPermitted,
		"kexec.signature":            ErrSignature,
		"kexec.busy":                 ErrBusy,
		"kexec.no_memory":            ErrNoMemory,
		"kexec.kexec_load_forbidden": ErrKexecLoadForbidden,
	}
}

func notSupported(call string) error {
	return fmt.Errorf("%s: %w on this system", call, ErrNotSupported)
}
