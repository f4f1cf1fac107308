package crashhandler

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

// Firmware memory map types as /sys/firmware/memmap/N/type spells them
// (arch/x86/kernel/e820.c, e820_type_to_string).
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

// MemoryRange is one entry of the firmware memory map.
type MemoryRange struct {
	Start uint64 `json:"start"`
	// End is inclusive, as sysfs prints it.
	End  uint64 `json:"end"`
	Type string `json:"type"`
}

// Size is End-Start+1.
func (r MemoryRange) Size() uint64 { return r.End - r.Start + 1 }

// MemoryMap is the firmware memory map recorded while the system is healthy.
// It marshals to JSON as a list of ranges; the handoff carries it to later
// generations, which need it on every command line after a crash.
type MemoryMap []MemoryRange

// ReadFirmwareMemoryMap reads root/sys/firmware/memmap/N/{start,end,type}.
// It returns the ranges sorted by start, as sysfs reports them (not merged).
//
// Read it on a kernel booted by firmware or with a full memmap=exactmap: in a
// crash kernel, and in every kernel kexec'd after one, this directory shows
// the restricted map kexec passed on (x86 kexec copies e820_table_kexec,
// which memmap= does not change).
func ReadFirmwareMemoryMap(root string) (MemoryMap, error) {
	dir := filepath.Join(root, "sys/firmware/memmap")
	ents, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%w: %w", ErrNoMemoryMap, err)
		}
		return nil, fmt.Errorf("reading firmware memory map: %w", err)
	}
	var mm MemoryMap
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
		mm = append(mm, MemoryRange{Start: start, End: end, Type: strings.TrimSpace(string(typ))})
	}
	if len(mm) == 0 {
		return nil, fmt.Errorf("%w: %s has no entries", ErrNoMemoryMap, dir)
	}
	sort.Slice(mm, func(i, j int) bool { return mm[i].Start < mm[j].Start })
	return mm, nil
}

func readHex(path string) (uint64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, fmt.Errorf("reading firmware memory map: %w", err)
	}
	s := strings.TrimSpace(string(b))
	v, err := strconv.ParseUint(strings.TrimPrefix(strings.ToLower(s), "0x"), 16, 64)
	if err != nil {
		return 0, fmt.Errorf("firmware memory map %s: %q is not a hex address", path, s)
	}
	return v, nil
}

// RAMBytes is the total size of the System RAM ranges.
func (m MemoryMap) RAMBytes() uint64 {
	var n uint64
	for _, r := range m {
		if r.Type == TypeRAM {
			n += r.Size()
		}
	}
	return n
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

// merged returns the ranges sorted, with adjacent ranges of the same
// memmap= operator joined (fewer words on the command line).
func (m MemoryMap) merged() []MemoryRange {
	rs := append([]MemoryRange(nil), m...)
	sort.Slice(rs, func(i, j int) bool { return rs[i].Start < rs[j].Start })
	var out []MemoryRange
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
// KASLR's decompressor avoids at most 4 non-RAM memmap= regions; with more
// it stops randomising the kernel's physical address
// (arch/x86/boot/compressed/kaslr.c), which is harmless here.
func (m MemoryMap) CmdlineWords() []string {
	if m.RAMBytes() == 0 {
		return nil
	}
	words := []string{"memmap=exactmap"}
	for _, r := range m.merged() {
		words = append(words, fmt.Sprintf("memmap=%s%c%#x", memSize(r.Size()), memmapSymbol(r.Type), r.Start))
	}
	return words
}

// memSize formats a size for memparse: the largest K/M/G unit that divides
// it, else hex bytes.
func memSize(n uint64) string {
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
