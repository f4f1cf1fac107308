//go:build unix

package cli

import (
	"os"
	"syscall"
)

// lockExclusive takes an exclusive flock(2) on f, waiting for it.
func lockExclusive(f *os.File) error { return syscall.Flock(int(f.Fd()), syscall.LOCK_EX) }
