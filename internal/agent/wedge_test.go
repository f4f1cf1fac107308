package agent_test

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// wedgedManifest writes v2 of the update story with its site piece (a
// module v1 does not have) replaced by a FIFO nobody writes to, and returns
// the manifest's path and a function that unblocks a reader of the FIFO
// (it then reads nothing and fails).
func wedgedManifest(t *testing.T) (string, func()) {
	t.Helper()
	_, im2 := testimage.Update()
	m2, p2 := im2.WriteTemp(t)
	site := filepath.Join(filepath.Dir(p2), m2.Initrds()[2].Source)
	if err := os.Remove(site); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mkfifo(site, 0o600); err != nil {
		t.Skipf("no FIFO here: %v", err)
	}
	var once sync.Once
	return p2, func() {
		once.Do(func() {
			// A writer that opens and closes: the blocked open(2)
			// returns and its read ends at once.
			if f, err := os.OpenFile(site, os.O_WRONLY|syscall.O_NONBLOCK, 0); err == nil {
				f.Close()
			}
		})
	}
}

// blockingSource is a Source whose Open of the module named name signals
// entered and blocks, ignoring its context, until release is closed; other
// modules come from the directory.
type blockingSource struct {
	dir      modcache.Source
	name     string
	entered  chan struct{}
	release  chan struct{}
	signaled sync.Once
}

func (s *blockingSource) Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error) {
	if m.Name != s.name {
		return s.dir.Open(ctx, m)
	}
	s.signaled.Do(func() { close(s.entered) })
	<-s.release
	return nil, io.ErrUnexpectedEOF
}

// TestWedgedRequest: a request whose module source never answers (a FIFO
// nobody writes to, a reader blocked in the kernel) wedges only itself:
// the daemon still stages a good manifest, verifies and evicts the cache
// while it hangs. The operation lock was held across the source's open, so
// every later request waited for it.
func TestWedgedRequest(t *testing.T) {
	for _, how := range []string{"fifo", "blocked reader"} {
		t.Run(how, func(t *testing.T) {
			im1, im2 := testimage.Update()
			_, p1 := im1.WriteTemp(t)
			var opts agent.Options
			var (
				wedged  string
				release func()
				entered <-chan struct{}
			)
			switch how {
			case "fifo":
				wedged, release = wedgedManifest(t)
			default:
				m2, p2 := im2.WriteTemp(t)
				wedged = p2
				bs := &blockingSource{name: m2.Initrds()[2].Name, entered: make(chan struct{}), release: make(chan struct{})}
				opts.Storage = func(dir string) modcache.Source {
					bs.dir = modcache.DirSource(dir)
					if dir == filepath.Dir(p2) {
						return bs
					}
					return bs.dir
				}
				entered = bs.entered
				var once sync.Once
				release = func() { once.Do(func() { close(bs.release) }) }
			}
			a, _ := newAgent(t, opts)
			c, _ := serve(t, a)
			// Unblock the wedged request before the daemon stops (cleanups
			// run last in, first out).
			t.Cleanup(release)

			stuck := make(chan error, 1)
			go func() {
				_, err := c.Stage(context.Background(), agent.StageRequest{Manifest: wedged, DryRun: true})
				stuck <- err
			}()
			if entered != nil {
				select {
				case <-entered:
				case <-time.After(10 * time.Second):
					t.Fatal("the wedged request never opened its source")
				}
			} else {
				time.Sleep(200 * time.Millisecond) // let it reach the FIFO's open
			}

			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			rep, err := c.Stage(ctx, agent.StageRequest{Manifest: p1})
			if err != nil {
				t.Fatalf("stage of a good manifest while another request is wedged: %v", err)
			}
			if !rep.Loaded || rep.Manifest != "v1" {
				t.Errorf("stage report %+v", rep)
			}
			if _, err := c.Verify(ctx); err != nil {
				t.Errorf("cache verify while a request is wedged: %v", err)
			}
			if _, err := c.Evict(ctx); err != nil {
				t.Errorf("cache evict while a request is wedged: %v", err)
			}
			if _, err := c.Cache(ctx); err != nil {
				t.Errorf("cache ls while a request is wedged: %v", err)
			}
			select {
			case err := <-stuck:
				// A FIFO opened without blocking is refused at once
				// (not a regular file): also fine.
				if err == nil {
					t.Errorf("the stage of a FIFO source succeeded")
				}
				return
			default:
			}
			release()
			select {
			case err := <-stuck:
				if err == nil {
					t.Errorf("the wedged stage succeeded after its source gave nothing")
				}
			case <-time.After(10 * time.Second):
				t.Error("the wedged stage did not return once its source was released")
			}
		})
	}
}
