// Command frworkload is the workload of TestPreserveWorkload, run inside a
// QEMU test guest: a process whose state (pseudo-random bytes of a seed,
// internal/workload) lives in a preserved area, mapped from the kept
// region's /dev/pmemN, and is found again after a fast reboot.
//
//	frworkload cgroup DIR                 mount cgroup2 on /sys/fs/cgroup when
//	                                      nothing is, and make the cgroup DIR
//	frworkload fill DEV OFF SIZE SEED DIR start the workload in cgroup DIR: it
//	                                      maps SIZE bytes of DEV at OFF
//	                                      (MAP_SHARED), fills them, and stays
//	                                      running with the mapping; prints the
//	                                      state's SHA-256 once it is filled
//	frworkload verify DEV OFF SIZE        map the area again, touch every page
//	                                      (the state is back), hash it
//	frworkload file PATH                  read a file into memory (the state
//	                                      rebuilt from storage), hash it
//
// Each prints one line "FRWORKLOAD key=value ..." for the test to read.
package main

import (
	"fmt"
	"os"
	"strconv"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		if len(os.Args) > 1 && os.Args[1] == "serve" {
			// The child of fill: its stdout is the pipe fill reads.
			fmt.Printf("frworkload: serve: %v\n", err)
			os.Exit(1)
		}
		fmt.Fprintf(os.Stderr, "frworkload: %v\n", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: frworkload cgroup|fill|verify|file ...")
	}
	nums := func(ss ...string) ([]int64, error) {
		var out []int64
		for _, s := range ss {
			n, err := strconv.ParseInt(s, 0, 64)
			if err != nil {
				return nil, fmt.Errorf("%q is not a number", s)
			}
			out = append(out, n)
		}
		return out, nil
	}
	switch cmd, rest := args[0], args[1:]; {
	case cmd == "cgroup" && len(rest) == 1:
		return makeCgroup(rest[0])
	case cmd == "fill" && len(rest) == 5:
		n, err := nums(rest[1], rest[2], rest[3])
		if err != nil {
			return err
		}
		return startFill(rest[0], n[0], n[1], uint64(n[2]), rest[4])
	case cmd == "serve" && len(rest) == 5: // the child startFill starts
		n, err := nums(rest[1], rest[2], rest[3])
		if err != nil {
			return err
		}
		return serve(rest[0], n[0], n[1], uint64(n[2]), rest[4])
	case cmd == "verify" && len(rest) == 3:
		n, err := nums(rest[1], rest[2])
		if err != nil {
			return err
		}
		return verify(rest[0], n[0], n[1])
	case cmd == "file" && len(rest) == 1:
		return hashFile(rest[0])
	}
	return fmt.Errorf("bad arguments %q", args)
}
