//go:build unix

package crashhandler

import "syscall"

// oNoFollow is O_NOFOLLOW on the systems that have it.
const oNoFollow = syscall.O_NOFOLLOW
