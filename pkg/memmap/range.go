// Package memmap reads and reasons about physical memory: the firmware
// memory map (/sys/firmware/memmap), the kernel's resource tree
// (/proc/iomem), e820 types, physical address ranges and the kernel's
// memparse sizes. The update path places kexec segments with it and the
// crash path sizes and places the crash kernel and the ramoops region.
//
// Every read takes a root directory ("" or "/" for the running system), so
// tests read fake trees.
//
// u-root's pkg/boot/kexec has a memory map (MemoryMapFromSysfsMemmap,
// MemoryMapFromIOMem, kexec.Range) that this package does not use: its
// readers take fixed paths (no root to test on), merge adjacent ranges of
// one type (the crash path keeps the map as sysfs reports it), map unknown
// types such as "Soft Reserved" or "Persistent Memory" to Reserved and log
// them, flatten /proc/iomem's nesting (the "Crash kernel" reservation
// nests inside System RAM, and "kept by the running kernel" means a
// top-level resource), and its Range holds uintptr addresses, which are 32
// bits on 32-bit builds.
package memmap

import (
	"cmp"
	"fmt"
	"slices"
)

// Range is the physical address range [Start, End).
type Range struct {
	Start uint64 `json:"start"`
	End   uint64 `json:"end"`
}

// RangeInclusive returns the range from start to last, both inclusive, as
// sysfs and /proc/iomem print them.
func RangeInclusive(start, last uint64) Range { return Range{start, last + 1} }

// Size is End-Start, 0 for an empty range.
func (r Range) Size() uint64 {
	if r.Empty() {
		return 0
	}
	return r.End - r.Start
}

// Empty reports whether r holds no address.
func (r Range) Empty() bool { return r.End <= r.Start }

// Contains reports whether addr is in r.
func (r Range) Contains(addr uint64) bool { return r.Start <= addr && addr < r.End }

// Covers reports whether every address of o is in r (an empty o is covered
// by any r).
func (r Range) Covers(o Range) bool { return o.Empty() || (r.Start <= o.Start && o.End <= r.End) }

// Overlaps reports whether r and o share an address.
func (r Range) Overlaps(o Range) bool { return !r.Intersect(o).Empty() }

// Intersect returns the addresses in both r and o (empty if none).
func (r Range) Intersect(o Range) Range { return Range{max(r.Start, o.Start), min(r.End, o.End)} }

func (r Range) String() string { return fmt.Sprintf("%#x-%#x", r.Start, r.End) }

// Compare orders ranges by start address, then end; use it to sort
// anything that holds a Range.
func Compare(a, b Range) int {
	if c := cmp.Compare(a.Start, b.Start); c != 0 {
		return c
	}
	return cmp.Compare(a.End, b.End)
}

// Sort sorts rs by address (Compare).
func Sort(rs []Range) { slices.SortFunc(rs, Compare) }

// Merge returns rs sorted, with ranges that overlap or touch joined and
// empty ranges dropped (the firmware map may list adjacent RAM ranges). rs
// is not modified.
func Merge(rs []Range) []Range {
	rs = slices.Clone(rs)
	Sort(rs)
	var out []Range
	for _, r := range rs {
		if r.Empty() {
			continue
		}
		if n := len(out); n > 0 && r.Start <= out[n-1].End {
			out[n-1].End = max(out[n-1].End, r.End)
			continue
		}
		out = append(out, r)
	}
	return out
}

// Subtract returns the parts of rs outside every range of cut, sorted by
// address. rs is not modified.
func Subtract(rs []Range, cut ...Range) []Range {
	out := slices.Clone(rs)
	for _, c := range cut {
		var next []Range
		for _, r := range out {
			if !r.Overlaps(c) {
				next = append(next, r)
				continue
			}
			if lo := (Range{r.Start, c.Start}); !lo.Empty() {
				next = append(next, lo)
			}
			if hi := (Range{c.End, r.End}); !hi.Empty() {
				next = append(next, hi)
			}
		}
		out = next
	}
	Sort(out)
	return out
}

// IntersectAll returns the parts of rs inside any range of with, in the
// order of rs.
func IntersectAll(rs, with []Range) []Range {
	var out []Range
	for _, r := range rs {
		for _, w := range with {
			if i := r.Intersect(w); !i.Empty() {
				out = append(out, i)
			}
		}
	}
	return out
}
