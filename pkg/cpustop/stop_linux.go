package cpustop

import (
	"fmt"

	"golang.org/x/sys/unix"
)

const hotplugSupported = true

// pinThread restricts the calling thread (the caller has locked its
// goroutine to it) to cpu with sched_setaffinity(2).
func pinThread(cpu int) error {
	var set unix.CPUSet
	set.Zero()
	set.Set(cpu)
	if !set.IsSet(cpu) { // Set ignores CPUs beyond the fixed-size set
		return fmt.Errorf("sched_setaffinity: cpu%d does not fit a unix.CPUSet", cpu)
	}
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity(0, {%d}): %w", cpu, err)
	}
	return nil
}
