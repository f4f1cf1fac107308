package main

import (
	"fmt"
	"os"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

func run(cpu int, file, data string) error {
	runtime.LockOSThread()
	var set unix.CPUSet
	set.Set(cpu)
	if err := unix.SchedSetaffinity(0, &set); err != nil {
		return fmt.Errorf("sched_setaffinity(cpu %d): %w", cpu, err)
	}
	var now, node uint32
	if _, _, errno := unix.RawSyscall(unix.SYS_GETCPU, uintptr(unsafe.Pointer(&now)), uintptr(unsafe.Pointer(&node)), 0); errno != 0 {
		return fmt.Errorf("getcpu: %w", errno)
	}
	if int(now) != cpu {
		return fmt.Errorf("pinned to cpu %d but running on cpu %d", cpu, now)
	}
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	fmt.Printf("ONCPU cpu=%d file=%s\n", now, file)
	if _, err := f.Write([]byte(data)); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
