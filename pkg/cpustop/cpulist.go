package cpustop

import (
	"fmt"
	"math/bits"
	"slices"
	"strconv"
	"strings"
)

// MaxCPUs bounds the CPU ids ParseCPUList accepts. It is well above the
// NR_CPUS limits we know of (x86 MAXSMP: 8192), and keeps a corrupt list
// such as "0-4000000000" from allocating gigabytes.
const MaxCPUs = 1 << 16

// ParseCPUList parses the kernel's CPU range-list format, as found in
// /sys/devices/system/cpu/{possible,present,online}: comma-separated ids or
// inclusive ranges, e.g. "0-3,5\n". Surrounding white space is ignored; an
// empty list (the kernel writes "\n" for no CPUs) gives an empty, non-nil
// slice. The result is sorted and free of duplicates.
func ParseCPUList(s string) ([]int, error) {
	s = strings.TrimSpace(s)
	cpus := []int{}
	if s == "" {
		return cpus, nil
	}
	// A bitmap, not a map: "0-65535" repeated must cost little.
	var set []uint64
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := parseCPUID(lo)
		if err != nil {
			return nil, fmt.Errorf("cpustop: CPU list %q: %w", s, err)
		}
		last := first
		if isRange {
			if last, err = parseCPUID(hi); err != nil {
				return nil, fmt.Errorf("cpustop: CPU list %q: %w", s, err)
			}
			if last < first {
				return nil, fmt.Errorf("cpustop: CPU list %q: range %q runs backwards", s, part)
			}
		}
		if need := last/64 + 1; need > len(set) {
			set = append(set, make([]uint64, need-len(set))...)
		}
		for cpu := first; cpu <= last; cpu++ {
			set[cpu/64] |= 1 << (cpu % 64)
		}
	}
	for i, w := range set {
		for ; w != 0; w &= w - 1 {
			cpus = append(cpus, i*64+bits.TrailingZeros64(w))
		}
	}
	return cpus, nil
}

func parseCPUID(s string) (int, error) {
	// strconv.Atoi would accept "+3"; the kernel never writes a sign.
	if s == "" || s[0] < '0' || s[0] > '9' {
		return 0, fmt.Errorf("bad CPU id %q", s)
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("bad CPU id %q", s)
	}
	if n >= MaxCPUs {
		return 0, fmt.Errorf("CPU id %d not below %d", n, MaxCPUs)
	}
	return n, nil
}

// FormatCPUList writes cpus in the kernel's range-list format ("0-3,5"),
// the inverse of ParseCPUList. The input need not be sorted; duplicates are
// dropped.
func FormatCPUList(cpus []int) string {
	sorted := slices.Clone(cpus)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	var b strings.Builder
	for i := 0; i < len(sorted); {
		j := i
		for j+1 < len(sorted) && sorted[j+1] == sorted[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(sorted[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(sorted[j]))
		}
		i = j + 1
	}
	return b.String()
}
