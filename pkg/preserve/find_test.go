package preserve

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
)

// fakeRoot makes a tree with proc/cmdline and one pmem device of 16 MiB at
// 1 GiB.
func fakeRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	for p, s := range map[string]string{
		"proc/cmdline":                    cmdline + "\n",
		"sys/block/pmem0/size":            "32768\n",
		"sys/block/pmem0/device/resource": "0x40000000\n",
		"dev/pmem0":                       "",
	} {
		p = filepath.Join(root, p)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		write(t, p, s)
	}
	return root
}

func TestFind(t *testing.T) {
	root := fakeRoot(t, "console=ttyS0 memmap=16M!0x40000000 fastreboot.preserve=8M")
	loc, err := Find(root)
	if err != nil {
		t.Fatal(err)
	}
	if loc.Device != filepath.Join(root, "dev/pmem0") || loc.Layout.CacheSize != 8<<20 || loc.Layout.AreasSize != 8<<20 {
		t.Errorf("Find = %+v", loc)
	}
}

func TestFindRefuses(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    error
		msg     string
	}{
		{"console=ttyS0", ErrNoAreas, "keeps no memmap=SIZE!START region"},
		{"memmap=16M!0x40000000", ErrNoAreas, "no fastreboot.preserve=SIZE word"},
		{"fastreboot.preserve=8M", nil, "keeps no region"},
		{"memmap=16M!0x40000000 fastreboot.preserve=3M", nil, "multiple of 2 MiB"},
		{"memmap=32M!0x40000000 fastreboot.preserve=8M", keptmem.ErrNoDevice, "no "},
	} {
		_, err := Find(fakeRoot(t, tc.cmdline))
		if err == nil || tc.want != nil && !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("Find(%q) = %v, want %v mentioning %q", tc.cmdline, err, tc.want, tc.msg)
		}
	}
}
