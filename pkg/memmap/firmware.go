package memmap

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
)

// ErrNoFirmwareMap is returned when root has no firmware memory map
// (sys/firmware/memmap is missing or empty: a kernel without
// CONFIG_FIRMWARE_MEMMAP, or not x86).
var ErrNoFirmwareMap = errors.New("no firmware memory map")

// Firmware memory map types as /sys/firmware/memmap/N/type spells them
// (arch/x86/kernel/e820.c, e820_type_to_string). /proc/iomem names its
// top-level resources the same way.
const (
	TypeRAM          = "System RAM"
	TypeACPI         = "ACPI Tables"
	TypeNVS          = "ACPI Non-volatile Storage"
	TypeReserved     = "Reserved"
	TypeUnusable     = "Unusable memory"
	TypePRAM         = "Persistent Memory (legacy)"
	TypePMEM         = "Persistent Memory"
	TypeSoftReserved = "Soft Reserved"
)

// Entry is one entry of the firmware memory map. It keeps sysfs's
// inclusive end, which is also its JSON form in the handoff; Range gives
// the half-open Range.
type Entry struct {
	Start uint64 `json:"start"`
	// End is inclusive, as sysfs prints it.
	End  uint64 `json:"end"`
	Type string `json:"type"`
}

// Size is End-Start+1.
func (e Entry) Size() uint64 { return e.End - e.Start + 1 }

// Range is the entry's addresses as a half-open Range.
func (e Entry) Range() Range { return RangeInclusive(e.Start, e.End) }

// Map is a firmware memory map. It marshals to JSON as a list of entries;
// the handoff carries the map recorded while the system was healthy to
// later generations, which need it on every command line after a crash.
type Map []Entry

// ReadFirmware reads root/sys/firmware/memmap/N/{start,end,type} and
// returns the entries sorted by start, as sysfs reports them (not merged).
// A missing or empty directory is ErrNoFirmwareMap.
//
// Read it on a kernel booted by firmware or with a full memmap=exactmap: in
// a crash kernel, and in every kernel kexec'd after one, this directory
// shows the restricted map kexec passed on (x86 kexec copies
// e820_table_kexec, which memmap= does not change).
func ReadFirmware(root string) (Map, error) {
	dir := filepath.Join(rootDir(root), "sys/firmware/memmap")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNoFirmwareMap, err)
		}
		return nil, fmt.Errorf("reading firmware memory map: %w", err)
	}
	var mm Map
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		p := filepath.Join(dir, e.Name())
		start, err := readHex(filepath.Join(p, "start"))
		if err != nil {
			return nil, err
		}
		end, err := readHex(filepath.Join(p, "end"))
		if err != nil {
			return nil, err
		}
		typ, err := os.ReadFile(filepath.Join(p, "type"))
		if err != nil {
			return nil, fmt.Errorf("reading firmware memory map: %w", err)
		}
		if end < start {
			return nil, fmt.Errorf("firmware memory map entry %s: end %#x before start %#x", p, end, start)
		}
		mm = append(mm, Entry{Start: start, End: end, Type: strings.TrimSpace(string(typ))})
	}
	if len(mm) == 0 {
		return nil, fmt.Errorf("%w: %s has no entries", ErrNoFirmwareMap, dir)
	}
	mm.sort()
	return mm, nil
}

func rootDir(root string) string {
	if root == "" {
		return "/"
	}
	return root
}

// ReadHex reads a sysfs file holding one hexadecimal number, with or
// without 0x (/sys/firmware/memmap/N/start prints "0x%llx", crash_notes
// "%llx").
func ReadHex(path string) (uint64, error) { return readHex(path) }

func readHex(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %q is not a hexadecimal address", path, s)
	}
	return v, nil
}

func (m Map) sort() {
	slices.SortStableFunc(m, func(a, b Entry) int {
		switch {
		case a.Start < b.Start:
			return -1
		case a.Start > b.Start:
			return 1
		}
		return 0
	})
}

// RAMBytes is the total size of the System RAM entries.
func (m Map) RAMBytes() uint64 {
	var n uint64
	for _, e := range m {
		if e.Type == TypeRAM {
			n += e.Size()
		}
	}
	return n
}

// RAM returns the System RAM entries as ranges, in the map's order.
func (m Map) RAM() []Range {
	var out []Range
	for _, e := range m {
		if e.Type == TypeRAM && e.End >= e.Start {
			out = append(out, e.Range())
		}
	}
	return out
}

// memmapSymbol maps a firmware type to the memmap= operator that recreates
// it (arch/x86/kernel/e820.c parse_memmap_one): @ RAM, # ACPI data, $
// reserved, ! legacy persistent memory. ACPI NVS is given as # like
// kexec-tools does for kdump (kexec/arch/i386/crashdump-x86.c); Linux never
// allocates from either type. Other types become reserved.
func memmapSymbol(typ string) byte {
	switch typ {
	case TypeRAM:
		return '@'
	case TypeACPI, TypeNVS:
		return '#'
	case TypePRAM:
		return '!'
	default:
		return '$'
	}
}

// merged returns the entries sorted, with adjacent entries of the same
// memmap= operator joined (fewer words on the command line).
func (m Map) merged() []Entry {
	rs := slices.Clone(m)
	rs.sort()
	var out []Entry
	for _, r := range rs {
		if n := len(out); n > 0 && out[n-1].End+1 == r.Start && memmapSymbol(out[n-1].Type) == memmapSymbol(r.Type) {
			out[n-1].End = r.End
			continue
		}
		out = append(out, r)
	}
	return out
}

// CmdlineWords turns the map into kernel command line words:
// memmap=exactmap first (it empties the table), then one word per range,
// memmap=SIZE@START for RAM, SIZE#START for ACPI data, SIZE$START for
// reserved ranges. The words go to kexec_file_load as they are; only a
// shell or GRUB would need the $ escaped. It returns nil for a map without
// RAM (exactmap without RAM would leave the kernel nothing).
//
// KASLR's decompressor keeps the kernel off only the first 4 memmap=
// regions with a non-zero start (RAM words included); given as separate
// words, as here, later ones are not avoided and randomisation goes on
// (arch/x86/boot/compressed/kaslr.c mem_avoid_memmap). The ranges these
// words describe are the firmware's, which KASLR picks from anyway; a
// region another memmap=$ word keeps above 16 MiB may be hit
// (docs/kernel-facts.md).
func (m Map) CmdlineWords() []string {
	if m.RAMBytes() == 0 {
		return nil
	}
	words := []string{"memmap=exactmap"}
	for _, r := range m.merged() {
		words = append(words, fmt.Sprintf("memmap=%s%c%#x", FormatSize(r.Size()), memmapSymbol(r.Type), r.Start))
	}
	return words
}

// e820 entry types (arch/x86/include/asm/e820/types.h).
const (
	E820RAM          = 1
	E820Reserved     = 2
	E820ACPI         = 3
	E820NVS          = 4
	E820Unusable     = 5
	E820PMEM         = 7
	E820PRAM         = 12
	E820SoftReserved = 0xefffffff
)

// E820Type maps a firmware memory map type (as /sys/firmware/memmap names
// it) to its e820 number; unknown types become reserved.
func E820Type(s string) uint32 {
	switch s {
	case TypeRAM:
		return E820RAM
	case TypeACPI:
		return E820ACPI
	case TypeNVS:
		return E820NVS
	case TypeUnusable:
		return E820Unusable
	case TypePMEM:
		return E820PMEM
	case TypePRAM:
		return E820PRAM
	case TypeSoftReserved:
		return E820SoftReserved
	}
	return E820Reserved
}
