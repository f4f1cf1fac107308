package modcache

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// RehydrateReport says what Rehydrate added.
type RehydrateReport struct {
	// Modules and Bytes count the unique contents copied into the cache.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Unverified counts those of them adopted without hashing (Adopt):
	// their verification is deferred to their first use or VerifyPending.
	Unverified int `json:"unverified,omitempty"`
}

// Rehydrate fills the cache from a handoff directory carried from the
// previous generation: dir holds one file per module of m, named by its
// lowercase SHA-256 hex. Each file is copied into a new memfd while hashed,
// its size and digest are checked against m, the memfd is sealed, and the
// file is removed, so that RAM (the initramfs) holds the module only once.
// Rehydrate reads no Source and does not run Options.Check: the previous
// generation checked the modules before carrying them, and the digest check
// proves they are those bytes.
//
// A missing file, one that is not a regular file (a symbolic link is not
// followed: bootimage.OpenFileNoFollow), or one whose size or digest does
// not match, is an error naming the file; nothing from it enters the cache and it is left in place
// for inspection. Files that did verify stay cached even when others failed
// (the error joins every failure). A module already cached is not copied;
// its redundant handoff file is removed unread.
func (c *Cache) Rehydrate(ctx context.Context, dir string, m *bootimage.Manifest) (RehydrateReport, error) {
	return c.rehydrate(ctx, dir, m, false)
}

// rehydrate is Rehydrate, or Adopt if adopt.
func (c *Cache) rehydrate(ctx context.Context, dir string, m *bootimage.Manifest, adopt bool) (RehydrateReport, error) {
	return c.carry(ctx, m, "rehydrate", adopt, func(mod bootimage.Module) (bool, error) {
		return c.rehydrateOne(ctx, mod, filepath.Join(dir, mod.SHA256), adopt)
	}, "dir", dir)
}

// carry walks m's modules for Rehydrate, Adopt and AdoptSections: each
// valid digest once (a module whose content another name carried gets
// that name), one(mod) for the first module of each digest, every failure
// named by the verb and joined; ErrClosed or a done ctx stops it. The
// report counts what one added (as Unverified too when unverified).
func (c *Cache) carry(ctx context.Context, m *bootimage.Manifest, verb string, unverified bool, one func(bootimage.Module) (bool, error), logArgs ...any) (RehydrateReport, error) {
	var rep RehydrateReport
	var errs []error
	seen := make(map[string]bool)
	for _, mod := range m.Modules {
		if err := ctx.Err(); err != nil {
			errs = append(errs, fmt.Errorf("modcache: %s: %w", verb, err))
			break
		}
		if err := validModule(mod); err != nil {
			errs = append(errs, fmt.Errorf("modcache: %s module %q: %w", verb, mod.Name, err))
			continue
		}
		if seen[mod.SHA256] {
			// Same content under another name: one copy carried it.
			if e, err := c.lookup(mod.SHA256); err == nil {
				e.addName(mod.Name)
			}
			continue
		}
		seen[mod.SHA256] = true
		added, err := one(mod)
		if added {
			rep.Modules++
			rep.Bytes += mod.Size
			if unverified {
				rep.Unverified++
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("modcache: %s module %q (%s): %w", verb, mod.Name, mod.SHA256, err))
			if errors.Is(err, ErrClosed) {
				break
			}
		}
	}
	c.log.Debug("modcache: "+verb, append(logArgs, "manifest", m.Name, "unverified", unverified,
		"modules", rep.Modules, "bytes", rep.Bytes, "errors", len(errs))...)
	return rep, errors.Join(errs...)
}

// rehydrateOne copies one handoff file into the cache. added reports that a
// new entry was published (even if removing the file then failed).
func (c *Cache) rehydrateOne(ctx context.Context, m bootimage.Module, path string, adopt bool) (added bool, err error) {
	e, done, err := c.claim(ctx, m.SHA256)
	if err != nil {
		return false, err
	}
	if e != nil {
		e.addName(m.Name)
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return false, fmt.Errorf("already cached, removing handoff copy: %w", err)
		}
		return false, nil
	}
	// The handoff directory is written by the previous generation's
	// initrd, but a symbolic link or a FIFO planted there must not make
	// this read another file or block: regular files only, not followed.
	f, _, err := bootimage.OpenFileNoFollow(path)
	if err != nil {
		c.finish(done, m.SHA256, nil, 0, nil)
		return false, err // names the file
	}
	var n int64
	if adopt {
		e, n, err = c.adoptFile(ctx, m, f)
	} else {
		e, n, err = c.load(ctx, m, f, OriginHandoff, false)
	}
	f.Close()
	if ferr := c.finish(done, m.SHA256, e, n, &c.bytesRehydrated); err == nil {
		err = ferr
	}
	if err != nil {
		return false, fmt.Errorf("handoff file %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil {
		return true, fmt.Errorf("cached, but the handoff copy stays in RAM: %w", err)
	}
	return true, nil
}
