//go:build !unix

package cli

import (
	"errors"
	"os"
)

// lockExclusive fails outside unix: there is no flock(2), and nothing to
// preserve across a kexec.
func lockExclusive(*os.File) error { return errors.ErrUnsupported }
