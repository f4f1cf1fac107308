package keptmem

import (
	"errors"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

func TestCheckPlacement(t *testing.T) {
	fw := memmap.Map{
		{Start: 0, End: 0x9fbff, Type: memmap.TypeRAM},
		{Start: 0x100000, End: 0x3fffffff, Type: memmap.TypeRAM},
		{Start: 0x40000000, End: 0x7ffdffff, Type: memmap.TypeRAM}, // adjacent: one range
		{Start: 0x7ffe0000, End: 0x7fffffff, Type: memmap.TypeNVS},
	}
	avoid := []memmap.Avoided{
		KernelAvoid(0x1000000, 0x3c00000),
		{Range: memmap.Range{Start: 0x30000000, End: 0x38000000}, Why: "crash kernel reservation (/proc/iomem)"},
	}
	for _, tc := range []struct {
		r    Region
		want string // "" fits
	}{
		{Region{Start: 0x3fe00000, Size: 4 << 20}, ""}, // across two adjacent RAM entries
		{Region{Start: 0x7be00000, Size: 64 << 20}, ""},
		{Region{Start: 0x7fe00000, Size: 4 << 20}, "covers ACPI Non-volatile Storage memory 0x7ffe0000-0x80000000"},
		{Region{Start: 0x80000000, Size: 2 << 20}, "0x80000000-0x80200000 is not RAM"},
		{Region{Start: 0x30000000, Size: 2 << 20}, "overlaps 0x30000000-0x38000000: crash kernel reservation"},
		{Region{Start: 0x4800000, Size: 2 << 20}, "overlaps 0x0-0x4c00000: low memory and the kernel's load range without KASLR (pref_address 0x1000000, init_size 0x3c00000)"},
		{Region{Start: 0x4c00000, Size: 2 << 20}, ""}, // just above it
		{Region{}, "an empty region"},
	} {
		err := CheckPlacement(tc.r, fw, avoid)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("CheckPlacement(%s) = %v, want nil", tc.r, err)
		case tc.want != "" && (!errors.Is(err, ErrOverlap) || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("CheckPlacement(%s) = %v, want ErrOverlap saying %q", tc.r, err, tc.want)
		}
	}
}

// TestKernelAvoid: the kernel's load range starts at pref_address, never
// below 16 MiB (where a kernel loaded lower moves itself), and ends a
// page-rounded init_size later.
func TestKernelAvoid(t *testing.T) {
	for _, tc := range []struct {
		pref    uint64
		init    uint32
		wantEnd uint64
	}{
		{0x1000000, 0x3c2a000, 0x4c2a000},
		{0, 0x1001, 0x1002000},
		{0x2000000, 0x1000000, 0x3000000},
	} {
		if got := KernelAvoid(tc.pref, tc.init); got.Start != 0 || got.End != tc.wantEnd {
			t.Errorf("KernelAvoid(%#x, %#x) = %v, want 0x0-%#x", tc.pref, tc.init, got.Range, tc.wantEnd)
		}
	}
}

// TestPlanPassesCheck: a region Plan chooses passes CheckPlacement with
// the same ranges avoided.
func TestPlanPassesCheck(t *testing.T) {
	fw := memmap.Map{
		{Start: 0x100000, End: 0x7ffdffff, Type: memmap.TypeRAM},
		{Start: 0x7ffe0000, End: 0x7fffffff, Type: memmap.TypeReserved},
	}
	avoid := []memmap.Avoided{KernelAvoid(0x1000000, 0x3c00000), {Range: memmap.Range{Start: 0x70000000, End: 0x80000000}, Why: "crash kernel"}}
	var ranges []memmap.Range
	for _, a := range avoid {
		ranges = append(ranges, a.Range)
	}
	for _, size := range []uint64{2 << 20, 64 << 20, 1 << 30} {
		r, err := Plan(fw, size, ranges)
		if err != nil {
			t.Fatal(err)
		}
		if err := CheckPlacement(r, fw, avoid); err != nil {
			t.Errorf("Plan(%d) = %s, which CheckPlacement refuses: %v", size, r, err)
		}
	}
}
