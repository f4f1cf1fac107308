package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// TestDaemonHostileSources: a stage through the daemon of a manifest whose
// piece is a FIFO or /dev/zero (with a 1 GiB declared size) fails at once
// with the file's kind, and the daemon answers the next requests (a stage
// of a good manifest, cache verify) right after. The FIFO has no writer:
// without O_NONBLOCK its open would block, and with the daemon's
// operation lock held across it, every later stage, verify and evict
// with it.
func TestDaemonHostileSources(t *testing.T) {
	im1, _ := testimage.Update()
	_, good := im1.WriteTemp(t)
	bad := func(t *testing.T, change func(dir string, m *bootimage.Manifest)) string {
		m, p := im1.WriteTemp(t)
		m.Name = "hostile"
		change(filepath.Dir(p), m)
		b, err := json.Marshal(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name   string
		change func(dir string, m *bootimage.Manifest)
		want   string
	}{
		{"fifo", func(dir string, m *bootimage.Manifest) {
			p := filepath.Join(dir, "site.cpio")
			os.Remove(p)
			if err := syscall.Mkfifo(p, 0o600); err != nil {
				t.Fatal(err)
			}
		}, "site.cpio: is a FIFO"},
		{"device", func(dir string, m *bootimage.Manifest) {
			m.Modules[3].Source, m.Modules[3].Size = "/dev/zero", 1<<30
		}, "/dev/zero: is a character device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, l := newAgent(t, agent.Options{})
			c, _ := serve(t, a)
			p := bad(t, tc.change)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			start := time.Now()
			_, err := c.Stage(ctx, agent.StageRequest{Manifest: p})
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), `"site.cpio"`) {
				t.Fatalf("Stage of the hostile manifest = %v, want an error naming site.cpio and saying %q", err, tc.want)
			}
			t.Logf("refused in %v: %v", time.Since(start), err)
			if _, err := c.Stage(ctx, agent.StageRequest{Manifest: good}); err != nil {
				t.Fatalf("Stage of a good manifest right after = %v", err)
			}
			if l.Calls() != 1 {
				t.Errorf("loader called %d times, want 1 (the good manifest)", l.Calls())
			}
			if v, err := c.Verify(ctx); err != nil || v.Modules != 4 {
				t.Errorf("cache verify right after = %+v, %v; want the good manifest's 4 modules", v, err)
			}
			if in, err := c.Info(ctx); err != nil || in.Cache.BytesHeld != testimage.TotalSize(im1.Manifest()) {
				t.Errorf("the cache holds %d bytes (%v), want only the good manifest's %d", in.Cache.BytesHeld, err, testimage.TotalSize(im1.Manifest()))
			}
		})
	}
}
