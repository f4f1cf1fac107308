package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// fakeExt4 is the first bytes of an ext4 file system labelled label.
func fakeExt4(label string) []byte {
	b := make([]byte, sbOffset+sbReadBytes)
	b[sbOffset+sbMagicOff], b[sbOffset+sbMagicOff+1] = 0x53, 0xEF
	copy(b[sbOffset+sbLabelOff:], label)
	return b
}

func TestMountPersist(t *testing.T) {
	root := t.TempDir()
	for name, data := range map[string][]byte{"vda": fakeExt4("frstorage"), "vdb": make([]byte, 4096), "vdc": fakeExt4(PersistLabel)} {
		if err := os.MkdirAll(filepath.Join(root, "sys/block", name), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(root, "dev", name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var mounted []string
	sys := system{mount: func(dev, target, fstype string) error {
		mounted = append(mounted, dev+" "+target+" "+fstype)
		return nil
	}}
	var out strings.Builder
	if err := mountPersist(&out, config{root: root}, sys); err != nil {
		t.Fatal(err)
	}
	want := filepath.Join(root, "dev/vdc") + " " + filepath.Join(root, PersistDir) + " ext4"
	if len(mounted) != 1 || mounted[0] != want {
		t.Errorf("mounted %q, want [%s]", mounted, want)
	}
	if !strings.Contains(out.String(), "persist=/dev/vdc mounted at "+PersistDir) {
		t.Errorf("output %q", out.String())
	}

	// No disk labelled frpersist: nothing is mounted.
	os.Remove(filepath.Join(root, "dev/vdc"))
	mounted = nil
	if err := mountPersist(&out, config{root: root}, sys); err != nil || len(mounted) != 0 {
		t.Errorf("without the disk: mounted %q, err %v", mounted, err)
	}
}
