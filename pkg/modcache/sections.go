package modcache

import (
	"context"
	"fmt"
	"io"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Sections gives the bytes a previous generation kept for a digest, or nil
// if it kept none: a kept memory region's index (keptmem.Index) is one.
// The bytes are read through the section as they are, without hashing.
type Sections interface {
	Section(digest string) *io.SectionReader
}

// AdoptSections fills the cache like Adopt, from sections instead of a
// handoff directory: for each module of m not cached yet, the section of
// its digest is copied into a new sealed memfd without hashing, its
// verification deferred to its first use or VerifyPending exactly as for
// Adopt (an entry whose bytes do not hash to its digest is dropped then).
// The entries count as carried (Info.Origin is OriginHandoff).
//
// A module without a section, or whose section's size differs from m's,
// is an error naming it (ErrNotCached, ErrSizeMismatch); the others are
// adopted (the error joins every failure). The sections are only read.
func (c *Cache) AdoptSections(ctx context.Context, src Sections, m *bootimage.Manifest) (RehydrateReport, error) {
	return c.carry(ctx, m, "adopt", true, func(mod bootimage.Module) (bool, error) {
		return c.adoptSection(ctx, src, mod)
	})
}

// adoptSection adopts one module from its section; added reports a new
// entry.
func (c *Cache) adoptSection(ctx context.Context, src Sections, m bootimage.Module) (added bool, err error) {
	e, done, err := c.claim(ctx, m.SHA256)
	if err != nil {
		return false, err
	}
	if e != nil {
		e.addName(m.Name)
		return false, nil
	}
	sec := src.Section(m.SHA256)
	switch {
	case sec == nil:
		err = fmt.Errorf("%w: no kept section holds it", ErrNotCached)
	case sec.Size() != m.Size:
		err = fmt.Errorf("%w: its section has %d bytes, the manifest says %d", ErrSizeMismatch, sec.Size(), m.Size)
	}
	var n int64
	if err == nil {
		e, n, err = c.adoptReader(ctx, m, sec)
	}
	if ferr := c.finish(done, m.SHA256, e, n, &c.bytesRehydrated); err == nil {
		err = ferr
	}
	return err == nil, err
}
