package kexecsys

import (
	"syscall"

	"golang.org/x/sys/unix"
)

func isSignatureErrno(errno syscall.Errno) bool {
	switch errno {
	case unix.EKEYREJECTED, unix.ENOKEY, unix.EBADMSG, unix.ENODATA, unix.ENOPKG, unix.EKEYEXPIRED, unix.EKEYREVOKED:
		return true
	}
	return false
}
