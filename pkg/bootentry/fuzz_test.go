package bootentry_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootentry"
)

// FuzzScan feeds arbitrary text as a BLS entry, loader.conf, grub.cfg and
// grubenv: Scan never panics, and every entry it lists either can be
// booted or says why not.
func FuzzScan(f *testing.F) {
	for _, p := range []string{"grub/boot/grub/grub.cfg", "bad/boot/grub/grub.cfg", "bls/boot/loader/entries/0a1b2c-6.1.0-10-amd64.conf"} {
		b, err := os.ReadFile(filepath.Join(fixtures, p))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	f.Add("menuentry 'x' {\n}\n}\n}\nsubmenu {\nmenuentry\nlinux\ninitrd\n")
	f.Fuzz(func(t *testing.T, text string) {
		root := fuzzDir(t)
		for _, d := range []string{"boot/loader/entries", "boot/grub"} {
			os.MkdirAll(filepath.Join(root, d), 0o755)
		}
		os.WriteFile(filepath.Join(root, "boot/loader/entries/fuzz.conf"), []byte(text), 0o644)
		os.WriteFile(filepath.Join(root, "boot/loader/loader.conf"), []byte(text), 0o644)
		os.WriteFile(filepath.Join(root, "boot/grub/grub.cfg"), []byte(text), 0o644)
		os.WriteFile(filepath.Join(root, "boot/grub/grubenv"), []byte(text), 0o644)
		l, err := bootentry.Scan(context.Background(), bootentry.Options{Root: root})
		if err != nil {
			return
		}
		for _, e := range l.Entries {
			if e.Err == nil && (e.Kernel == "" || len(e.Initrds) == 0) {
				t.Errorf("entry %q has no error but kernel %q initrds %q", e.ID, e.Kernel, e.Initrds)
			}
		}
		if l.Default >= len(l.Entries) {
			t.Errorf("default %d of %d entries", l.Default, len(l.Entries))
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
