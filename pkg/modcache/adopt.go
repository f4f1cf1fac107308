package modcache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Verification states of a listed entry, see Info.Verification.
const (
	// VerificationVerified: the entry was adopted and verified since.
	VerificationVerified = "verified"
	// VerificationPending: the entry was adopted without hashing and not
	// verified yet.
	VerificationPending = "pending"
)

// AdoptionStats describe the entries Adopt took from a handoff without
// hashing them, and their deferred verification. The JSON names are a
// stable contract (`fastreboot status --json` shows them under
// agent.cache.adoption).
type AdoptionStats struct {
	// Modules and Bytes count the entries adopted without hashing.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Pending counts adopted entries still cached and not verified yet
	// (one being verified included).
	Pending int `json:"pending"`
	// Verified counts adopted entries whose digest matched; Failed those
	// whose did not: they were dropped from the cache (Failures says
	// which and why).
	Verified int      `json:"verified"`
	Failed   int      `json:"failed"`
	Failures []string `json:"failures,omitempty"`
	// VerifyTime is the wall time spent hashing adopted entries, summed
	// over them (at low priority in the daemon, so it includes waiting for
	// the CPU).
	VerifyTime time.Duration `json:"verify_ns"`
}

// States of a verification.
const (
	verPending = iota
	verRunning
	verVerified
	verFailed
)

// verification is the deferred digest check of an adopted entry. It runs at
// most once; users arriving while it runs wait for its outcome.
type verification struct {
	mu    sync.Mutex
	state int
	done  chan struct{} // closed when a running verification ends
	err   error         // of a failed one
}

func (v *verification) unverified() bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	return v.state == verPending || v.state == verRunning
}

// Adopt fills the cache from a handoff directory like Rehydrate, but
// without hashing, so that a new generation's cache is ready as soon as its
// bytes are copied: for each file, its size is compared with m (stat, and
// the copy stops at that size), its bytes are copied into a new memfd, which
// is sealed, and the file is removed. Options.Check does not run (as for
// Rehydrate).
//
// The entries are unverified until their first use: Get, a Sync or Add that
// finds them, Verify and VerifyPending hash each one once (concurrent users
// wait for the same verification). One whose bytes do not hash to its
// digest is dropped then; Get returns an error wrapping ErrDigestMismatch,
// Sync reads the module again from its Source and says so in
// SyncReport.Warnings. Stats.Adoption counts what is pending, verified and
// failed.
//
// Errors are those of Rehydrate, except that content is not checked here.
func (c *Cache) Adopt(ctx context.Context, dir string, m *bootimage.Manifest) (RehydrateReport, error) {
	return c.rehydrate(ctx, dir, m, true)
}

// adoptFile copies the handoff file f into a new sealed memfd without
// hashing it, after checking its size.
func (c *Cache) adoptFile(ctx context.Context, m bootimage.Module, f *os.File) (*Entry, int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return nil, 0, err
	}
	if fi.Size() != m.Size {
		return nil, 0, fmt.Errorf("%w: file has %d bytes, the manifest says %d", ErrSizeMismatch, fi.Size(), m.Size)
	}
	return c.adoptReader(ctx, m, f)
}

// adoptReader copies m.Size bytes of r into a new sealed memfd without
// hashing them: the one copy Adopt and AdoptSections share. The entry it
// returns is unverified (its verification is deferred, see Adopt).
func (c *Cache) adoptReader(ctx context.Context, m bootimage.Module, r io.Reader) (*Entry, int64, error) {
	if err := ctx.Err(); err != nil {
		return nil, 0, err
	}
	mf, err := newBacking("fastreboot:" + m.Name)
	if err != nil {
		return nil, 0, err
	}
	// A tmpfs file to a memfd is a cross-device copy_file_range (EXDEV):
	// copy through one large buffer (18 system calls for 18 MiB rather
	// than io.CopyN's 32 KiB fallback). Seals exist only on memfds, so the
	// rootfs file itself cannot be made immutable and adopted in place.
	bp := bufPool.Get().(*[]byte)
	n, err := io.CopyBuffer(struct{ io.Writer }{mf}, io.LimitReader(r, m.Size), *bp)
	bufPool.Put(bp)
	if err == nil && n < m.Size {
		err = io.EOF
	}
	if err == nil {
		err = seal(mf)
	} else if errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: its bytes ended after %d of the %d bytes of the manifest", ErrSizeMismatch, n, m.Size)
	}
	if err != nil {
		mf.Close()
		return nil, n, err
	}
	c.mu.Lock()
	c.adoption.Modules++
	c.adoption.Bytes += m.Size
	c.mu.Unlock()
	return &Entry{digest: m.SHA256, size: m.Size, origin: OriginHandoff, f: mf, names: []string{m.Name}, ver: &verification{}}, n, nil
}

// ensureVerified runs the deferred verification of an adopted entry, once:
// the first caller hashes it, later callers get its outcome, concurrent
// callers wait for it (or for their ctx). A failed entry is dropped; the
// error wraps ErrDigestMismatch or ErrSizeMismatch and names the entry.
// Entries hashed on the way in return nil at once. If the hashing caller's
// ctx ends, the verification stays pending for the next user.
func (c *Cache) ensureVerified(ctx context.Context, e *Entry) error {
	v := e.ver
	if v == nil {
		return nil
	}
	for {
		v.mu.Lock()
		switch v.state {
		case verVerified:
			v.mu.Unlock()
			return nil
		case verFailed:
			err := v.err
			v.mu.Unlock()
			return err
		case verRunning:
			done := v.done
			v.mu.Unlock()
			select {
			case <-done:
				continue
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		v.state, v.done = verRunning, make(chan struct{})
		v.mu.Unlock()

		t := time.Now()
		err := c.hashEntry(ctx, e)
		took := time.Since(t)
		state := verVerified
		switch {
		case err == nil:
		case errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrSizeMismatch):
			state = verFailed
			err = fmt.Errorf("modcache: carried module %s (%s): %w", strings.Join(e.Names(), ","), e.digest, err)
		case errors.Is(err, os.ErrClosed):
			state = verPending
			err = fmt.Errorf("modcache: %s: evicted while it was verified: %w", e.digest, ErrNotCached)
		default: // ctx ended, or a read error: let the next user try
			state = verPending
			err = fmt.Errorf("modcache: verifying carried module %s (%s): %w", strings.Join(e.Names(), ","), e.digest, err)
		}
		if state == verFailed {
			// Out of the cache before anyone learns the outcome, so that
			// a user who claims the digest again loads it anew.
			c.log.Warn("modcache: a carried module failed its deferred verification; dropped", "digest", e.digest, "names", e.Names(), "err", err)
			c.drop(e)
		} else if state == verVerified {
			c.log.Debug("modcache: carried module verified", "digest", e.digest, "names", e.Names(), "took", took)
		}
		// The counters and the state change together (lock order c.mu,
		// then v.mu, as in Stats), before the waiters wake.
		c.mu.Lock()
		c.adoption.VerifyTime += took
		switch state {
		case verVerified:
			c.adoption.Verified++
		case verFailed:
			c.adoption.Failed++
			c.adoption.Failures = append(c.adoption.Failures, err.Error())
		}
		v.mu.Lock()
		v.state = state
		if state == verFailed {
			v.err = err
		}
		close(v.done)
		v.mu.Unlock()
		c.mu.Unlock()
		return err
	}
}

// VerifyPending runs the deferred verification of every adopted entry not
// verified yet (see Adopt), in digest order, sharing each with any
// concurrent user. The report counts the entries it verified or waited for;
// those that failed were dropped, and the error joins their failures. The
// daemon runs it in the background at low priority right after Adopt.
func (c *Cache) VerifyPending(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return rep, ErrClosed
	}
	var pending []*Entry
	for _, e := range c.entries {
		if e.ver != nil && e.ver.unverified() {
			pending = append(pending, e)
		}
	}
	c.mu.Unlock()
	slices.SortFunc(pending, func(a, b *Entry) int { return strings.Compare(a.digest, b.digest) })
	var errs []error
	for _, e := range pending {
		err := c.ensureVerified(ctx, e)
		if errors.Is(err, ErrNotCached) {
			continue // evicted meanwhile
		}
		if err := ctx.Err(); err != nil {
			return rep, errors.Join(append(errs, fmt.Errorf("modcache: verify pending: %w", err))...)
		}
		rep.Modules++
		rep.Bytes += e.size
		if err != nil {
			rep.Bad = append(rep.Bad, e.digest)
			errs = append(errs, err)
		}
	}
	return rep, errors.Join(errs...)
}
