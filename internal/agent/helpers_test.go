package agent_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// fakeLoader records what kexec_file_load would have loaded instead of
// loading it. hold, if set, makes each call sleep, so that overlapping calls
// show in maxActive.
type fakeLoader struct {
	hold time.Duration
	err  error

	mu        sync.Mutex
	calls     int
	active    int
	maxActive int
	kernel    []byte
	initrd    []byte
	cmdline   string
}

func (l *fakeLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.mu.Lock()
	l.calls++
	l.active++
	l.maxActive = max(l.maxActive, l.active)
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		l.active--
		l.mu.Unlock()
	}()
	time.Sleep(l.hold)
	if l.err != nil {
		return l.err
	}
	k, err := io.ReadAll(io.NewSectionReader(kernel, 0, 1<<40))
	if err != nil {
		return err
	}
	i, err := io.ReadAll(io.NewSectionReader(initrd, 0, 1<<40))
	if err != nil {
		return err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.kernel, l.initrd, l.cmdline = k, i, cmdline
	return nil
}

func (l *fakeLoader) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// last returns the image of the last successful call.
func (l *fakeLoader) last() (kernel, initrd []byte, cmdline string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.kernel, l.initrd, l.cmdline
}

// newAgent starts an in-process agent with a fake loader on a fake root.
// opts.Root and opts.StateDir default to new temporary directories.
func newAgent(t *testing.T, opts agent.Options) (*agent.Agent, *fakeLoader) {
	t.Helper()
	if opts.Root == "" {
		opts.Root = t.TempDir()
	}
	if opts.StateDir == "" {
		opts.StateDir = t.TempDir()
	}
	l, _ := opts.Machine.Loader.(*fakeLoader)
	if l == nil {
		l = &fakeLoader{}
		opts.Machine.Loader = l
	}
	opts.Machine.Probe = func() error { return errors.New("probe must not run in tests") }
	a, err := agent.New(context.Background(), opts)
	if err != nil {
		t.Fatalf("agent.New: %v", err)
	}
	t.Cleanup(func() { a.Close() })
	return a, l
}

// socketPath returns a socket path in a new short directory: unix socket
// paths must fit in 108 bytes, which t.TempDir() may exceed.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "fr")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// serve runs a as the daemon on a new socket until the test ends, and
// returns a client of it.
func serve(t *testing.T, a *agent.Agent) (*agent.Client, string) {
	t.Helper()
	sock := socketPath(t)
	stop := serveAt(t, a, sock)
	t.Cleanup(func() {
		if err := stop(); err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	c, err := agent.Dial(sock)
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	return c, sock
}

// serveAt starts Serve on sock, waits until the socket answers and returns
// a function that stops Serve and returns its error.
func serveAt(t *testing.T, a *agent.Agent, sock string) func() error {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- agent.Serve(ctx, a, sock, agent.ServeOptions{}) }()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			cancel()
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		if c, err := agent.Dial(sock); err == nil {
			if _, err := c.Info(ctx); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("daemon on %s did not answer in time", sock)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return func() error {
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(10 * time.Second):
			return errors.New("Serve did not return after cancel")
		}
	}
}

// unpackHandoff extracts the handoff piece, the last part of a staged
// initrd, into root, as the next kernel would unpack it.
func unpackHandoff(t *testing.T, initrd []byte, rep *fastreboot.StageReport, root string) {
	t.Helper()
	if rep.HandoffBytes <= 0 || rep.HandoffBytes > int64(len(initrd)) {
		t.Fatalf("handoff piece of %d bytes in an initrd of %d", rep.HandoffBytes, len(initrd))
	}
	piece := initrd[int64(len(initrd))-rep.HandoffBytes:]
	rr := cpio.Newc.Reader(bytes.NewReader(piece))
	if err := cpio.ForEachRecord(rr, func(r cpio.Record) error {
		return cpio.CreateFileInRoot(r, root, false)
	}); err != nil {
		t.Fatalf("unpacking the handoff piece: %v", err)
	}
}
