//go:build !linux

package cpustop

const hotplugSupported = false

func pinThread(int) error { return ErrNotSupported }
