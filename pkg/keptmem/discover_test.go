package keptmem

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// fakePmem adds root/sys/block/NAME with a size in sectors and, if start
// is not "", a device/resource file.
func fakePmem(t *testing.T, root, name string, bytes uint64, start string) {
	t.Helper()
	dir := filepath.Join(root, "sys/block", name)
	write(t, filepath.Join(dir, "size"), strconv.FormatUint(bytes/512, 10)+"\n")
	if start != "" {
		write(t, filepath.Join(dir, "device/resource"), start+"\n")
	}
}

func write(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

const iomemWithPRAM = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7ffdefff : System RAM
100000000-1efffffff : System RAM
1f0000000-1ffffffff : Persistent Memory (legacy)
  1f0000000-1ffffffff : namespace0.0
`

func TestFindDevice(t *testing.T) {
	r := Region{Start: 0x1f0000000, Size: 256 << 20}
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, root string)
		want  string // relative to root; "" with msg: an error
		msg   string
	}{
		{name: "by resource", want: "dev/pmem1", setup: func(t *testing.T, root string) {
			fakePmem(t, root, "pmem0", 256<<20, "0x100000000")
			fakePmem(t, root, "pmem1", 256<<20, "0x1f0000000")
		}},
		{name: "by size and iomem", want: "dev/pmem0", setup: func(t *testing.T, root string) {
			fakePmem(t, root, "pmem0", 256<<20, "")
			fakePmem(t, root, "pmem1", 64<<20, "")
			write(t, filepath.Join(root, "proc/iomem"), iomemWithPRAM)
		}},
		{name: "size matches but iomem does not list it", msg: "lists no", setup: func(t *testing.T, root string) {
			fakePmem(t, root, "pmem0", 256<<20, "")
			write(t, filepath.Join(root, "proc/iomem"), "100000000-1ffffffff : System RAM\n")
		}},
		{name: "two of the size without resource", msg: "2 pmem devices", setup: func(t *testing.T, root string) {
			fakePmem(t, root, "pmem0", 256<<20, "")
			fakePmem(t, root, "pmem1", 256<<20, "")
		}},
		{name: "other start", msg: "no ", setup: func(t *testing.T, root string) {
			fakePmem(t, root, "pmem0", 256<<20, "0x100000000")
		}},
		{name: "none", msg: "nd_pmem", setup: func(t *testing.T, root string) {}},
		{name: "bad size file", msg: "not a number", setup: func(t *testing.T, root string) {
			write(t, filepath.Join(root, "sys/block/pmem0/size"), "lots\n")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.setup(t, root)
			got, err := FindDevice(root, r)
			if tc.msg != "" {
				if err == nil || !strings.Contains(err.Error(), tc.msg) {
					t.Fatalf("FindDevice = %q, %v; want an error saying %q", got, err, tc.msg)
				}
				if strings.Contains(tc.name, "none") && !errors.Is(err, ErrNoDevice) {
					t.Errorf("error %v is not ErrNoDevice", err)
				}
				return
			}
			if err != nil {
				t.Fatalf("FindDevice: %v", err)
			}
			if want := filepath.Join(root, tc.want); got != want {
				t.Errorf("FindDevice = %q, want %q", got, want)
			}
		})
	}
}

func TestOpenFileDevice(t *testing.T) {
	dev := fileDevice(t, 8192)
	if dev.Size() != 8192 {
		t.Errorf("Size = %d, want 8192", dev.Size())
	}
	if _, err := dev.WriteAt(make([]byte, 10), 8190); err == nil || !strings.Contains(err.Error(), dev.Name()) {
		t.Errorf("a write past the end = %v, want an error naming the device", err)
	}
	if _, err := OpenFileDevice(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("OpenFileDevice of a missing file succeeded")
	}
}
