package fastreboot

import (
	"os"

	"golang.org/x/sys/unix"
)

// sealsOf returns the seals of a memfd (F_GET_SEALS).
func sealsOf(f *os.File) (int, error) {
	return unix.FcntlInt(f.Fd(), unix.F_GET_SEALS, 0)
}
