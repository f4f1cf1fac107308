package atomicfile

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "state.json")
	for _, tc := range []struct {
		data string
		perm fs.FileMode
	}{{"first\n", 0o600}, {"second, longer\n", 0o644}, {"", 0o600}} {
		if err := WriteFile(p, []byte(tc.data), tc.perm); err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(p)
		if err != nil || string(b) != tc.data {
			t.Errorf("content = %q, %v; want %q", b, err, tc.data)
		}
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != tc.perm {
			t.Errorf("mode = %v, want %v", fi.Mode().Perm(), tc.perm)
		}
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries, want only the file (no temporary left)", len(ents))
	}
}

func TestWriteFileErrors(t *testing.T) {
	dir := t.TempDir()
	if err := WriteFile(filepath.Join(dir, "missing", "f"), []byte("x"), 0o600); err == nil {
		t.Error("missing directory: no error")
	}
	// A directory in the way: the rename fails, the old one stays and the
	// temporary goes.
	target := filepath.Join(dir, "d")
	if err := os.Mkdir(target, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(target, "keep"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(target, []byte("x"), 0o600); err == nil {
		t.Error("rename over a non-empty directory: no error")
	}
	ents, _ := os.ReadDir(dir)
	if len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed write, want 1", len(ents))
	}
}

// recordSyncs replaces syncDir for the test and returns the directories
// synced.
func recordSyncs(t *testing.T) *[]string {
	var synced []string
	old := syncDir
	syncDir = func(dir string) error {
		synced = append(synced, dir)
		return old(dir)
	}
	t.Cleanup(func() { syncDir = old })
	return &synced
}

// TestDurable: a write syncs its directory (the rename), MkdirAll the
// parent of every directory it creates.
func TestDurable(t *testing.T) {
	synced := recordSyncs(t)
	root := t.TempDir()
	deep := filepath.Join(root, "a", "b")
	if err := MkdirAll(deep, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(filepath.Join(deep, "f"), []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	want := []string{filepath.Join(root, "a"), root, deep}
	if !slices.Equal(*synced, want) {
		t.Errorf("synced %q, want %q", *synced, want)
	}
	*synced = nil
	if err := MkdirAll(deep, 0o700); err != nil || len(*synced) != 0 {
		t.Errorf("MkdirAll of an existing directory: %v, synced %q", err, *synced)
	}
}

// TestWriteFileReplacesSymlink: a symlink at the path is replaced, its
// target neither followed nor truncated.
func TestWriteFileReplacesSymlink(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("keep"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(dir, "link")
	if err := os.Symlink(target, p); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(p, []byte("new"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("target = %q, want untouched", b)
	}
	if fi, err := os.Lstat(p); err != nil || !fi.Mode().IsRegular() {
		t.Errorf("path after WriteFile: %v, %v; want a regular file", fi, err)
	}
}

func TestWriteFromFailedFill(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big")
	if err := WriteFile(p, []byte("old"), 0o600); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err := WriteFrom(p, 0o644, func(w io.Writer) error {
		if _, err := w.Write(make([]byte, 3<<20)); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Errorf("err = %v, want the fill's error", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "old" {
		t.Errorf("content after a failed fill = %q, want the old one", b)
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Errorf("directory holds %d entries after a failed fill, want 1", len(ents))
	}
	// A fill larger than the buffer arrives whole.
	want := make([]byte, 3<<20+5)
	want[len(want)-1] = 1
	if err := WriteFrom(p, 0o644, func(w io.Writer) error { _, err := w.Write(want); return err }); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); len(b) != len(want) || b[len(b)-1] != 1 {
		t.Errorf("content: %d bytes, want %d", len(b), len(want))
	}
}
