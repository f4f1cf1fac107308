//go:build !linux

package preserve

import "errors"

var errLoopLinux = errors.New("preserve: loop devices are Linux-only")

// Attach is Linux-only (loop devices).
func Attach(root, dev string, a Area) (string, error) { return "", errLoopLinux }

// SyncLoops is Linux-only (loop devices): elsewhere there is nothing to sync.
func SyncLoops(root, dev string) ([]string, error) { return nil, nil }

// Detach is Linux-only (loop devices).
func Detach(root, dev string, a Area) ([]string, error) { return nil, errLoopLinux }
