package qemutests

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// image is a bootable guest: kernel, the initrd pieces and their
// concatenation.
type image struct {
	kernel *harness.Kernel
	base   *harness.BasePiece
	kmods  *harness.KmodsPiece
	site   string
	initrd string
}

var (
	baseOnce  sync.Once
	basePiece *harness.BasePiece
	baseErr   error
)

// buildBase builds (or takes from the cache) the base piece once per test
// binary. The fastreboot CLI goes in when it builds; if it does not (the
// package is being written), the guest runs without it and the test says so.
func buildBase(t *testing.T) *harness.BasePiece {
	t.Helper()
	baseOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		opts := harness.BaseOptions{Logger: slog.New(slog.NewTextHandler(testLogWriter{}, nil))}
		switch err := harness.CheckBuild(ctx, "", harness.FastrebootCmd); {
		case err == nil:
			opts.Commands = append(opts.Commands, harness.FastrebootCmd)
		case errors.Is(err, harness.ErrNoPackage):
			t.Logf("base piece without the fastreboot CLI: %v", err)
		default:
			t.Logf("base piece without the fastreboot CLI, it does not build: %v", err)
		}
		basePiece, baseErr = harness.BuildBase(ctx, opts)
	})
	if baseErr != nil {
		t.Fatalf("build base piece: %v", baseErr)
	}
	return basePiece
}

// testLogWriter sends harness progress to stderr, visible with -v while a
// long build runs.
type testLogWriter struct{}

func (testLogWriter) Write(p []byte) (int, error) { return os.Stderr.Write(p) }

// buildImage assembles base + kmods(StorageModules) + site(release) for k.
func buildImage(t *testing.T, k *harness.Kernel, release string) *image {
	t.Helper()
	dir := t.TempDir()
	img := &image{kernel: k, base: buildBase(t)}
	var err error
	img.kmods, err = harness.BuildKmods(filepath.Join(dir, "kmods.cpio"), k, harness.None, harness.StorageModules...)
	if err != nil {
		t.Fatalf("build kmods piece: %v", err)
	}
	img.site = filepath.Join(dir, "site-"+release+".cpio")
	if err := harness.BuildSite(img.site, release); err != nil {
		t.Fatalf("build site piece: %v", err)
	}
	img.initrd = filepath.Join(dir, "initrd-"+release+".img")
	if _, err := harness.Concat(img.initrd, img.base.Path, img.kmods.Path, img.site); err != nil {
		t.Fatalf("concat initrd: %v", err)
	}
	return img
}
