//go:build !linux

package cli

import "io"

// drain is a no-op where fastreboot cannot reboot anyway.
func drain(io.Writer) {}
