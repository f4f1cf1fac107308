package kexecsys

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The raw path is tested through its checks only: a test that called
// kexec_load as root would load an image into the machine running it.

func TestPageAligned(t *testing.T) {
	for _, tt := range []struct {
		name string
		segs []Segment
		want bool
	}{
		{"aligned, sizes not whole pages", []Segment{{Buf: make([]byte, 10), Phys: 0x1000000, Size: 0x3d00000 + 123}, {Buf: []byte{1}, Phys: 0x2000, Size: 1}}, true},
		{"start inside a page", []Segment{{Buf: make([]byte, 10), Phys: 0x1000010, Size: 10}}, false},
		{"buffer larger than the segment", []Segment{{Buf: make([]byte, 10), Phys: 0x1000, Size: 4}}, false},
		{"no segments", nil, true},
	} {
		if got := pageAligned(tt.segs); got != tt.want {
			t.Errorf("%s: pageAligned = %t, want %t", tt.name, got, tt.want)
		}
	}
}

func TestCheckDisjoint(t *testing.T) {
	segs := []Segment{
		{Buf: []byte("zero page"), Phys: 0x5000, Size: 9},
		{Buf: []byte("kernel"), Phys: 0x1000000, Size: 0x3c12345},
		{Buf: nil, Phys: 0x1000, Size: 0x1000},
	}
	got, err := checkDisjoint(0x1000200, segs)
	if err != nil {
		t.Fatal(err)
	}
	type r struct{ Phys, Size uint64 }
	var rs []r
	for _, s := range got {
		rs = append(rs, r{s.Phys, s.Size})
	}
	want := []r{{0x1000, 0x1000}, {0x5000, 0x1000}, {0x1000000, 0x3c13000}}
	if diff := cmp.Diff(want, rs); diff != "" {
		t.Errorf("checkDisjoint ranges (-want +got):\n%s", diff)
	}
	if segs[1].Size != 0x3c12345 {
		t.Errorf("checkDisjoint changed its input: size %#x", segs[1].Size)
	}

	// Sharing a page once rounded up.
	if _, err := checkDisjoint(0x1000, []Segment{{Phys: 0x1000, Size: 0x1001}, {Phys: 0x2000, Size: 1}}); err == nil || !strings.Contains(err.Error(), "overlap") {
		t.Errorf("overlapping segments: err = %v, want an overlap", err)
	}
	if _, err := checkDisjoint(0x9000, []Segment{{Phys: 0x1000, Size: 0x1000}}); err == nil || !strings.Contains(err.Error(), "entry 0x9000") {
		t.Errorf("entry outside: err = %v, want it named", err)
	}
}
