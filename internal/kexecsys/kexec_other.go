//go:build !linux

package kexecsys

import (
	"fmt"
	"os"
)

// kexec_file_load(2) and kexec_load(2) flags, with their Linux values.
const (
	FileUnload      = 0x1
	FileOnCrash     = 0x2
	FileNoInitramfs = 0x4
	LoadOnCrash     = 0x1
)

// FileLoad returns ErrNotSupported: kexec_file_load is Linux-only.
func FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	return notSupported(OpFileLoad)
}

// FileLoadFd returns ErrNotSupported: kexec_file_load is Linux-only.
func FileLoadFd(kernelFd, initrdFd int, cmdline string, flags int) error {
	return notSupported(OpFileLoad)
}

// Segment is one piece of a kexec_load image.
type Segment struct {
	Buf  []byte
	Phys uint64
	Size uint64
}

// Load returns ErrNotSupported: kexec_load is Linux-only.
func Load(entry uint64, segments []Segment, flags uint64) error {
	return notSupported(OpLoad)
}

// Sync returns ErrNotSupported.
func Sync() error { return notSupported("sync") }

// Reboot returns ErrNotSupported.
func Reboot(kexec bool) error { return notSupported(OpReboot) }

// SealAll has no meaning outside Linux.
const SealAll = 0

// MemfdCreate returns ErrNotSupported: memfd_create is Linux-only.
func MemfdCreate(name string) (*os.File, error) {
	return nil, notSupported(fmt.Sprintf("memfd_create(%q)", name))
}

// Seal returns ErrNotSupported: only Linux has file seals.
func Seal(f *os.File) error { return notSupported("fcntl(F_ADD_SEALS)") }

// Seals returns ErrNotSupported.
func Seals(f *os.File) (int, error) { return 0, notSupported("fcntl(F_GET_SEALS)") }

// CopyFileRange returns ErrNotSupported: the caller falls back to read and
// write.
func CopyFileRange(dst *os.File, dstOff int64, src *os.File, n int64) (int64, error) {
	return 0, notSupported("copy_file_range")
}
