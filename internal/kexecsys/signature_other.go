//go:build !linux

package kexecsys

import "syscall"

func isSignatureErrno(syscall.Errno) bool { return false }
