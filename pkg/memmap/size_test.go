package memmap

import "testing"

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		n    uint64
		rest string
		err  bool
	}{
		{"4G", 4 << 30, "", false},
		{"64m$0x7000000", 64 << 20, "$0x7000000", false},
		{"0x1000", 0x1000, "", false},
		{"0x10k", 0x10 << 10, "", false},
		{"010", 8, "", false},
		{"0", 0, "", false},
		{"1e", 1 << 60, "", false},
		{"16E", 0, "16E", true}, // overflows
		{"$1", 0, "$1", true},
		{"", 0, "", true},
	} {
		n, rest, ok := ParseSize(tc.in)
		if n != tc.n || rest != tc.rest || ok == tc.err {
			t.Errorf("ParseSize(%q) = %d, %q, %v; want %d, %q, ok %v", tc.in, n, rest, ok, tc.n, tc.rest, !tc.err)
		}
	}
}
