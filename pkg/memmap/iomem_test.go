package memmap

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const testIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : System ROM
00100000-7ffdffff : System RAM
  02000000-02e00fff : Kernel code
  30000000-3fffffff : Crash kernel
40000000-40ffffff : Reserved
41000000-7ffdffff : System RAM
7ffe0000-7fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
    b0000000-bfffffff : Reserved
100000000-17fffffff : System RAM
`

func TestParseIomem(t *testing.T) {
	got, err := ParseIomem(strings.NewReader(testIomem + "garbage line\nzz-10 : x\n10-5 : backwards\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Iomem{
		{Range: RangeInclusive(0, 0xfff), Name: "Reserved", Depth: 0},
		{Range: RangeInclusive(0x1000, 0x9fbff), Name: "System RAM", Depth: 0},
		{Range: RangeInclusive(0x9fc00, 0x9ffff), Name: "Reserved", Depth: 0},
		{Range: RangeInclusive(0xa0000, 0xbffff), Name: "PCI Bus 0000:00", Depth: 0},
		{Range: RangeInclusive(0xf0000, 0xfffff), Name: "System ROM", Depth: 0},
		{Range: RangeInclusive(0x100000, 0x7ffdffff), Name: "System RAM", Depth: 0},
		{Range: RangeInclusive(0x2000000, 0x2e00fff), Name: "Kernel code", Depth: 1},
		{Range: RangeInclusive(0x30000000, 0x3fffffff), Name: "Crash kernel", Depth: 1},
		{Range: RangeInclusive(0x40000000, 0x40ffffff), Name: "Reserved", Depth: 0},
		{Range: RangeInclusive(0x41000000, 0x7ffdffff), Name: "System RAM", Depth: 0},
		{Range: RangeInclusive(0x7ffe0000, 0x7fffffff), Name: "Reserved", Depth: 0},
		{Range: RangeInclusive(0xb0000000, 0xbfffffff), Name: "PCI MMCONFIG 0000 [bus 00-ff]", Depth: 0},
		{Range: RangeInclusive(0xb0000000, 0xbfffffff), Name: "Reserved", Depth: 2},
		{Range: RangeInclusive(0x100000000, 0x17fffffff), Name: "System RAM", Depth: 0},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("ParseIomem (-want +got):\n%s", diff)
	}
}

func FuzzParseIomem(f *testing.F) {
	f.Add(testIomem)
	f.Add("  -  : \n")
	f.Fuzz(func(t *testing.T, s string) {
		es, err := ParseIomem(strings.NewReader(s))
		if err != nil {
			return
		}
		for _, e := range es {
			if e.Empty() || e.Depth < 0 {
				t.Fatalf("entry %+v", e)
			}
		}
	})
}

func TestIomemSelections(t *testing.T) {
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "proc/iomem"), testIomem)
	m, err := ReadIomem(root)
	if err != nil {
		t.Fatal(err)
	}
	wantRAM := []Range{{Start: 0x1000, End: 0x9fc00}, {Start: 0x100000, End: 0x7ffe0000}, {Start: 0x41000000, End: 0x7ffe0000}, {Start: 0x100000000, End: 0x180000000}}
	if d := cmp.Diff(wantRAM, m.RAM()); d != "" {
		t.Errorf("RAM (-want +got):\n%s", d)
	}
	if d := cmp.Diff([]Range{{Start: 0x30000000, End: 0x40000000}}, m.CrashKernel()); d != "" {
		t.Errorf("CrashKernel (-want +got):\n%s", d)
	}
	if _, err := ReadIomem(t.TempDir()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing proc/iomem: error = %v, want fs.ErrNotExist", err)
	}
}

func TestParseIomemUnprivileged(t *testing.T) {
	// Read without CAP_SYS_ADMIN every address is 0.
	m, err := ParseIomem(strings.NewReader("00000000-00000000 : Reserved\n00000000-00000000 : System RAM\n  00000000-00000000 : Crash kernel\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(m) != 0 {
		t.Errorf("ParseIomem = %v, want nothing", m)
	}
}

// TestClaimed: the crash kernel reservation and the top-level resources
// over RAM that are not System RAM are claimed; the kernel's own image,
// ranges outside RAM and System RAM itself are not.
func TestClaimed(t *testing.T) {
	m, err := ParseIomem(strings.NewReader(`00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-3fffffff : System RAM
  02000000-02e00fff : Kernel code
  30000000-3fffffff : Crash kernel
40000000-43ffffff : Persistent Memory (legacy)
  40000000-43ffffff : namespace0.0
44000000-7ffdffff : System RAM
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
`))
	if err != nil {
		t.Fatal(err)
	}
	ram := []Range{{Start: 0, End: 0x9fc00}, {Start: 0x100000, End: 0x7ffe0000}}
	want := []Avoided{
		{Range: Range{Start: 0, End: 0x1000}, Why: "kept by the running kernel: Reserved (/proc/iomem)"},
		{Range: Range{Start: 0x30000000, End: 0x40000000}, Why: "crash kernel reservation (/proc/iomem)"},
		{Range: Range{Start: 0x40000000, End: 0x44000000}, Why: "kept by the running kernel: Persistent Memory (legacy) (/proc/iomem)"},
	}
	if diff := cmp.Diff(want, m.Claimed(ram)); diff != "" {
		t.Errorf("Claimed (-want +got):\n%s", diff)
	}
}
