package memmap

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// qemuE820Map is /sys/firmware/memmap of a QEMU q35 guest with 4 GiB.
var qemuE820Map = Map{
	{Start: 0, End: 0x9fbff, Type: TypeRAM},
	{Start: 0x9fc00, End: 0x9ffff, Type: TypeReserved},
	{Start: 0xf0000, End: 0xfffff, Type: TypeReserved},
	{Start: 0x100000, End: 0x7ffdffff, Type: TypeRAM},
	{Start: 0x7ffe0000, End: 0x7fffffff, Type: TypeReserved},
	{Start: 0xb0000000, End: 0xbfffffff, Type: TypeReserved},
	{Start: 0x100000000, End: 0x17fffffff, Type: TypeRAM},
}

func TestE820Table(t *testing.T) {
	mm := append(Map{
		{Start: 0x180000000, End: 0x1bfffffff, Type: TypeRAM}, // adjacent to the last RAM: merged
		{Start: 0x200000000, End: 0x2000fffff, Type: TypePRAM},
		{Start: 0x200100000, End: 0x2001fffff, Type: "Something new"},
		{Start: 0x200200000, End: 0x2002fffff, Type: TypeNVS},
		{Start: 0x200300000, End: 0x2003fffff, Type: TypeACPI},
	}, qemuE820Map...)
	got, err := E820Table(mm)
	if err != nil {
		t.Fatal(err)
	}
	want := []E820Entry{
		{0, 0x9fc00, E820RAM},
		{0x9fc00, 0x400, E820Reserved},
		{0xf0000, 0x10000, E820Reserved},
		{0x100000, 0x7fee0000, E820RAM},
		{0x7ffe0000, 0x20000, E820Reserved},
		{0xb0000000, 0x10000000, E820Reserved},
		{0x100000000, 0xc0000000, E820RAM},
		{0x200000000, 0x100000, E820PRAM},
		{0x200100000, 0x100000, E820Reserved},
		{0x200200000, 0x100000, E820NVS},
		{0x200300000, 0x100000, E820ACPI},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("E820Table (-want +got):\n%s", diff)
	}

	var many Map
	for i := uint64(0); i < 130; i++ {
		typ := TypeRAM
		if i%2 == 1 {
			typ = TypeReserved
		}
		many = append(many, Entry{Start: i << 20, End: i<<20 | 0xfffff, Type: typ})
	}
	if _, err := E820Table(many); err == nil || !strings.Contains(err.Error(), "130 ranges") {
		t.Errorf("130 ranges: err = %v, want a refusal naming the count", err)
	}
}
