package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// fakeLoader records what kexec_file_load would have loaded. Like the
// kernel, it replaces the loaded image only on success.
type fakeLoader struct {
	mu      sync.Mutex
	calls   int
	err     error // returned by every call
	loaded  *loadedImage
	lastErr error
}

type loadedImage struct {
	kernel, initrd []byte
	kernelName     string
	cmdline        string
	flags          int
	initrdSeals    int
}

func readWhole(f *os.File) ([]byte, error) {
	return io.ReadAll(io.NewSectionReader(f, 0, 1<<62))
}

func (l *fakeLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	if l.err != nil {
		return l.err
	}
	img := &loadedImage{kernelName: kernel.Name(), cmdline: cmdline, flags: flags}
	var err error
	if img.kernel, err = readWhole(kernel); err != nil {
		return err
	}
	if img.initrd, err = readWhole(initrd); err != nil {
		return err
	}
	if img.initrdSeals, err = sealsOf(initrd); err != nil {
		return err
	}
	l.loaded = img
	return nil
}

func (l *fakeLoader) state() (int, *loadedImage) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls, l.loaded
}

// fakeRebooter records sync and reboot calls.
type fakeRebooter struct {
	mu        sync.Mutex
	calls     []string
	rebootErr map[RebootCmd]error
}

func (r *fakeRebooter) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "sync")
	return nil
}

func (r *fakeRebooter) Reboot(cmd RebootCmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, cmd.String())
	return r.rebootErr[cmd]
}

// countingSource is a modcache.Source that counts opens and can fail them.
type countingSource struct {
	src   modcache.Source
	mu    sync.Mutex
	opens []string
	fail  bool
}

func (s *countingSource) Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error) {
	s.mu.Lock()
	s.opens = append(s.opens, m.Name)
	s.mu.Unlock()
	if s.fail {
		return nil, fmt.Errorf("countingSource: %s: %w", m.Name, errors.ErrUnsupported)
	}
	return s.src.Open(ctx, m)
}

// stepClock returns a clock that advances by step at every reading.
func stepClock(start time.Time, step time.Duration) func() time.Time {
	var mu sync.Mutex
	t := start
	return func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		now := t
		t = t.Add(step)
		return now
	}
}

var t0 = time.Date(2025, 11, 25, 15, 0, 0, 0, time.UTC)

// newCache returns a cache that checks modules as they enter, as a daemon
// would create it.
func newCache(t *testing.T) *modcache.Cache {
	t.Helper()
	c := modcache.New(modcache.Options{Check: bootimage.CheckModule})
	t.Cleanup(func() { c.Close() })
	return c
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p))
	return len(p), nil
}
