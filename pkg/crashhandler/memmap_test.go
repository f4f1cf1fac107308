package crashhandler

import (
	"encoding/json"
	"errors"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadFirmwareMemoryMap(t *testing.T) {
	root := t.TempDir()
	want := qemuMemoryMap()
	// Eleven entries: "10" sorts before "2" as a name, not as a range.
	want = append(want, MemoryRange{0x100000000, 0x17fffffff, TypeRAM}, MemoryRange{0x180000000, 0x1800fffff, TypeNVS})
	writeMemoryMap(t, root, want)
	got, err := ReadFirmwareMemoryMap(root)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("map (-want +got):\n%s", d)
	}
	if got.RAMBytes() != 0x9fc00+0x7fedf000+0x80000000 {
		t.Errorf("RAMBytes = %#x", got.RAMBytes())
	}

	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	var back MemoryMap
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, back); d != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", d)
	}
}

func TestReadFirmwareMemoryMapErrors(t *testing.T) {
	if _, err := ReadFirmwareMemoryMap(t.TempDir()); !errors.Is(err, ErrNoMemoryMap) {
		t.Errorf("missing dir: error = %v, want ErrNoMemoryMap", err)
	}
	for name, files := range map[string]map[string]string{
		"bad start":   {"start": "zz", "end": "0x10", "type": TypeRAM},
		"end<start":   {"start": "0x10", "end": "0x1", "type": TypeRAM},
		"no type":     {"start": "0x0", "end": "0x1"},
		"missing end": {"start": "0x0", "type": TypeRAM},
	} {
		root := t.TempDir()
		for f, c := range files {
			writeFile(t, filepath.Join(root, "sys/firmware/memmap/0", f), c)
		}
		if _, err := ReadFirmwareMemoryMap(root); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCmdlineWords(t *testing.T) {
	for _, tc := range []struct {
		name string
		mm   MemoryMap
		want []string
	}{
		{
			name: "qemu q35 2G",
			mm:   qemuMemoryMap(),
			want: []string{
				"memmap=exactmap",
				"memmap=639K@0x0",
				"memmap=1K$0x9fc00",
				"memmap=64K$0xf0000",
				"memmap=2095996K@0x100000",
				"memmap=132K$0x7ffdf000",
				"memmap=256M$0xb0000000",
				"memmap=16K$0xfed1c000",
				"memmap=16K$0xfeffc000",
				"memmap=256K$0xfffc0000",
			},
		},
		{
			name: "types, merging, odd sizes, unsorted",
			mm: MemoryMap{
				{0x100000000, 0x13fffffff, TypeRAM},
				{0x0, 0xfff, TypeRAM},
				{0x1000, 0x1fff, TypeRAM}, // adjacent RAM: merged
				{0x2000, 0x2fff, TypeACPI},
				{0x3000, 0x3fff, TypeNVS}, // ACPI data and NVS both '#': merged
				{0x4000, 0x40ff, TypeUnusable},
				{0x5000, 0x5fff, TypePRAM},
				{0x6000, 0x6fff, "Something new"},
			},
			want: []string{
				"memmap=exactmap",
				"memmap=8K@0x0",
				"memmap=8K#0x2000",
				"memmap=0x100$0x4000",
				"memmap=4K!0x5000",
				"memmap=4K$0x6000",
				"memmap=1G@0x100000000",
			},
		},
		{name: "no RAM", mm: MemoryMap{{0, 0xfff, TypeReserved}}},
		{name: "empty"},
	} {
		if d := cmp.Diff(tc.want, tc.mm.CmdlineWords()); d != "" {
			t.Errorf("%s: words (-want +got):\n%s", tc.name, d)
		}
	}
}
