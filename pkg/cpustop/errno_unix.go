//go:build unix

package cpustop

import (
	"errors"

	"golang.org/x/sys/unix"
)

// errnoName returns the symbolic name ("EBUSY") of the errno inside err.
func errnoName(err error) string {
	var errno unix.Errno
	if errors.As(err, &errno) {
		return unix.ErrnoName(errno)
	}
	return ""
}

// oNoFollow is O_NOFOLLOW, which systems outside unix do not have.
const oNoFollow = unix.O_NOFOLLOW
