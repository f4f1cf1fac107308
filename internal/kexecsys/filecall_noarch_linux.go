//go:build linux && !(amd64 || arm || arm64 || loong64 || ppc || ppc64 || ppc64le || riscv64 || s390x)

package kexecsys

import "golang.org/x/sys/unix"

// kexecFileLoad fails with ENOSYS: this architecture has no kexec_file_load.
func kexecFileLoad(kernelFd, initrdFd int, cmdline string, flags int) error {
	return unix.ENOSYS
}
