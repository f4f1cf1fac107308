//go:build !linux

package ttydrain

import "os"

// Drain is a no-op where fastreboot cannot reboot anyway.
func Drain(*os.File) {}
