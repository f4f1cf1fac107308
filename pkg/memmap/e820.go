package memmap

import (
	"cmp"
	"errors"
	"fmt"
	"slices"
)

// E820Entry is one entry of the e820 table in an x86 kernel's boot
// parameters (struct boot_e820_entry: addr, size, type; 20 bytes packed).
type E820Entry struct {
	Addr, Size uint64
	Type       uint32
}

// E820MaxZeroPage is how many entries the zero page's e820 table holds
// (E820_MAX_ENTRIES_ZEROPAGE); more would need SETUP_E820_EXT setup data.
const E820MaxZeroPage = 128

// E820Table turns the firmware map into the e820 table of the next kernel,
// sorted, adjacent ranges of one type merged. It refuses a range that ends
// before it starts, an empty map and one that needs more than
// E820MaxZeroPage entries.
func E820Table(fw Map) ([]E820Entry, error) {
	rs := slices.Clone(fw)
	slices.SortStableFunc(rs, func(a, b Entry) int { return cmp.Compare(a.Start, b.Start) })
	var out []E820Entry
	for _, r := range rs {
		if r.End < r.Start {
			return nil, fmt.Errorf("memory map range %#x-%#x ends before it starts", r.Start, r.End)
		}
		e := E820Entry{Addr: r.Start, Size: r.End - r.Start + 1, Type: E820Type(r.Type)}
		if n := len(out); n > 0 && out[n-1].Type == e.Type && out[n-1].Addr+out[n-1].Size == e.Addr {
			out[n-1].Size += e.Size
			continue
		}
		out = append(out, e)
	}
	if len(out) == 0 {
		return nil, errors.New("empty memory map")
	}
	if len(out) > E820MaxZeroPage {
		return nil, fmt.Errorf("memory map has %d ranges, the boot parameters hold %d (SETUP_E820_EXT is not implemented)", len(out), E820MaxZeroPage)
	}
	return out, nil
}
