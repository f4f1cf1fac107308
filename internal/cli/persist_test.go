package cli

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
)

// TestDaemonPersistDir: by default the daemon keeps its boot record in
// /var/lib/fastreboot (under --root) when that directory exists;
// --persist-dir none keeps none.
func TestDaemonPersistDir(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(map[string]string{"var/lib/fastreboot/.keep": ""})
	record := filepath.Join(h.root, agent.DefaultPersistDir, agent.BootRecordFile)
	h.startDaemon()
	if _, err := os.Stat(record); err != nil {
		t.Errorf("default daemon: %v, want its boot record", err)
	}

	h2 := newHarness(t)
	h2.writeRoot(map[string]string{"var/lib/fastreboot/.keep": ""})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	var errw syncBuffer
	go func() { done <- h2.runTo(ctx, &errw, "daemon", "--persist-dir", "none") }()
	defer func() {
		cancel()
		if r := <-done; r.code != ExitOK {
			t.Errorf("daemon --persist-dir none exited %d: %s", r.code, r.stderr)
		}
	}()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		if c, err := agent.Dial(h2.socket); err == nil {
			if _, err := c.Info(ctx); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("daemon --persist-dir none did not answer in time")
		}
	}
	if _, err := os.Stat(filepath.Join(h2.root, agent.DefaultPersistDir, agent.BootRecordFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("daemon --persist-dir none: boot record %v, want none", err)
	}
}
