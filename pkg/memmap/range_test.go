package memmap

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestRange(t *testing.T) {
	r := Range{Start: 0x1000, End: 0x2000}
	if r.Size() != 0x1000 || r.Empty() || (Range{Start: 5, End: 5}).Size() != 0 || (Range{Start: 6, End: 5}).Size() != 0 {
		t.Errorf("Size/Empty wrong")
	}
	if !r.Contains(0x1000) || !r.Contains(0x1fff) || r.Contains(0x2000) || r.Contains(0xfff) {
		t.Errorf("Contains: the range is [Start, End)")
	}
	if !r.Covers(Range{Start: 0x1000, End: 0x2000}) || r.Covers(Range{Start: 0x1000, End: 0x2001}) || !r.Covers(Range{}) {
		t.Errorf("Covers wrong")
	}
	if r.Overlaps(Range{Start: 0x2000, End: 0x3000}) || !r.Overlaps(Range{Start: 0x1fff, End: 0x3000}) || r.Overlaps(Range{Start: 0x1800, End: 0x1800}) {
		t.Errorf("Overlaps wrong")
	}
	if got := RangeInclusive(0x100, 0x1ff); got != (Range{Start: 0x100, End: 0x200}) {
		t.Errorf("RangeInclusive = %v", got)
	}
	if got := r.String(); got != "0x1000-0x2000" {
		t.Errorf("String = %q", got)
	}
}

func TestRangeSets(t *testing.T) {
	rs := []Range{{Start: 0x5000, End: 0x6000}, {Start: 0, End: 0x1000}, {Start: 0x1000, End: 0x2000}, {Start: 0x1800, End: 0x3000}, {Start: 9, End: 9}}
	orig := append([]Range(nil), rs...)
	if d := cmp.Diff([]Range{{Start: 0, End: 0x3000}, {Start: 0x5000, End: 0x6000}}, Merge(rs)); d != "" {
		t.Errorf("Merge (-want +got):\n%s", d)
	}
	if d := cmp.Diff(orig, rs); d != "" {
		t.Errorf("Merge modified its input:\n%s", d)
	}
	got := Subtract([]Range{{Start: 0x5000, End: 0x9000}, {Start: 0, End: 0x4000}}, Range{Start: 0x1000, End: 0x2000}, Range{Start: 0x6000, End: 0x10000}, Range{Start: 0x3000, End: 0x3000})
	if d := cmp.Diff([]Range{{Start: 0, End: 0x1000}, {Start: 0x2000, End: 0x4000}, {Start: 0x5000, End: 0x6000}}, got); d != "" {
		t.Errorf("Subtract (-want +got):\n%s", d)
	}
	got = IntersectAll([]Range{{Start: 0, End: 0x4000}}, []Range{{Start: 0x3000, End: 0x8000}, {Start: 0x1000, End: 0x2000}, {Start: 0x4000, End: 0x5000}})
	if d := cmp.Diff([]Range{{Start: 0x3000, End: 0x4000}, {Start: 0x1000, End: 0x2000}}, got); d != "" {
		t.Errorf("IntersectAll (-want +got):\n%s", d)
	}
	Sort(got)
	if d := cmp.Diff([]Range{{Start: 0x1000, End: 0x2000}, {Start: 0x3000, End: 0x4000}}, got); d != "" {
		t.Errorf("Sort (-want +got):\n%s", d)
	}
	if Compare(Range{Start: 1, End: 2}, Range{Start: 1, End: 3}) >= 0 || Compare(Range{Start: 2, End: 3}, Range{Start: 1, End: 9}) <= 0 {
		t.Errorf("Compare: by start, then end")
	}
}
