package agent

import (
	"context"
	"errors"
	"os"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

type nopLoader struct{}

func (nopLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error { return nil }

// TestBackgroundELFBlocksOnlySegments: while the decompressed kernel is
// being derived in the background (elfMu held), a file Stage goes ahead
// (so does a crash arm, which takes the same path) and an Evict waits.
func TestBackgroundELFBlocksOnlySegments(t *testing.T) {
	ctx := context.Background()
	_, p := testimage.Default().WriteTemp(t)
	a, err := New(ctx, Options{Root: t.TempDir(), StateDir: t.TempDir(), Machine: fastreboot.Options{
		Loader: nopLoader{}, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	if _, err := a.Sync(ctx, SyncRequest{Manifest: p}); err != nil {
		t.Fatal(err)
	}

	a.elfMu.Lock() // a derivation in progress
	staged := make(chan error, 1)
	go func() {
		_, err := a.Stage(ctx, StageRequest{Manifest: p, Load: fastreboot.LoadFile})
		staged <- err
	}()
	select {
	case err := <-staged:
		if err != nil {
			t.Fatalf("file Stage during the derivation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a file Stage waited for the background derivation")
	}

	evicted := make(chan error, 1)
	go func() {
		_, err := a.Evict(ctx)
		evicted <- err
	}()
	select {
	case err := <-evicted:
		t.Fatalf("Evict ran during the derivation (err %v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	a.elfMu.Unlock()
	select {
	case err := <-evicted:
		if err != nil {
			t.Fatalf("Evict after the derivation: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Evict did not run after the derivation ended")
	}
}
