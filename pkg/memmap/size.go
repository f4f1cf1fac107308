package memmap

import (
	"fmt"
	"strconv"
)

// maxSize bounds the sizes ParseSize accepts: larger values (or more
// digits than fit in 64 bits) are refused rather than wrapped.
const maxSize = 1<<62 - 1

// ParseSize reads a size or address as the kernel's memparse does
// (lib/cmdline.c: a base prefix 0x or 0 as simple_strtoull, then an
// optional K, M, G, T, P or E suffix), as in crashkernel=, memmap=, mem=
// and ramoops.mem_address= words, and returns it with the rest of s; ok is
// false if s starts with no number or the value is out of range (above
// 2^62).
func ParseSize(s string) (val uint64, rest string, ok bool) {
	base, i := uint64(10), 0
	switch {
	case len(s) > 2 && s[0] == '0' && (s[1] == 'x' || s[1] == 'X') && hexDigit(s[2]) >= 0:
		base, i = 16, 2
	case len(s) > 0 && s[0] == '0':
		base = 8
	}
	start := i
	for ; i < len(s); i++ {
		d := hexDigit(s[i])
		if d < 0 || uint64(d) >= base {
			break
		}
		val = val*base + uint64(d)
	}
	if i == start {
		return 0, s, false
	}
	if i-start > 16 {
		// More than 2^64: refused as if it were no number.
		return 0, s, false
	}
	shift := 0
	if i < len(s) {
		switch s[i] {
		case 'E', 'e':
			shift = 60
		case 'P', 'p':
			shift = 50
		case 'T', 't':
			shift = 40
		case 'G', 'g':
			shift = 30
		case 'M', 'm':
			shift = 20
		case 'K', 'k':
			shift = 10
		}
		if shift > 0 {
			i++
		}
	}
	if val > maxSize>>shift {
		return 0, s, false
	}
	return val << shift, s[i:], true
}

func hexDigit(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// FormatSize formats a size for memparse: the largest K, M, G or T unit
// that divides it, else hex bytes.
func FormatSize(n uint64) string {
	for _, u := range []struct {
		shift  uint
		suffix string
	}{{40, "T"}, {30, "G"}, {20, "M"}, {10, "K"}} {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatUint(n>>u.shift, 10) + u.suffix
		}
	}
	return fmt.Sprintf("%#x", n)
}
