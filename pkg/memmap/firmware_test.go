package memmap

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadFirmware(t *testing.T) {
	root := t.TempDir()
	want := qemuMemoryMap()
	// Eleven entries: "10" sorts before "2" as a name, not as a range.
	want = append(want, Entry{Start: 0x100000000, End: 0x17fffffff, Type: TypeRAM}, Entry{Start: 0x180000000, End: 0x1800fffff, Type: TypeNVS})
	writeMemoryMap(t, root, want)
	got, err := ReadFirmware(root)
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
	var back Map
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(got, back); d != "" {
		t.Errorf("JSON round trip (-want +got):\n%s", d)
	}
}

func TestReadFirmwareErrors(t *testing.T) {
	if _, err := ReadFirmware(t.TempDir()); !errors.Is(err, ErrNoFirmwareMap) {
		t.Errorf("missing dir: error = %v, want ErrNoFirmwareMap", err)
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
		if _, err := ReadFirmware(root); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
}

func TestCmdlineWords(t *testing.T) {
	for _, tc := range []struct {
		name string
		mm   Map
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
			mm: Map{
				{Start: 0x100000000, End: 0x13fffffff, Type: TypeRAM},
				{Start: 0x0, End: 0xfff, Type: TypeRAM},
				{Start: 0x1000, End: 0x1fff, Type: TypeRAM}, // adjacent RAM: merged
				{Start: 0x2000, End: 0x2fff, Type: TypeACPI},
				{Start: 0x3000, End: 0x3fff, Type: TypeNVS}, // ACPI data and NVS both '#': merged
				{Start: 0x4000, End: 0x40ff, Type: TypeUnusable},
				{Start: 0x5000, End: 0x5fff, Type: TypePRAM},
				{Start: 0x6000, End: 0x6fff, Type: "Something new"},
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
		{name: "no RAM", mm: Map{{Start: 0, End: 0xfff, Type: TypeReserved}}},
		{name: "empty"},
	} {
		if d := cmp.Diff(tc.want, tc.mm.CmdlineWords()); d != "" {
			t.Errorf("%s: words (-want +got):\n%s", tc.name, d)
		}
	}
}

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// qemuMemoryMap is /sys/firmware/memmap of a QEMU q35 guest with 2 GiB.
func qemuMemoryMap() Map {
	return Map{
		{Start: 0x0, End: 0x9fbff, Type: TypeRAM},
		{Start: 0x9fc00, End: 0x9ffff, Type: TypeReserved},
		{Start: 0xf0000, End: 0xfffff, Type: TypeReserved},
		{Start: 0x100000, End: 0x7ffdefff, Type: TypeRAM},
		{Start: 0x7ffdf000, End: 0x7fffffff, Type: TypeReserved},
		{Start: 0xb0000000, End: 0xbfffffff, Type: TypeReserved},
		{Start: 0xfed1c000, End: 0xfed1ffff, Type: TypeReserved},
		{Start: 0xfeffc000, End: 0xfeffffff, Type: TypeReserved},
		{Start: 0xfffc0000, End: 0xffffffff, Type: TypeReserved},
	}
}

// writeMemoryMap writes mm as root/sys/firmware/memmap/N/{start,end,type}.
func writeMemoryMap(t testing.TB, root string, mm Map) {
	t.Helper()
	for i, r := range mm {
		dir := filepath.Join(root, "sys/firmware/memmap", fmt.Sprint(i))
		writeFile(t, filepath.Join(dir, "start"), fmt.Sprintf("0x%x\n", r.Start))
		writeFile(t, filepath.Join(dir, "end"), fmt.Sprintf("0x%x\n", r.End))
		writeFile(t, filepath.Join(dir, "type"), r.Type+"\n")
	}
}

func TestE820Type(t *testing.T) {
	for typ, want := range map[string]uint32{
		TypeRAM: E820RAM, TypeACPI: E820ACPI, TypeNVS: E820NVS, TypeReserved: E820Reserved,
		TypeUnusable: E820Unusable, TypePMEM: E820PMEM, TypePRAM: E820PRAM,
		TypeSoftReserved: E820SoftReserved, "Something new": E820Reserved,
	} {
		if got := E820Type(typ); got != want {
			t.Errorf("E820Type(%q) = %d, want %d", typ, got, want)
		}
	}
}

func TestReadHex(t *testing.T) {
	dir := t.TempDir()
	for content, want := range map[string]uint64{"0x1000\n": 0x1000, "fee00000\n": 0xfee00000, "0XAB": 0xab} {
		p := filepath.Join(dir, "f")
		writeFile(t, p, content)
		if got, err := ReadHex(p); err != nil || got != want {
			t.Errorf("ReadHex(%q) = %#x, %v; want %#x", content, got, err, want)
		}
	}
	writeFile(t, filepath.Join(dir, "bad"), "zz")
	if _, err := ReadHex(filepath.Join(dir, "bad")); err == nil {
		t.Error("ReadHex(zz): no error")
	}
	if _, err := ReadHex(filepath.Join(dir, "missing")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("ReadHex(missing) = %v, want fs.ErrNotExist", err)
	}
}
