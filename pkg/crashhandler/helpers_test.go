package crashhandler

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
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
func qemuMemoryMap() MemoryMap {
	return MemoryMap{
		{0x0, 0x9fbff, TypeRAM},
		{0x9fc00, 0x9ffff, TypeReserved},
		{0xf0000, 0xfffff, TypeReserved},
		{0x100000, 0x7ffdefff, TypeRAM},
		{0x7ffdf000, 0x7fffffff, TypeReserved},
		{0xb0000000, 0xbfffffff, TypeReserved},
		{0xfed1c000, 0xfed1ffff, TypeReserved},
		{0xfeffc000, 0xfeffffff, TypeReserved},
		{0xfffc0000, 0xffffffff, TypeReserved},
	}
}

// writeMemoryMap writes mm as root/sys/firmware/memmap/N/{start,end,type}.
func writeMemoryMap(t testing.TB, root string, mm MemoryMap) {
	t.Helper()
	for i, r := range mm {
		dir := filepath.Join(root, "sys/firmware/memmap", fmt.Sprint(i))
		writeFile(t, filepath.Join(dir, "start"), fmt.Sprintf("0x%x\n", r.Start))
		writeFile(t, filepath.Join(dir, "end"), fmt.Sprintf("0x%x\n", r.End))
		writeFile(t, filepath.Join(dir, "type"), r.Type+"\n")
	}
}
