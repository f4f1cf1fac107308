//go:build !linux

package agent

// lowPriority does nothing where thread priorities are not set per thread.
func lowPriority() error { return nil }
