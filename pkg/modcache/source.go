package modcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Source opens the stored bytes of a module, for [Cache.Sync] to read.
// The cache opens a module only when its digest is not cached, reads it once
// from start to end and closes it.
type Source interface {
	Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error)
}

// ErrNoSource is returned by [DirSource] for a module whose Source is empty:
// it only ever lived in a cache.
var ErrNoSource = errors.New("module has no source")

// DirSource is a [Source] that opens module files on the local file system.
// A relative Module.Source is resolved against the directory named by the
// DirSource (usually the manifest's directory); an absolute one is used as is.
type DirSource string

// Open opens the file holding m with bootimage.OpenFile: without blocking
// (a FIFO is opened at once), and only a regular file (a device or a FIFO
// is refused, wrapping bootimage.ErrNotRegularFile) whose size is the
// manifest's (else ErrSizeMismatch), so that nothing is read from a file
// that cannot hold the module. Errors name the module and the path.
func (d DirSource) Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if m.Source == "" {
		return nil, fmt.Errorf("module %q: %w", m.Name, ErrNoSource)
	}
	p := m.Source
	if !filepath.IsAbs(p) {
		p = filepath.Join(string(d), p)
	}
	f, size, err := bootimage.OpenFile(p)
	if err != nil {
		// The error names the path.
		return nil, fmt.Errorf("module %q: %w", m.Name, err)
	}
	if size != m.Size {
		f.Close()
		return nil, fmt.Errorf("module %q: %s: %w: size %d, manifest says %d", m.Name, p, ErrSizeMismatch, size, m.Size)
	}
	return f, nil
}
