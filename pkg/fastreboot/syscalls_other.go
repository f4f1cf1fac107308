//go:build !linux

package fastreboot

import (
	"errors"
	"fmt"
	"os"
)

// FileLoad returns ErrNotSupported: kexec_file_load is Linux-only.
func (KexecLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return fmt.Errorf("kexec_file_load: %w on this system", ErrNotSupported)
}

// ProbeKexecFileLoad returns ErrNotSupported: kexec_file_load is Linux-only.
func ProbeKexecFileLoad() error {
	return fmt.Errorf("kexec_file_load: %w on this system", ErrNotSupported)
}

// Sync returns ErrNotSupported.
func (SyscallRebooter) Sync() error { return fmt.Errorf("sync: %w on this system", ErrNotSupported) }

// Reboot returns ErrNotSupported.
func (SyscallRebooter) Reboot(cmd RebootCmd) error {
	return fmt.Errorf("reboot(%v): %w on this system", cmd, ErrNotSupported)
}

// newImageFile creates an unlinked temporary file: without memfd_create the
// initrd is assembled in the temporary directory's file system.
func newImageFile(name string) (*os.File, error) {
	f, err := os.CreateTemp("", "fastreboot-initrd-*")
	if err != nil {
		return nil, fmt.Errorf("temporary file for %s: %w", name, err)
	}
	if err := os.Remove(f.Name()); err != nil {
		f.Close()
		return nil, fmt.Errorf("temporary file for %s: %w", name, err)
	}
	return f, nil
}

// sealImage does nothing: only Linux has file seals.
func sealImage(*os.File) error { return nil }

var errNoFastCopy = errors.New("copy_file_range not usable")

// copyFileRange is not available: the caller falls back to pread/pwrite.
func copyFileRange(dst *os.File, dstOff int64, src *os.File, n int64) (int64, error) {
	return 0, errNoFastCopy
}
