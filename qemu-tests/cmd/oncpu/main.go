// Command oncpu writes to a file from a thread pinned to one CPU, for QEMU
// tests that need something to happen on a given CPU; e.g. a panic on a
// secondary CPU:
//
//	oncpu -cpu 3 /proc/sysrq-trigger c
//
// It pins its thread with sched_setaffinity(2), checks with getcpu(2) that
// it runs there, prints "ONCPU cpu=3 file=/proc/sysrq-trigger" and then
// writes the data in one write(2). A sysrq "c" never returns, and the line
// may never reach a serial console: the panic stops the CPUs before the tty
// layer drains; the panic's own "CPU: 3 ... Comm: oncpu" line says where it
// ran.
package main

import (
	"flag"
	"fmt"
	"os"
)

func main() {
	cpu := flag.Int("cpu", 0, "CPU to run the write on")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: oncpu -cpu N FILE DATA")
		os.Exit(2)
	}
	if err := run(*cpu, flag.Arg(0), flag.Arg(1)); err != nil {
		fmt.Fprintf(os.Stderr, "oncpu: %v\n", err)
		os.Exit(1)
	}
}
