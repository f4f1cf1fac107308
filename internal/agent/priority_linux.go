package agent

import (
	"fmt"
	"runtime"

	"golang.org/x/sys/unix"
)

// backgroundNice is the nice value of background work (the decompressed
// kernel's derivation right after boot, when production services start).
const backgroundNice = 19

// lowPriority locks the calling goroutine to its OS thread and lowers that
// thread's priority to backgroundNice. The goroutine must not unlock the
// thread: when it returns, the Go runtime ends the locked thread instead of
// handing the lowered priority to other goroutines.
func lowPriority() error {
	runtime.LockOSThread()
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), backgroundNice); err != nil {
		return fmt.Errorf("setpriority(thread %d, %d): %w", unix.Gettid(), backgroundNice, err)
	}
	return nil
}
