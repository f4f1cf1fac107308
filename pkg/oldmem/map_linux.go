package oldmem

import (
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"unsafe"

	"github.com/cespare/xxhash/v2"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"golang.org/x/sys/unix"
)

// Map maps the pages p names from root's /proc/vmcore, read-only, into one
// contiguous range, and checks their XXH64 against p's. It returns the
// file's bytes (len(data) == p.Size) and the function that unmaps them; the
// bytes are valid until then. Nothing is copied: the range's pages are the
// crashed kernel's own. A run outside the vmcore's PT_LOAD segments fails
// with ErrNoOldMemory, a checksum that differs with ErrMoved (the pages moved
// or were reused since the record); every failure unmaps what was mapped.
func Map(root string, p Pages) (data []byte, unmap func(), err error) {
	if err := p.Validate(); err != nil {
		return nil, nil, err
	}
	name := filepath.Join(root, "/proc/vmcore")
	f, err := os.Open(name)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	v, err := crashhandler.OpenVmcore(f)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	pieces, err := plan(p.Runs, v.Loads())
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", name, err)
	}
	if fi, err := f.Stat(); err == nil && fi.Size() > 0 {
		// Pages past the end of the file would be SIGBUS when read.
		for _, pc := range pieces {
			if pc.off > uint64(fi.Size()) || pc.length > uint64(fi.Size())-pc.off {
				return nil, nil, fmt.Errorf("%s: %w: physical %#x-%#x lies at offset %#x-%#x, past the file's %d bytes",
					name, ErrNoOldMemory, pc.phys, pc.phys+pc.length, pc.off, pc.off+pc.length, fi.Size())
			}
		}
	}
	total := pageCount(p.Size) * PageSize
	if total > uint64(^uint(0)>>1) {
		return nil, nil, fmt.Errorf("%w: size %d does not fit in memory", ErrInvalidPages, p.Size)
	}
	// Reserve the whole range first, so the pieces land side by side and
	// nothing else is mapped between them.
	base, err := unix.MmapPtr(-1, 0, nil, uintptr(total), unix.PROT_NONE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS|unix.MAP_NORESERVE)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap %d bytes of address space: %w", total, err)
	}
	var once sync.Once
	unmap = func() {
		once.Do(func() { unix.MunmapPtr(base, uintptr(total)) })
	}
	for _, pc := range pieces {
		at := unsafe.Add(base, pc.dst)
		got, err := unix.MmapPtr(int(f.Fd()), int64(pc.off), at, uintptr(pc.length), unix.PROT_READ, unix.MAP_SHARED|unix.MAP_FIXED)
		if err == nil && got != at {
			unix.MunmapPtr(got, uintptr(pc.length))
			err = fmt.Errorf("mapped at %p, not %p", got, at)
		}
		if err != nil {
			unmap()
			return nil, nil, fmt.Errorf("mmap %s at offset %#x (%d bytes, physical %#x): %w", name, pc.off, pc.length, pc.phys, err)
		}
	}
	data = unsafe.Slice((*byte)(base), p.Size)
	if got := fmt.Sprintf("%016x", xxhash.Sum64(data)); got != p.XXH64 {
		unmap()
		return nil, nil, fmt.Errorf("%w: %d bytes from %s have XXH64 %s, the record says %s (of SHA-256 %s)", ErrMoved, p.Size, name, got, p.XXH64, p.SHA256)
	}
	return data, unmap, nil
}
