package cpustop

import (
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseCPUList(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    []int
		wantErr bool
	}{
		{in: "", want: []int{}},
		{in: "\n", want: []int{}},
		{in: "0\n", want: []int{0}},
		{in: "0-3\n", want: []int{0, 1, 2, 3}},
		{in: "0-3,5", want: []int{0, 1, 2, 3, 5}},
		{in: "0,2,4-5,7", want: []int{0, 2, 4, 5, 7}},
		{in: "  1-1 ", want: []int{1}},
		{in: "5,0-1", want: []int{0, 1, 5}},      // unsorted input is sorted
		{in: "0-2,1-3", want: []int{0, 1, 2, 3}}, // overlaps merge
		{in: "65535", want: []int{65535}},
		{in: "65536", wantErr: true},
		{in: "0-4294967295", wantErr: true},
		{in: "3-1", wantErr: true},
		{in: "-1", wantErr: true},
		{in: "+1", wantErr: true},
		{in: "1-", wantErr: true},
		{in: "0,,1", wantErr: true},
		{in: "0,", wantErr: true},
		{in: "a", wantErr: true},
		{in: "0-1-2", wantErr: true},
		{in: "0 - 1", wantErr: true},
		{in: "0x1", wantErr: true},
	} {
		got, err := ParseCPUList(tc.in)
		if tc.wantErr {
			if err == nil {
				t.Errorf("ParseCPUList(%q) = %v, want error", tc.in, got)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseCPUList(%q): %v", tc.in, err)
			continue
		}
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("ParseCPUList(%q) (-want +got):\n%s", tc.in, diff)
		}
	}
}

func TestFormatCPUList(t *testing.T) {
	for _, tc := range []struct {
		in   []int
		want string
	}{
		{nil, ""},
		{[]int{0}, "0"},
		{[]int{0, 1, 2, 3}, "0-3"},
		{[]int{5, 3, 2, 1, 0, 5}, "0-3,5"},
		{[]int{0, 2, 4, 5, 7}, "0,2,4-5,7"},
	} {
		if got := FormatCPUList(tc.in); got != tc.want {
			t.Errorf("FormatCPUList(%v) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func FuzzParseCPUList(f *testing.F) {
	for _, s := range []string{"", "0", "0-3,5\n", "0,2,4-7", "3-1", "65535", "0-65535", "1,,2", "0-1-2"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		cpus, err := ParseCPUList(s)
		if err != nil {
			return
		}
		if !slices.IsSorted(cpus) || len(slices.Compact(slices.Clone(cpus))) != len(cpus) {
			t.Fatalf("ParseCPUList(%q) = %v: not sorted and unique", s, cpus)
		}
		if len(cpus) > 0 && (cpus[0] < 0 || cpus[len(cpus)-1] >= MaxCPUs) {
			t.Fatalf("ParseCPUList(%q) = %v: out of range", s, cpus)
		}
		again, err := ParseCPUList(FormatCPUList(cpus))
		if err != nil {
			t.Fatalf("ParseCPUList(FormatCPUList(%v)): %v", cpus, err)
		}
		if !slices.Equal(cpus, again) {
			t.Fatalf("round trip of %q: %v != %v", s, cpus, again)
		}
	})
}
