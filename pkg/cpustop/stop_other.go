//go:build !linux

package cpustop

import "fmt"

const hotplugSupported = false

func pinThread(cpu int) error {
	return fmt.Errorf("cpustop: pin to cpu%d (sched_setaffinity): %w on this system", cpu, ErrNotSupported)
}
