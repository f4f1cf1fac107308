package modcache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// syncWithin runs Sync and fails the test if it has not returned within
// the deadline (a source that blocks would hang it forever).
func syncWithin(t *testing.T, c *modcache.Cache, m *bootimage.Manifest, src modcache.Source) (modcache.SyncReport, error) {
	t.Helper()
	type result struct {
		rep modcache.SyncReport
		err error
	}
	done := make(chan result, 1)
	go func() {
		rep, err := c.Sync(context.Background(), m, src)
		done <- result{rep, err}
	}()
	select {
	case r := <-done:
		return r.rep, r.err
	case <-time.After(20 * time.Second):
		t.Fatalf("Sync of %s did not return in 20 s", m.Name)
		return modcache.SyncReport{}, nil
	}
}

// TestSyncRefusesHostileSources: a module whose source is a device, a FIFO
// or a file of another size than the manifest's is refused at the open,
// by name and kind, without a byte read (so /dev/zero with a 1 GiB
// declared size takes no RAM, and a FIFO does not block), and the rest of
// the manifest is still synced.
func TestSyncRefusesHostileSources(t *testing.T) {
	dir := t.TempDir()
	good := content(7, 4096)
	if err := os.WriteFile(filepath.Join(dir, "good.cpio"), good, 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo.cpio")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	small := filepath.Join(dir, "small.cpio")
	if err := os.WriteFile(small, content(8, 4096), 0o600); err != nil {
		t.Fatal(err)
	}
	const gib = 1 << 30
	huge := func(name, source string) bootimage.Module {
		return bootimage.Module{Name: name, Role: bootimage.RoleInitrd, Size: gib, SHA256: strings.Repeat("ab", 32), Source: source}
	}
	for _, tc := range []struct {
		name string
		mod  bootimage.Module
		is   error
		want []string
	}{
		{"device", huge("zero", "/dev/zero"), bootimage.ErrNotRegularFile, []string{`"zero"`, "/dev/zero: is a character device"}},
		{"fifo", huge("fifo", "fifo.cpio"), bootimage.ErrNotRegularFile, []string{`"fifo"`, fifo + ": is a FIFO"}},
		{"directory", huge("dir", "."), bootimage.ErrNotRegularFile, []string{`"dir"`, "is a directory"}},
		{"size", huge("small", "small.cpio"), modcache.ErrSizeMismatch, []string{`"small"`, small + ": ", "size 4096, manifest says 1073741824"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := modcache.New(modcache.Options{})
			defer c.Close()
			m := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: tc.name, Modules: []bootimage.Module{
				mod("vmlinuz", bootimage.RoleKernel, "good.cpio", good), tc.mod,
			}}
			rep, err := syncWithin(t, c, m, modcache.DirSource(dir))
			if !errors.Is(err, tc.is) {
				t.Fatalf("Sync = %v, want %v", err, tc.is)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if rep.BytesRead != int64(len(good)) || len(rep.Read) != 1 || rep.Read[0] != "vmlinuz" {
				t.Errorf("Sync read %d bytes (%v), want only the good module's %d", rep.BytesRead, rep.Read, len(good))
			}
			if s := c.Stats(); s.BytesHeld != int64(len(good)) {
				t.Errorf("cache holds %d bytes, want %d", s.BytesHeld, len(good))
			}
		})
	}
}

// TestSyncMemoryCap: a module larger than MemAvailable (from the root's
// proc/meminfo) less the margin is refused before it is opened, naming the
// module and both numbers; a negative margin turns the check off.
func TestSyncMemoryCap(t *testing.T) {
	root := t.TempDir()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	meminfo := func(kb string) {
		t.Helper()
		b := "MemTotal:        2048000 kB\nMemFree:          100000 kB\nMemAvailable:   " + kb + " kB\n"
		if err := os.WriteFile(filepath.Join(root, "proc/meminfo"), []byte(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	b := content(9, 8192)
	src := newFakeSource(map[string][]byte{"big.cpio": b})
	m := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: "m", Modules: []bootimage.Module{mod("big", bootimage.RoleInitrd, "big.cpio", b)}}

	meminfo("65540") // 64 MiB + 4 KiB: 4 KiB above the default margin
	c := modcache.New(modcache.Options{Root: root})
	defer c.Close()
	rep, err := c.Sync(context.Background(), m, src)
	if !errors.Is(err, modcache.ErrModuleTooLarge) {
		t.Fatalf("Sync = %v, want ErrModuleTooLarge", err)
	}
	for _, w := range []string{`"big"`, "8192 bytes", "MemAvailable is 67112960 bytes", "margin of 67108864 leaves 4096"} {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q does not say %q", err, w)
		}
	}
	if opens, _ := src.counts(); rep.BytesRead != 0 || opens["big.cpio"] != 0 {
		t.Errorf("Sync opened the source %d times, read %d bytes; want none", opens["big.cpio"], rep.BytesRead)
	}

	meminfo("65544") // 8 KiB above the margin: fits
	if _, err := c.Sync(context.Background(), m, src); err != nil {
		t.Errorf("Sync with room = %v", err)
	}

	meminfo("0")
	off := modcache.New(modcache.Options{Root: root, MemoryMargin: -1})
	defer off.Close()
	if _, err := off.Sync(context.Background(), m, src); err != nil {
		t.Errorf("Sync without the check = %v", err)
	}
}
