package crashhandler

import (
	"errors"
	"fmt"
	"os"
	"syscall"
)

// kexec_file_load(2) flags (include/uapi/linux/kexec.h); the Linux build
// checks them against golang.org/x/sys/unix.
const (
	kexecFileUnload      = 0x1
	kexecFileOnCrash     = 0x2
	kexecFileNoInitramfs = 0x4
)

// Loader performs kexec_file_load(2). It has the shape of
// fastreboot.Loader, so one implementation serves both packages; tests
// inject a fake.
type Loader interface {
	// FileLoad calls kexec_file_load(kernel, initrd, cmdline, flags). A nil
	// file is passed as fd -1 (the kernel ignores the fds for an unload and
	// the initrd fd with KEXEC_FILE_NO_INITRAMFS).
	FileLoad(kernel, initrd *os.File, cmdline string, flags int) error
}

// KexecFileLoader is the real Loader: the kexec_file_load(2) system call.
// It works on Linux (amd64, arm64, riscv64, ppc64, s390x, loong64, arm);
// elsewhere it returns an error wrapping ErrNotSupported.
type KexecFileLoader struct{}

// FileLoad implements Loader with kexec_file_load(2).
func (KexecFileLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return kexecFileLoad(kernel, initrd, cmdline, flags)
}

func fdOf(f *os.File) int {
	if f == nil {
		return -1
	}
	return int(f.Fd())
}

// classifyLoadError adds the sentinel a caller acts on to an error from
// Loader.FileLoad, keeping the original (with its errno) in the chain.
func classifyLoadError(err error) error {
	var hint error
	switch {
	case errors.Is(err, ErrNotSupported), errors.Is(err, syscall.ENOSYS):
		return fmt.Errorf("%w: kexec_file_load is not available on this kernel: %w", ErrNotSupported, err)
	case errors.Is(err, syscall.EPERM), errors.Is(err, syscall.EACCES):
		hint = fmt.Errorf("%w (needs CAP_SYS_BOOT, i.e. root; also refused when kernel.kexec_load_disabled=1 or, under lockdown/Secure Boot, for a kernel without a trusted signature)", ErrNotPermitted)
	case isSignatureError(err):
		hint = fmt.Errorf("%w: the kernel's signature was rejected (lockdown or KEXEC_SIG_FORCE requires a kernel signed with a trusted key)", ErrNotPermitted)
	case errors.Is(err, syscall.EADDRNOTAVAIL):
		hint = fmt.Errorf("%w: the kernel found no room for the image's segments in the reservation", ErrReservationTooSmall)
	case errors.Is(err, syscall.ENOEXEC):
		hint = fmt.Errorf("%w: the kernel did not recognise the kernel image", ErrInvalidImage)
	case errors.Is(err, syscall.ETXTBSY):
		hint = errors.New("a writable file descriptor to the kernel or initrd is open (seal the memfd and close writable reopens)")
	case errors.Is(err, syscall.EBUSY):
		hint = errors.New("another kexec operation is in progress")
	default:
		return err
	}
	return fmt.Errorf("%w: %w", hint, err)
}
