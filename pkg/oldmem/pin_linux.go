package oldmem

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"golang.org/x/sys/unix"
)

// Pinned keeps a file's first bytes mapped read-only (MAP_SHARED,
// MAP_POPULATE) and mlock'ed, so that the pages holding them stay resident
// and Pages can say where they are.
type Pinned struct {
	mu      sync.Mutex
	mem     []byte // the mapping, whole pages; nil once closed
	size    int64
	sha256  string
	xxh64   string // of the pinned bytes, computed once: the file is sealed
	pagemap string
}

// Pin maps f's first size bytes read-only and shared, populated and
// mlock'ed. sha256hex is the bytes' SHA-256 as the cache recorded it; Pin
// does not compute it again, it carries it into every Pages record with
// the XXH64 of the bytes, which it computes once (f must be sealed: the
// checksum must name the bytes for as long as the pin lives).
// root prefixes /proc/self/pagemap, which Pages reads.
func Pin(root string, f *os.File, size int64, sha256hex string) (*Pinned, error) {
	if size <= 0 {
		return nil, fmt.Errorf("%w: size %d", ErrInvalidPages, size)
	}
	if !isSHA256Hex(sha256hex) {
		return nil, fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrInvalidPages, sha256hex)
	}
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if fi.Size() < size {
		// Touching a page wholly past the end of the file would be SIGBUS.
		return nil, fmt.Errorf("%s holds %d bytes, fewer than the %d to pin", f.Name(), fi.Size(), size)
	}
	n := pageCount(size) * PageSize
	if n > uint64(^uint(0)>>1) {
		return nil, fmt.Errorf("%w: size %d does not fit in memory", ErrInvalidPages, size)
	}
	mem, err := unix.Mmap(int(f.Fd()), 0, int(n), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, fmt.Errorf("mmap %s: %w", f.Name(), err)
	}
	if err := unix.Mlock(mem); err != nil {
		unix.Munmap(mem)
		return nil, fmt.Errorf("mlock %d bytes of %s: %w", n, f.Name(), err)
	}
	return &Pinned{
		mem:     mem,
		size:    size,
		sha256:  sha256hex,
		xxh64:   fmt.Sprintf("%016x", xxhash.Sum64(mem[:size])),
		pagemap: filepath.Join(root, "/proc/self/pagemap"),
	}, nil
}

// Pages reads where the pinned bytes lie now. It reads pagemap afresh on
// each call: the kernel may have migrated the pages since the last one.
// The record it returns is validated.
func (p *Pinned) Pages() (Pages, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return Pages{}, errors.New("oldmem: Pages on a closed Pinned")
	}
	f, err := os.Open(p.pagemap)
	if err != nil {
		return Pages{}, err
	}
	defer f.Close()
	npages := len(p.mem) / PageSize
	vaddr := uintptr(unsafe.Pointer(unsafe.SliceData(p.mem)))
	buf := make([]byte, npages*8)
	if _, err := f.ReadAt(buf, int64(vaddr/PageSize)*8); err != nil {
		return Pages{}, fmt.Errorf("%s: reading %d entries at page %#x: %w", p.pagemap, npages, vaddr/PageSize, err)
	}
	entries := make([]uint64, npages)
	for i := range entries {
		entries[i] = binary.LittleEndian.Uint64(buf[i*8:])
	}
	runs, err := runsFromPagemap(entries)
	if err != nil {
		return Pages{}, fmt.Errorf("%s: %w", p.pagemap, err)
	}
	rec := Pages{Size: p.size, SHA256: p.sha256, XXH64: p.xxh64, Runs: runs}
	if err := rec.Validate(); err != nil {
		return Pages{}, err
	}
	return rec, nil
}

// Close unlocks and unmaps the pages. It is idempotent.
func (p *Pinned) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.mem == nil {
		return nil
	}
	mem := p.mem
	p.mem = nil
	errUnlock := unix.Munlock(mem)
	if errUnlock != nil {
		errUnlock = fmt.Errorf("munlock: %w", errUnlock)
	}
	errUnmap := unix.Munmap(mem)
	if errUnmap != nil {
		errUnmap = fmt.Errorf("munmap: %w", errUnmap)
	}
	return errors.Join(errUnlock, errUnmap)
}
