package crashhandler

import (
	"errors"
	"fmt"
	"os"
	"syscall"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// kexec_file_load(2) flags (include/uapi/linux/kexec.h).
const (
	kexecFileUnload      = kexecsys.FileUnload
	kexecFileOnCrash     = kexecsys.FileOnCrash
	kexecFileNoInitramfs = kexecsys.FileNoInitramfs
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

// FileLoad implements Loader with kexec_file_load(2) (kexecsys.FileLoad).
func (KexecFileLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return kexecsys.FileLoad(kernel, initrd, cmdline, flags)
}

// classifyLoadError adds the sentinels a caller acts on to an error from
// Loader.FileLoad, keeping the original (with its errno) in the chain: the
// shared kinds of kexecsys.Kinds (a *KexecError carries them already; a
// bare errno from another Loader gets them here), and what the errno means
// for a crash image: no room in the reservation (EADDRNOTAVAIL, ENOMEM)
// is ErrReservationTooSmall, an image no kexec loader recognises (ENOEXEC)
// is ErrInvalidImage.
func classifyLoadError(err error) error {
	var ke *kexecsys.KexecError
	var errno syscall.Errno
	if !errors.As(err, &errno) {
		if errors.Is(err, ErrNotSupported) {
			return fmt.Errorf("kexec_file_load is not available here: %w", err)
		}
		return err
	}
	if !errors.As(err, &ke) {
		if kinds := kexecsys.Kinds(kexecsys.OpFileLoad, errno); len(kinds) > 0 {
			hint := kexecsys.Hint(kexecsys.OpFileLoad, errno)
			err = fmt.Errorf("%w (%s): %w", errors.Join(kinds...), hint, err)
		}
	}
	switch errno {
	case syscall.EADDRNOTAVAIL, syscall.ENOMEM:
		return fmt.Errorf("%w: the kernel found no room for the image's segments in the reservation: %w", ErrReservationTooSmall, err)
	case syscall.ENOEXEC:
		return fmt.Errorf("%w: the kernel did not recognise the kernel image: %w", ErrInvalidImage, err)
	}
	return err
}
