package cpustop

import (
	"bufio"
	"fmt"
	"io"
	"strconv"
	"strings"
)

// cpuInfo is what /proc/cpuinfo says about one processor. The kernel lists
// only online CPUs there (arch/x86/kernel/cpu/proc.c c_start walks
// cpu_online_mask), so offline CPUs have no entry.
type cpuInfo struct {
	Processor int
	// APICID is the "apicid" field, InitialAPICID the "initial apicid"
	// field (CPUID leaf 0xb/0x1f, the full x2APIC id); -1 when absent, as
	// on every architecture but x86.
	APICID        int
	InitialAPICID int
}

// parseCPUInfo reads /proc/cpuinfo. It keys on the "processor" lines, which
// start a block on x86, arm64, riscv and powerpc; the lines it does not know
// are skipped, so other architectures give entries without APIC ids rather
// than errors. A malformed number in a field it does know is an error.
func parseCPUInfo(r io.Reader) ([]cpuInfo, error) {
	var (
		out  []cpuInfo
		cur  *cpuInfo
		seen = make(map[int]bool)
		line int
	)
	sc := bufio.NewScanner(r)
	// The flags line of a modern x86 CPU is about 1.5 KB; leave room.
	sc.Buffer(make([]byte, 0, 64*1024), 1024*1024)
	for sc.Scan() {
		line++
		key, val, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		switch key {
		case "processor":
			n, err := parseCPUInfoInt(val, MaxCPUs)
			if err != nil {
				return nil, fmt.Errorf("line %d: processor: %w", line, err)
			}
			if seen[n] {
				return nil, fmt.Errorf("line %d: processor %d listed twice", line, n)
			}
			seen[n] = true
			out = append(out, cpuInfo{Processor: n, APICID: -1, InitialAPICID: -1})
			cur = &out[len(out)-1]
		case "apicid", "initial apicid":
			if cur == nil {
				return nil, fmt.Errorf("line %d: %s before any processor line", line, key)
			}
			// x2APIC ids are 32 bits; real ones stay far below 2^31, which
			// also keeps int safe on 32-bit builds.
			n, err := parseCPUInfoInt(val, 1<<31)
			if err != nil {
				return nil, fmt.Errorf("line %d: %s: %w", line, key, err)
			}
			if key == "apicid" {
				cur.APICID = n
			} else {
				cur.InitialAPICID = n
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

func parseCPUInfoInt(s string, limit int64) (int, error) {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n >= limit {
		return 0, fmt.Errorf("bad value %q", s)
	}
	return int(n), nil
}
