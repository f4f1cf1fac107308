// Command frvm is the nested virtual machine of TestVMPreserved, run inside
// a QEMU test guest: a QEMU guest (nested TCG) whose RAM is a preserved
// area, reached through a loop device (fastreboot preserve attach), that
// is suspended across the host's fast reboot and resumed with its memory
// intact.
//
// The guest runs no kernel: its firmware (Firmware, 64 KiB) loops
// incrementing the 32-bit counter at guest physical address CounterAddr.
// QEMU (qemu-system-x86_64 with its libraries, copied from the build host
// onto a disk) runs through the copied dynamic loader:
//
//	frvm start QDIR LOOP              start QEMU with LOOP as its RAM
//	                                  (memory-backend-file,share=on), the
//	                                  counter zeroed first; returns once
//	                                  the counter runs, QEMU left running
//	frvm suspend AREA                 migrate with x-ignore-shared (the RAM
//	                                  is not copied) to a unix socket, stop
//	                                  QEMU, and write the migration stream
//	                                  into the preserved area AREA
//	frvm resume QDIR LOOP AREA        read the counter from LOOP (what the
//	                                  region kept), start QEMU with
//	                                  -incoming defer and the same RAM, feed
//	                                  it the stream from AREA, and read
//	                                  the counter once it runs, and again
//	                                  a second later
//
// QDIR holds qemu-system-x86_64, lib/ (its libraries and the dynamic
// loader ld-linux-x86-64.so.2) and modules/ (QEMU's accel-tcg module).
// Each command prints one line "FRVM key=value ..." for the test to read.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintf(os.Stderr, "frvm: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	switch {
	case len(args) == 3 && args[0] == "start":
		return start(args[1], args[2])
	case len(args) == 2 && args[0] == "suspend":
		return suspend(args[1])
	case len(args) == 4 && args[0] == "resume":
		return resume(args[1], args[2], args[3])
	}
	return fmt.Errorf("usage: frvm start QDIR LOOP | suspend AREA | resume QDIR LOOP AREA; got %q", args)
}
