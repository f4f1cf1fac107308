//go:build linux && (amd64 || arm || arm64 || loong64 || ppc || ppc64 || ppc64le || riscv64 || s390x)

package crashhandler

import (
	"errors"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

// The flags above must be the kernel's.
var _ = [1]struct{}{}[(kexecFileUnload^unix.KEXEC_FILE_UNLOAD)|
	(kexecFileOnCrash^unix.KEXEC_FILE_ON_CRASH)|
	(kexecFileNoInitramfs^unix.KEXEC_FILE_NO_INITRAMFS)]

func kexecFileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	kfd, ifd := fdOf(kernel), fdOf(initrd)
	if err := unix.KexecFileLoad(kfd, ifd, cmdline, flags); err != nil {
		return fmt.Errorf("SYS_kexec_file_load(%d, %d, %q, %#x) = %w", kfd, ifd, cmdline, flags, err)
	}
	return nil
}

// isSignatureError reports the errnos kimage_validate_signature passes on
// when a signature is required and does not verify.
func isSignatureError(err error) bool {
	for _, e := range []unix.Errno{unix.EKEYREJECTED, unix.ENOKEY, unix.EBADMSG, unix.ENODATA, unix.ENOPKG} {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}
