//go:build !linux || !(amd64 || arm || arm64 || loong64 || ppc || ppc64 || ppc64le || riscv64 || s390x)

package crashhandler

import (
	"fmt"
	"os"
)

func kexecFileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return fmt.Errorf("kexec_file_load(%d, %d, %q, %#x): %w on this platform", fdOf(kernel), fdOf(initrd), cmdline, flags, ErrNotSupported)
}

func isSignatureError(error) bool { return false }
