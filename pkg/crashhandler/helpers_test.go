package crashhandler

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

func writeFile(t testing.TB, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// qemuMemoryMap is /sys/firmware/memmap of a QEMU q35 guest with 2 GiB.
func qemuMemoryMap() memmap.Map {
	return memmap.Map{
		{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM},
		{Start: 0x9fc00, End: 0x9ffff, Type: memmap.TypeReserved},
		{Start: 0xf0000, End: 0xfffff, Type: memmap.TypeReserved},
		{Start: 0x100000, End: 0x7ffdefff, Type: memmap.TypeRAM},
		{Start: 0x7ffdf000, End: 0x7fffffff, Type: memmap.TypeReserved},
		{Start: 0xb0000000, End: 0xbfffffff, Type: memmap.TypeReserved},
		{Start: 0xfed1c000, End: 0xfed1ffff, Type: memmap.TypeReserved},
		{Start: 0xfeffc000, End: 0xfeffffff, Type: memmap.TypeReserved},
		{Start: 0xfffc0000, End: 0xffffffff, Type: memmap.TypeReserved},
	}
}

// writeMemoryMap writes mm as root/sys/firmware/memmap/N/{start,end,type}.
func writeMemoryMap(t testing.TB, root string, mm memmap.Map) {
	t.Helper()
	for i, r := range mm {
		dir := filepath.Join(root, "sys/firmware/memmap", fmt.Sprint(i))
		writeFile(t, filepath.Join(dir, "start"), fmt.Sprintf("0x%x\n", r.Start))
		writeFile(t, filepath.Join(dir, "end"), fmt.Sprintf("0x%x\n", r.End))
		writeFile(t, filepath.Join(dir, "type"), r.Type+"\n")
	}
}

// splitCmdline is the kernel parameters of s (bootimage.SplitCmdline).
func splitCmdline(s string) []string {
	params, _ := bootimage.SplitCmdline(s)
	return params
}
