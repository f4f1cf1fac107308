package preserve

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeLoop makes root/sys/block/NAME/loop/ with the given backing file,
// offset and size limit; backing "" makes a loop device with no file.
func fakeLoop(t *testing.T, root, name, backing, offset, size string) {
	t.Helper()
	dir := filepath.Join(root, "sys/block", name)
	if backing == "" {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		return
	}
	if err := os.MkdirAll(filepath.Join(dir, "loop"), 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "loop/backing_file"), backing+"\n")
	write(t, filepath.Join(dir, "loop/offset"), offset+"\n")
	write(t, filepath.Join(dir, "loop/sizelimit"), size+"\n")
}

func TestLoops(t *testing.T) {
	root := fakeRoot(t, "memmap=16M!0x40000000 fastreboot.preserve=8M")
	fakeLoop(t, root, "loop1", "/dev/pmem0", "8454144", "4194304")
	fakeLoop(t, root, "loop0", "/dev/pmem0", "12648448", "0")
	fakeLoop(t, root, "loop2", "/var/disk.img", "0", "0")
	fakeLoop(t, root, "loop3", "", "", "")
	got, err := Loops(root, filepath.Join(root, "dev/pmem0"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Loop{
		{Device: filepath.Join(root, "dev/loop0"), Offset: 12648448, Size: 0},
		{Device: filepath.Join(root, "dev/loop1"), Offset: 8454144, Size: 4194304},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("Loops (-want +got):\n%s", d)
	}
	a := Area{Name: "vm", Offset: 8454144, Size: 4194304}
	if !got[1].Maps(a) || got[0].Maps(a) {
		t.Errorf("Maps(%+v): %v %v, want false true", a, got[0].Maps(a), got[1].Maps(a))
	}

	fakeLoop(t, root, "loop4", "/dev/pmem0", "lots", "0")
	if _, err := Loops(root, filepath.Join(root, "dev/pmem0")); err == nil {
		t.Error("Loops with a bad offset file: no error")
	}
	if _, err := Loops(root, "/elsewhere/pmem0"); !errors.Is(err, ErrInvalid) {
		t.Errorf("Loops of a device outside root: %v, want ErrInvalid", err)
	}
}

func TestLoopRange(t *testing.T) {
	const dev = 16 << 20
	for _, tc := range []struct {
		a       Area
		ok      bool
		off, sz uint64
	}{
		{Area{Offset: 8<<20 + 64<<10, Size: 4 << 20}, true, 8<<20 + 64<<10, 4 << 20},
		{Area{Offset: 12 << 20, Size: 4 << 20}, true, 12 << 20, 4 << 20},
		{Area{Offset: 12 << 20, Size: 4<<20 + 4096}, false, 0, 0},
		{Area{Offset: 4097, Size: 4096}, false, 0, 0},
		{Area{Offset: 4096, Size: 0}, false, 0, 0},
		{Area{Offset: -4096, Size: 4096}, false, 0, 0},
	} {
		off, sz, err := loopRange(tc.a, dev)
		if tc.ok != (err == nil) || off != tc.off || sz != tc.sz {
			t.Errorf("loopRange(%+v) = %d, %d, %v; want ok %v, %d, %d", tc.a, off, sz, err, tc.ok, tc.off, tc.sz)
		}
		if err != nil && !errors.Is(err, ErrInvalid) {
			t.Errorf("loopRange(%+v): %v, want ErrInvalid", tc.a, err)
		}
	}
}
