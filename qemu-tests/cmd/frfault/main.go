// Command frfault provokes, inside a QEMU test guest, the faults the crash
// path tests need that the shell cannot provoke by itself:
//
//	frfault hang DIR   freeze the file system of DIR (FIFREEZE) and write to
//	                   it: the writer sleeps uninterruptibly, so the hung task
//	                   detector fires (with kernel.hung_task_panic, a panic)
//	frfault orphan     SIGKILL every process but init and itself for 5 s, then exit:
//	                   u-root's init then finds no child left and exits, and
//	                   the kernel panics ("Attempted to kill init!")
//	frfault midwrite DEV CMD...
//	                   run CMD (a kept stage) and panic the kernel
//	                   (sysrq c) as soon as DEV's first bytes turn from a
//	                   kept region's header magic to zeros (that page
//	                   synced to the device first): keptmem.Write has
//	                   invalidated the header and is writing the
//	                   modules, so the crash tears the write
package main

import (
	"fmt"
	"os"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: frfault hang DIR | frfault orphan | frfault midwrite DEV CMD...")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "hang":
		if len(os.Args) != 3 {
			err = fmt.Errorf("hang needs a directory")
			break
		}
		err = hang(os.Args[2])
	case "orphan":
		err = orphan()
	case "midwrite":
		if len(os.Args) < 4 {
			err = fmt.Errorf("midwrite needs a device and a command")
			break
		}
		err = midwrite(os.Args[2], os.Args[3:])
	default:
		err = fmt.Errorf("unknown fault %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "frfault: %v\n", err)
		os.Exit(1)
	}
}
