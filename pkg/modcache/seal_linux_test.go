package modcache_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/modcache"
	"golang.org/x/sys/unix"
)

// TestEntrySealed checks that a cached module's memfd is immutable and that
// the cache holds no other open of its inode (kexec_file_load would fail
// with ETXTBSY on any writable one).
func TestEntrySealed(t *testing.T) {
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	if _, err := c.Sync(context.Background(), img.v1, newFakeSource(img.files)); err != nil {
		t.Fatal(err)
	}
	k := img.v1.Modules[0]
	e, err := c.Get(k.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	f := e.File()
	fd := int(f.Fd())

	seals, err := unix.FcntlInt(uintptr(fd), unix.F_GET_SEALS, 0)
	if err != nil {
		t.Fatalf("fcntl(F_GET_SEALS): %v", err)
	}
	want := unix.F_SEAL_WRITE | unix.F_SEAL_SHRINK | unix.F_SEAL_GROW | unix.F_SEAL_SEAL
	if seals != want {
		t.Errorf("seals = %#x, want %#x", seals, want)
	}

	mutations := map[string]func() error{
		"write":  func() error { _, err := f.Write([]byte("x")); return err },
		"pwrite": func() error { _, err := f.WriteAt([]byte("x"), 0); return err },
		"shrink": func() error { return f.Truncate(0) },
		"grow":   func() error { return f.Truncate(e.Size() + 1) },
		"remove seal": func() error {
			_, err := unix.FcntlInt(uintptr(fd), unix.F_ADD_SEALS, unix.F_SEAL_FUTURE_WRITE)
			return err
		},
	}
	for name, mutate := range mutations {
		if err := mutate(); !errors.Is(err, unix.EPERM) {
			t.Errorf("%s on the sealed memfd = %v, want EPERM", name, err)
		}
	}
	if _, err := unix.Mmap(fd, 0, int(e.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED); !errors.Is(err, unix.EPERM) {
		t.Errorf("shared writable mmap = %v, want EPERM", err)
	}
	if fi, err := f.Stat(); err != nil || fi.Size() != k.Size {
		t.Errorf("size after mutation attempts = %v, %v; want %d", fi.Size(), err, k.Size)
	}

	link, err := os.Readlink(filepath.Join("/proc/self/fd", strconv.Itoa(fd)))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(link, "/memfd:fastreboot:vmlinuz") {
		t.Errorf("fd %d links to %q, want /memfd:fastreboot:vmlinuz", fd, link)
	}

	// Exactly one open of the inode in this process: the memfd_create fd.
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		t.Fatal(err)
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	opens := 0
	for _, d := range fds {
		var o unix.Stat_t
		if unix.Stat(filepath.Join("/proc/self/fd", d.Name()), &o) == nil && o.Dev == st.Dev && o.Ino == st.Ino {
			opens++
		}
	}
	if opens != 1 {
		t.Errorf("%d opens of the memfd inode, want 1", opens)
	}
}
