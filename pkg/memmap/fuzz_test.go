package memmap

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadFirmware reads a /sys/firmware/memmap whose entries' start, end
// and type files hold arbitrary text (entries separated by ";", fields by
// ","): what it accepts has every range in order, and its memmap= words
// carry the map's RAM.
func FuzzReadFirmware(f *testing.F) {
	f.Add("0x0,0x9fbff,System RAM;0x9fc00,0x9ffff,Reserved;0x100000,0x7ffdefff,System RAM;0x7ffdf000,0x7fffffff,ACPI Tables")
	f.Add("0x100000,0xfffff,System RAM")
	f.Add("zz,0x1,x;0x1,,")
	f.Fuzz(func(t *testing.T, spec string) {
		root := fuzzDir(t)
		for i, e := range strings.Split(spec, ";") {
			if i >= 16 {
				break
			}
			fields := append(strings.SplitN(e, ",", 3), "", "", "")
			dir := filepath.Join(root, "sys/firmware/memmap", strings.Repeat("1", i+1))
			if err := os.MkdirAll(dir, 0o755); err != nil {
				t.Fatal(err)
			}
			for j, name := range []string{"start", "end", "type"} {
				if err := os.WriteFile(filepath.Join(dir, name), []byte(fields[j]+"\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
		}
		mm, err := ReadFirmware(root)
		if err != nil {
			return
		}
		for _, e := range mm {
			if e.End < e.Start {
				t.Errorf("accepted entry %+v ends before it starts", e)
			}
		}
		words := mm.CmdlineWords()
		if (mm.RAMBytes() == 0) != (words == nil) {
			t.Errorf("map with %d bytes of RAM: words %q", mm.RAMBytes(), words)
		}
	})
}

// FuzzE820Table turns an arbitrary map (one entry per 17 bytes of input:
// start, end, type) into the zero page's e820 table: sorted, adjacent
// entries of one type merged, the sizes adding up.
func FuzzE820Table(f *testing.F) {
	f.Add([]byte("\x00\x00\x00\x00\x00\x00\x00\x00\xff\xfb\x09\x00\x00\x00\x00\x00\x01" +
		"\x00\xfc\x09\x00\x00\x00\x00\x00\xff\xff\x09\x00\x00\x00\x00\x00\x02"))
	f.Add([]byte("\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00\x01"))
	types := []string{TypeRAM, TypeReserved, TypeACPI, TypeNVS, TypeUnusable, TypePMEM, TypePRAM, TypeSoftReserved, "Something new"}
	f.Fuzz(func(t *testing.T, b []byte) {
		var mm Map
		for ; len(b) >= 17 && len(mm) < 200; b = b[17:] {
			u := func(p []byte) uint64 {
				var v uint64
				for i := 7; i >= 0; i-- {
					v = v<<8 | uint64(p[i])
				}
				return v
			}
			mm = append(mm, Entry{Start: u(b), End: u(b[8:]), Type: types[int(b[16])%len(types)]})
		}
		table, err := E820Table(mm)
		if err != nil {
			return
		}
		if len(table) == 0 || len(table) > E820MaxZeroPage || len(table) > len(mm) {
			t.Fatalf("%d entries from a map of %d", len(table), len(mm))
		}
		for i := 1; i < len(table); i++ {
			if table[i].Addr < table[i-1].Addr {
				t.Errorf("entry %d at %#x before %#x", i, table[i].Addr, table[i-1].Addr)
			}
			if table[i-1].Type == table[i].Type && table[i-1].Addr+table[i-1].Size == table[i].Addr {
				t.Errorf("adjacent entries %d and %d of type %d not merged", i-1, i, table[i].Type)
			}
		}
	})
}

// FuzzParseSize parses an arbitrary memparse() size: the rest it returns
// is a suffix of the input.
func FuzzParseSize(f *testing.F) {
	for _, s := range []string{"384M", "0x1000000", "1G@16M", "2047", "64K$0x100000", "0x", "18446744073709551616"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		v, rest, ok := ParseSize(s)
		if !ok {
			return
		}
		if !strings.HasSuffix(s, rest) || len(rest) == len(s) {
			t.Errorf("ParseSize(%q) = %d, rest %q: not a proper suffix", s, v, rest)
		}
	})
}

// fuzzDir is a new directory, removed when the input is done. t.TempDir
// is not used: with it the fuzzers ran a handful of inputs a minute.
func fuzzDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "fuzz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
