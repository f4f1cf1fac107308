package modcache

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotCached: no entry holds the requested digest.
	ErrNotCached = errors.New("module not cached")
	// ErrDigestMismatch: the bytes do not hash to the expected SHA-256.
	ErrDigestMismatch = errors.New("sha256 mismatch")
	// ErrSizeMismatch: the bytes are shorter or longer than the expected size.
	ErrSizeMismatch = errors.New("size mismatch")
	// ErrClosed: the cache was closed.
	ErrClosed = errors.New("module cache closed")
)

// Origins of a cache entry, as reported by [Info].
const (
	// OriginStorage: read from a [Source] by [Cache.Sync].
	OriginStorage = "storage"
	// OriginHandoff: carried from the previous generation, [Cache.Rehydrate]
	// or [Cache.Adopt].
	OriginHandoff = "handoff"
	// OriginAdded: given to [Cache.Add] by the caller.
	OriginAdded = "added"
)

// Options configure a [Cache]. The zero value is usable.
type Options struct {
	// Logger receives debug records of what the cache reads and drops.
	// Nil discards them.
	Logger *slog.Logger
	// Check, if set, validates a module's content (e.g.
	// bootimage.CheckModule). It runs once, when a digest first enters the
	// cache through Sync or Add, on the sealed bytes whose digest was just
	// verified. A module it rejects is not added. It does not run for
	// modules rehydrated from a handoff: the previous generation checked
	// them before it carried them, and their digest is verified again.
	Check func(m bootimage.Module, r io.ReaderAt) error
	// Root is the directory holding proc/meminfo ("" means "/"). Sync
	// reads a module from its Source only if its size fits in
	// MemAvailable less MemoryMargin, else the module fails with
	// ErrModuleTooLarge naming both numbers.
	Root string
	// MemoryMargin is the memory Sync leaves available; 0 means
	// DefaultMemoryMargin, a negative value turns the check off.
	MemoryMargin int64
}

// Cache is the set of sealed in-RAM modules, keyed by SHA-256. It is safe for
// concurrent use; a module being read by one call is never read twice by a
// concurrent one (the second waits and counts a hit).
type Cache struct {
	log   *slog.Logger
	check func(bootimage.Module, io.ReaderAt) error
	// root and margin are Options.Root and Options.MemoryMargin.
	root   string
	margin int64
	// newHash makes every hash the cache computes (sha256.New; tests
	// count with it what is hashed).
	newHash func() hash.Hash

	mu       sync.Mutex
	closed   bool
	entries  map[string]*Entry
	inflight map[string]chan struct{}
	// Cumulative counters, see Stats.
	hits, misses, bytesRead, bytesAdded, bytesRehydrated int64
	// The verification of adopted entries, see AdoptionStats.
	adoption AdoptionStats
}

// New returns an empty cache.
func New(opts Options) *Cache {
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	root, margin := opts.Root, opts.MemoryMargin
	if root == "" {
		root = "/"
	}
	if margin == 0 {
		margin = DefaultMemoryMargin
	}
	return &Cache{
		log:      log,
		check:    opts.Check,
		root:     root,
		margin:   margin,
		newHash:  sha256.New,
		entries:  make(map[string]*Entry),
		inflight: make(map[string]chan struct{}),
	}
}

// Entry is one cached module content.
type Entry struct {
	digest string
	size   int64
	origin string
	f      *os.File
	// ver is the pending verification of an entry adopted without hashing
	// (Adopt); nil for an entry hashed on the way in.
	ver *verification

	mu    sync.Mutex
	names []string // sorted, unique
}

// Digest returns the lowercase SHA-256 hex digest of the content.
func (e *Entry) Digest() string { return e.digest }

// Size returns the content size in bytes.
func (e *Entry) Size() int64 { return e.size }

// ReadAt reads the content with pread(2) on the sealed memfd. After the
// entry was evicted it fails with an error wrapping os.ErrClosed.
func (e *Entry) ReadAt(p []byte, off int64) (int, error) { return e.f.ReadAt(p, off) }

// File returns the sealed memfd holding the content, e.g. as the fd for
// kexec_file_load. The cache owns it: do not close it, and do not use it
// after the entry was evicted or the cache closed. On non-Linux systems it is
// an unlinked, unsealed temporary file.
func (e *Entry) File() *os.File { return e.f }

// Names returns the module names this content was known by, sorted.
func (e *Entry) Names() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return slices.Clone(e.names)
}

func (e *Entry) addName(name string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if i, found := slices.BinarySearch(e.names, name); !found {
		e.names = slices.Insert(e.names, i, name)
	}
}

// Get returns the entry holding digest (lowercase SHA-256 hex), or an error
// wrapping ErrNotCached or ErrClosed. An entry adopted without hashing
// ([Cache.Adopt]) is verified first, once (a concurrent verification of it
// is waited for); if its bytes do not hash to its digest it is dropped and
// the error wraps ErrDigestMismatch (or ErrSizeMismatch) and names it.
func (c *Cache) Get(digest string) (*Entry, error) {
	e, err := c.lookup(digest)
	if err != nil {
		return nil, err
	}
	if err := c.ensureVerified(context.Background(), e); err != nil {
		return nil, err
	}
	return e, nil
}

// lookup is Get without the verification.
func (c *Cache) lookup(digest string) (*Entry, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil, ErrClosed
	}
	e, ok := c.entries[digest]
	if !ok {
		return nil, fmt.Errorf("modcache: %s: %w", digest, ErrNotCached)
	}
	return e, nil
}

// claimVerified is claim for a user of the entry: a cached entry adopted
// without hashing is verified first, and if it fails it is dropped and the
// digest claimed again, so that the caller loads it anew. failed is the
// failed verification (nil if none), for the caller's report.
func (c *Cache) claimVerified(ctx context.Context, digest string) (e *Entry, done chan struct{}, failed, err error) {
	for {
		e, done, err = c.claim(ctx, digest)
		if err != nil || e == nil {
			return e, done, failed, err
		}
		verr := c.ensureVerified(ctx, e)
		if verr == nil {
			return e, nil, failed, nil
		}
		if !errors.Is(verr, ErrDigestMismatch) && !errors.Is(verr, ErrSizeMismatch) {
			return nil, nil, failed, verr
		}
		failed = verr // dropped: claim again
	}
}

// claim looks digest up. If it is cached it returns the entry. Otherwise it
// registers the caller as the one loading it and returns a done channel that
// the caller must pass to finish. A concurrent load of the same digest is
// waited for.
func (c *Cache) claim(ctx context.Context, digest string) (*Entry, chan struct{}, error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return nil, nil, ErrClosed
		}
		if e, ok := c.entries[digest]; ok {
			c.mu.Unlock()
			return e, nil, nil
		}
		wait, busy := c.inflight[digest]
		if !busy {
			done := make(chan struct{})
			c.inflight[digest] = done
			c.mu.Unlock()
			return nil, done, nil
		}
		c.mu.Unlock()
		select {
		case <-wait:
		case <-ctx.Done():
			return nil, nil, ctx.Err()
		}
	}
}

// finish ends a load registered by claim. A nil e means the load failed.
// The n bytes the load read are added to the counter count points to
// (c.bytesRead, c.bytesAdded or c.bytesRehydrated; nil for none) under the
// same lock that publishes the entry.
func (c *Cache) finish(done chan struct{}, digest string, e *Entry, n int64, count *int64) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.inflight, digest)
	close(done)
	if count != nil {
		*count += n
	}
	if e == nil {
		return nil
	}
	if c.closed {
		e.f.Close()
		return ErrClosed
	}
	c.entries[digest] = e
	return nil
}

// load copies m's bytes from r into a new memfd while hashing them, checks
// size and digest, seals the memfd and, if runCheck, runs Options.Check on
// the sealed bytes. It returns the bytes read from r, also on failure.
func (c *Cache) load(ctx context.Context, m bootimage.Module, r io.Reader, origin string, runCheck bool) (*Entry, int64, error) {
	f, err := newBacking("fastreboot:" + m.Name)
	if err != nil {
		return nil, 0, err
	}
	n, sum, err := fill(ctx, f, r, m.Size, c.newHash)
	if err == nil {
		if got := hex.EncodeToString(sum[:]); got != m.SHA256 {
			err = fmt.Errorf("%w: content hashes to %s, manifest says %s", ErrDigestMismatch, got, m.SHA256)
		}
	}
	if err == nil {
		err = seal(f)
	}
	if err == nil && runCheck && c.check != nil {
		if cerr := c.check(m, io.NewSectionReader(f, 0, m.Size)); cerr != nil {
			err = fmt.Errorf("check: %w", cerr)
		}
	}
	if err != nil {
		f.Close()
		return nil, n, err
	}
	return &Entry{digest: m.SHA256, size: m.Size, origin: origin, f: f, names: []string{m.Name}}, n, nil
}

// validModule rejects a module whose digest or size cannot be what the cache
// computes, before anything is opened.
func validModule(m bootimage.Module) error {
	if !bootimage.IsSHA256Hex(m.SHA256) {
		return fmt.Errorf("sha256 %q is not 64 lowercase hex digits", m.SHA256)
	}
	if m.Size < 0 {
		return fmt.Errorf("negative size %d", m.Size)
	}
	return nil
}

// Add puts m's content, read from r, into the cache: one pass copying into a
// new memfd while hashing, then size and digest are checked, the memfd is
// sealed and Options.Check runs. If m's digest is already cached, r is not
// read at all and the existing entry is returned with m.Name added to its
// names. Bytes read count in Stats.BytesAdded. An entry adopted without
// hashing is verified first; if it fails, it is dropped (logged) and r is
// read instead.
func (c *Cache) Add(ctx context.Context, m bootimage.Module, r io.Reader) (*Entry, error) {
	if err := validModule(m); err != nil {
		return nil, fmt.Errorf("modcache: add module %q: %w", m.Name, err)
	}
	e, done, failed, err := c.claimVerified(ctx, m.SHA256)
	if failed != nil {
		c.log.Warn("modcache: the carried copy failed verification; adding the given bytes", "module", m.Name, "err", failed)
	}
	if err != nil {
		return nil, fmt.Errorf("modcache: add module %q: %w", m.Name, err)
	}
	if e != nil {
		e.addName(m.Name)
		return e, nil
	}
	e, n, err := c.load(ctx, m, r, OriginAdded, true)
	if ferr := c.finish(done, m.SHA256, e, n, &c.bytesAdded); err == nil {
		err = ferr
	}
	if err != nil {
		return nil, fmt.Errorf("modcache: add module %q: %w", m.Name, err)
	}
	return e, nil
}

// SyncReport says what one Sync did.
type SyncReport struct {
	// Hits counts the manifest's modules that were cached already,
	// Misses those that had to be read.
	Hits   int `json:"hits"`
	Misses int `json:"misses"`
	// BytesRead is the exact number of bytes read from the Source,
	// including bytes of modules that were then rejected.
	BytesRead int64 `json:"bytes_read"`
	// Read names the modules read from the Source and added, in manifest order.
	Read []string `json:"read,omitempty"`
	// Warnings say which cached modules failed their deferred verification
	// (adopted from a handoff without hashing, see Cache.Adopt): they were
	// dropped and read again from the Source.
	Warnings []string `json:"warnings,omitempty"`
}

// Sync makes every module of m cached, reading from src only the modules
// whose digest is not cached yet, each once, in manifest order. A module
// whose bytes do not match the manifest's size or digest, or that
// Options.Check rejects, is not added; the error names it and its Source,
// and the other modules are still synced (the returned error joins all
// failures). Entries already cached are never touched. Sync is safe to call
// concurrently with any other method.
func (c *Cache) Sync(ctx context.Context, m *bootimage.Manifest, src Source) (SyncReport, error) {
	var rep SyncReport
	var errs []error
	for _, mod := range m.Modules {
		if err := ctx.Err(); err != nil {
			if len(errs) == 0 || !errors.Is(errs[len(errs)-1], err) {
				errs = append(errs, fmt.Errorf("modcache: sync: %w", err))
			}
			break
		}
		n, res, failed, err := c.syncOne(ctx, mod, src)
		if failed != nil {
			w := fmt.Sprintf("module %q: the cached copy failed verification and was dropped: %v", mod.Name, failed)
			if err == nil {
				w += fmt.Sprintf("; read again from source %q", mod.Source)
			}
			rep.Warnings = append(rep.Warnings, w)
			c.log.Warn("modcache: "+w, "module", mod.Name, "source", mod.Source)
		}
		rep.BytesRead += n
		switch res {
		case syncHit:
			rep.Hits++
		case syncRead:
			rep.Misses++
			rep.Read = append(rep.Read, mod.Name)
		case syncFailed:
			rep.Misses++
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("modcache: module %q (source %q): %w", mod.Name, mod.Source, err))
			if errors.Is(err, ErrClosed) {
				break
			}
		}
	}
	c.log.Debug("modcache: sync", "manifest", m.Name, "hits", rep.Hits, "misses", rep.Misses,
		"bytes_read", rep.BytesRead, "read", rep.Read, "errors", len(errs))
	return rep, errors.Join(errs...)
}

// Outcomes of syncOne.
const (
	syncInvalid = iota // bad manifest entry: neither hit nor miss
	syncHit
	syncRead
	syncFailed // a miss that could not be read or was rejected
)

// syncOne makes one module cached and returns the bytes it read from src.
// A cached entry adopted without hashing is verified first; if it fails
// (failed), it is dropped and the module read from src like a miss, and an
// error joins the failed verification.
func (c *Cache) syncOne(ctx context.Context, m bootimage.Module, src Source) (n int64, res int, failed, err error) {
	if err := validModule(m); err != nil {
		return 0, syncInvalid, nil, err
	}
	e, done, failed, err := c.claimVerified(ctx, m.SHA256)
	if err != nil {
		return 0, syncInvalid, failed, err
	}
	if e != nil {
		e.addName(m.Name)
		c.count(&c.hits)
		return 0, syncHit, failed, nil
	}
	c.count(&c.misses)
	rc, err := c.open(ctx, m, src)
	if err != nil {
		c.finish(done, m.SHA256, nil, 0, nil)
		if failed != nil {
			err = fmt.Errorf("the cached copy failed verification and was dropped (%w); reading it again: open: %w", failed, err)
		} else {
			err = fmt.Errorf("open: %w", err)
		}
		return 0, syncFailed, failed, err
	}
	c.log.Debug("modcache: reading", "module", m.Name, "source", m.Source, "size", m.Size)
	e, n, err = c.load(ctx, m, rc, OriginStorage, true)
	rc.Close()
	if ferr := c.finish(done, m.SHA256, e, n, &c.bytesRead); err == nil {
		err = ferr
	}
	if err != nil {
		return n, syncFailed, failed, err
	}
	return n, syncRead, failed, nil
}

// open opens m's Source if m fits in the available memory.
func (c *Cache) open(ctx context.Context, m bootimage.Module, src Source) (io.ReadCloser, error) {
	if err := c.fits(m.Size); err != nil {
		return nil, err
	}
	return src.Open(ctx, m)
}

func (c *Cache) count(p *int64) {
	c.mu.Lock()
	*p++
	c.mu.Unlock()
}

// VerifyReport says what Verify checked.
type VerifyReport struct {
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Bad lists the digests of entries whose content no longer matched;
	// they were dropped from the cache.
	Bad []string `json:"bad,omitempty"`
}

// Verify re-hashes every entry, reading it with pread(2) from its memfd (an
// entry adopted without hashing counts as verified from then on). An
// entry whose size or digest no longer matches (which sealing should make
// impossible: it means memory corruption) is dropped from the cache so that
// it is never loaded, and reported; the error wraps ErrDigestMismatch (or
// ErrSizeMismatch) and names each bad entry's digest and names. A later Sync
// reads a dropped module again from storage.
func (c *Cache) Verify(ctx context.Context) (VerifyReport, error) {
	var rep VerifyReport
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return rep, ErrClosed
	}
	entries := make([]*Entry, 0, len(c.entries))
	for _, e := range c.entries {
		entries = append(entries, e)
	}
	c.mu.Unlock()
	slices.SortFunc(entries, func(a, b *Entry) int { return strings.Compare(a.digest, b.digest) })

	var errs []error
	for _, e := range entries {
		if err := ctx.Err(); err != nil {
			return rep, errors.Join(append(errs, fmt.Errorf("modcache: verify: %w", err))...)
		}
		first, err := c.verifyOnce(ctx, e)
		if errors.Is(err, os.ErrClosed) || errors.Is(err, ErrNotCached) {
			continue // evicted meanwhile
		}
		if err != nil && ctx.Err() != nil {
			return rep, errors.Join(append(errs, fmt.Errorf("modcache: verify: %w", err))...)
		}
		rep.Modules++
		rep.Bytes += e.size
		if err == nil {
			continue
		}
		rep.Bad = append(rep.Bad, e.digest)
		errs = append(errs, fmt.Errorf("modcache: verify %s (%v): %w", e.digest, e.Names(), err))
		if !first {
			c.drop(e) // a deferred verification drops its entry itself
		}
	}
	return rep, errors.Join(errs...)
}

// verifyOnce verifies e: an entry adopted without hashing whose deferred
// verification did not run yet gets it (first is true; it drops the entry
// if it fails), any other entry is hashed again.
func (c *Cache) verifyOnce(ctx context.Context, e *Entry) (first bool, err error) {
	if e.ver != nil && e.ver.unverified() {
		return true, c.ensureVerified(ctx, e)
	}
	return false, c.hashEntry(ctx, e)
}

// hashEntry hashes e's memfd with pread(2) and compares size and digest.
func (c *Cache) hashEntry(ctx context.Context, e *Entry) error {
	fi, err := e.f.Stat()
	if err != nil {
		return err
	}
	if fi.Size() != e.size {
		return fmt.Errorf("%w: memfd holds %d bytes, entry says %d", ErrSizeMismatch, fi.Size(), e.size)
	}
	h := c.newHash()
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	for off := int64(0); off < e.size; {
		if err := ctx.Err(); err != nil {
			return err
		}
		n, err := e.f.ReadAt((*bp)[:min(int64(len(*bp)), e.size-off)], off)
		h.Write((*bp)[:n])
		off += int64(n)
		if err != nil && !(err == io.EOF && off == e.size) {
			return fmt.Errorf("pread: %w", err)
		}
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != e.digest {
		return fmt.Errorf("%w: content now hashes to %s", ErrDigestMismatch, got)
	}
	return nil
}

// drop removes e from the cache (if it is still the entry for its digest)
// and closes it.
func (c *Cache) drop(e *Entry) {
	c.mu.Lock()
	if c.entries[e.digest] == e {
		delete(c.entries, e.digest)
	}
	c.mu.Unlock()
	c.log.Debug("modcache: dropped", "digest", e.digest, "names", e.Names())
	e.f.Close()
}

// EvictReport says what Evict dropped.
type EvictReport struct {
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
}

// Evict drops and closes every entry whose digest no manifest in keep
// references. With no manifest it empties the cache. Files of dropped
// entries must no longer be in use.
func (c *Cache) Evict(keep ...*bootimage.Manifest) EvictReport {
	want := make(map[string]bool)
	for _, m := range keep {
		for _, mod := range m.Modules {
			want[mod.SHA256] = true
		}
	}
	var gone []*Entry
	c.mu.Lock()
	for d, e := range c.entries {
		if !want[d] {
			delete(c.entries, d)
			gone = append(gone, e)
		}
	}
	c.mu.Unlock()
	var rep EvictReport
	for _, e := range gone {
		rep.Modules++
		rep.Bytes += e.size
		c.log.Debug("modcache: evicted", "digest", e.digest, "names", e.Names(), "size", e.size)
		e.f.Close()
	}
	return rep
}

// Stats are the cache's current size and cumulative counters.
type Stats struct {
	// Modules is the number of unique contents held.
	Modules int `json:"modules"`
	// BytesHeld is the sum of their sizes: each content once.
	BytesHeld int64 `json:"bytes_held"`
	// OverheadBytes estimates the RAM used beyond BytesHeld, see Overhead.
	OverheadBytes int64 `json:"overhead_bytes"`
	// Hits and Misses count Sync's module lookups.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// BytesRead counts bytes read from Sources (Sync): storage.
	BytesRead int64 `json:"bytes_read"`
	// BytesAdded counts bytes read from Add's readers (content a caller
	// derived or already held, such as a decompressed kernel).
	BytesAdded int64 `json:"bytes_added"`
	// BytesRehydrated counts bytes copied from handoff files (Rehydrate
	// and Adopt).
	BytesRehydrated int64 `json:"bytes_rehydrated"`
	// Adoption is the deferred verification of the entries Adopt took
	// from a handoff without hashing them.
	Adoption AdoptionStats `json:"adoption"`
}

// Stats returns the current statistics.
func (c *Cache) Stats() Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := Stats{
		Modules:         len(c.entries),
		Hits:            c.hits,
		Misses:          c.misses,
		BytesRead:       c.bytesRead,
		BytesAdded:      c.bytesAdded,
		BytesRehydrated: c.bytesRehydrated,
		Adoption:        c.adoption,
	}
	s.Adoption.Failures = slices.Clone(c.adoption.Failures)
	for _, e := range c.entries {
		s.BytesHeld += e.size
		s.OverheadBytes += Overhead(e.size, e.Names())
		if e.ver != nil && e.ver.unverified() {
			s.Adoption.Pending++
		}
	}
	return s
}

// PerEntryOverhead is the fixed RAM estimate per entry: about 400 bytes of Go
// memory (Entry, os.File, digest string, map slot) and about 1.6 KiB in the
// kernel (shmem inode, dentry, struct file of the memfd).
const PerEntryOverhead = 2048

// Overhead estimates the RAM an entry of size bytes known by names uses
// beyond its content:
//
//	PerEntryOverhead
//	+ sum of len(name)
//	+ roundup(size, pagesize) - size      (tail of the last shmem page)
//	+ ceil(pages / 64) * 576              (page-cache xarray nodes)
//
// with pagesize from os.Getpagesize. Transparent huge pages on shmem (off by
// default for memfds) would round to 2 MiB instead.
func Overhead(size int64, names []string) int64 {
	ps := int64(os.Getpagesize())
	pages := (size + ps - 1) / ps
	o := int64(PerEntryOverhead) + pages*ps - size + (pages+63)/64*576
	for _, n := range names {
		o += int64(len(n))
	}
	return o
}

// Info describes one entry, for listing.
type Info struct {
	Digest string   `json:"digest"`
	Size   int64    `json:"size"`
	Names  []string `json:"names"`
	// Origin is OriginStorage, OriginHandoff or OriginAdded.
	Origin string `json:"origin"`
	// Verification is set for an entry adopted without hashing (Adopt):
	// VerificationPending until it is verified (Get verifies it before
	// handing it out), then VerificationVerified. Entries hashed on the way
	// in leave it empty.
	Verification string `json:"verification,omitempty"`
}

// List returns every entry, sorted by digest.
func (c *Cache) List() []Info {
	c.mu.Lock()
	list := make([]Info, 0, len(c.entries))
	for _, e := range c.entries {
		var v string
		if e.ver != nil {
			v = VerificationVerified
			if e.ver.unverified() {
				v = VerificationPending
			}
		}
		list = append(list, Info{Digest: e.digest, Size: e.size, Names: e.Names(), Origin: e.origin, Verification: v})
	}
	c.mu.Unlock()
	slices.SortFunc(list, func(a, b Info) int { return strings.Compare(a.Digest, b.Digest) })
	return list
}

// Close closes every memfd; afterwards methods return ErrClosed (Evict
// drops nothing, Stats and List report an empty cache). A load still in
// progress is discarded when it completes.
func (c *Cache) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return ErrClosed
	}
	c.closed = true
	entries := c.entries
	c.entries = make(map[string]*Entry)
	c.mu.Unlock()
	var errs []error
	for _, e := range entries {
		if err := e.f.Close(); err != nil {
			errs = append(errs, fmt.Errorf("modcache: close %s: %w", e.digest, err))
		}
	}
	return errors.Join(errs...)
}
