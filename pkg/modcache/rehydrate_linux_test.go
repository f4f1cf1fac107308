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

// TestRehydrateRefusesPlantedFiles: a symbolic link or a FIFO planted in
// the handoff directory under a carried module's digest is refused by
// name (bootimage.ErrNotRegularFile), by Rehydrate and Adopt alike: the
// link is not followed, even to a file holding the right bytes, and the
// FIFO does not block. Both stay for inspection; the good modules are
// cached.
func TestRehydrateRefusesPlantedFiles(t *testing.T) {
	for _, adopt := range []bool{false, true} {
		img := newTestImage()
		m := clone(img.v1)
		dir := handoffDir(t, m, img.files)
		linked := mod("linked", bootimage.RoleInitrd, "", content(41, 500))
		target := filepath.Join(t.TempDir(), "elsewhere")
		if err := os.WriteFile(target, content(41, 500), 0o600); err != nil {
			t.Fatal(err)
		}
		linkPath := filepath.Join(dir, linked.SHA256)
		if err := os.Symlink(target, linkPath); err != nil {
			t.Fatal(err)
		}
		fifo := mod("fifo", bootimage.RoleInitrd, "", content(42, 500))
		fifoPath := filepath.Join(dir, fifo.SHA256)
		if err := syscall.Mkfifo(fifoPath, 0o600); err != nil {
			t.Fatal(err)
		}
		m.Modules = append(m.Modules, linked, fifo)

		c := modcache.New(modcache.Options{})
		defer c.Close()
		type result struct {
			rep modcache.RehydrateReport
			err error
		}
		done := make(chan result, 1)
		go func() {
			var r result
			if adopt {
				r.rep, r.err = c.Adopt(context.Background(), dir, m)
			} else {
				r.rep, r.err = c.Rehydrate(context.Background(), dir, m)
			}
			done <- r
		}()
		var r result
		select {
		case r = <-done:
		case <-time.After(10 * time.Second):
			// Unblock the open so that the goroutine ends.
			if w, err := os.OpenFile(fifoPath, os.O_WRONLY, 0); err == nil {
				w.Close()
			}
			t.Fatalf("adopt %v: rehydrating blocked on the FIFO %s", adopt, fifoPath)
		}
		if !errors.Is(r.err, bootimage.ErrNotRegularFile) {
			t.Errorf("adopt %v: error %v, want ErrNotRegularFile", adopt, r.err)
		}
		for _, want := range []string{linkPath + ": is a symbolic link", fifoPath + ": is a FIFO"} {
			if r.err == nil || !strings.Contains(r.err.Error(), want) {
				t.Errorf("adopt %v: error %v does not say %q", adopt, r.err, want)
			}
		}
		if r.rep.Modules != 4 || r.rep.Bytes != sumSizes(img.v1) {
			t.Errorf("adopt %v: report %+v, want the 4 good modules", adopt, r.rep)
		}
		for _, d := range []string{linked.SHA256, fifo.SHA256} {
			if _, err := c.Get(d); !errors.Is(err, modcache.ErrNotCached) {
				t.Errorf("adopt %v: Get(%s) = %v, want ErrNotCached", adopt, d, err)
			}
		}
		left, _ := os.ReadDir(dir)
		if len(left) != 2 {
			t.Errorf("adopt %v: handoff dir holds %v, want the link and the FIFO", adopt, left)
		}
		if b, err := os.ReadFile(target); err != nil || len(b) != 500 {
			t.Errorf("adopt %v: the link's target: %d bytes, %v", adopt, len(b), err)
		}
	}
}
