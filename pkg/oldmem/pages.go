package oldmem

import (
	"fmt"
	"math"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

const (
	// PageSize is the size of the pages a Pages record counts: 4 KiB.
	PageSize = 4096
	// MaxRuns bounds a record's runs: a 60 MiB file scattered page by
	// page has 15360; a million is far beyond any file the cache pins.
	MaxRuns = 1 << 20
)

// maxPFN bounds a run's end: (pfn+count)*PageSize fits in a uint64.
const maxPFN = math.MaxUint64 / PageSize

// Pages records where a file's bytes lie in physical memory.
type Pages struct {
	Size   int64  `json:"size"`   // bytes of the file
	SHA256 string `json:"sha256"` // lowercase hex SHA-256 of those bytes
	// XXH64 is the lowercase hex XXH64 (seed 0) of those bytes, computed
	// by Pin from the pinned file: what Map checks the mapped pages
	// against (see the package doc for why not the SHA-256).
	XXH64 string      `json:"xxh64"`
	Runs  [][2]uint64 `json:"runs"` // [first page frame number, page count], in file order; 4 KiB pages
}

// pageCount returns the pages size bytes occupy, rounded up.
func pageCount(size int64) uint64 {
	return (uint64(size) + PageSize - 1) / PageSize
}

// Validate checks the record's rules: a positive size, a SHA-256 of 64
// and an XXH64 of 16 lowercase hex digits, at most MaxRuns runs, each of at least one page and
// whose physical range fits in 64 bits, and exactly the pages the size
// needs. Errors wrap ErrInvalidPages.
func (p Pages) Validate() error {
	if p.Size <= 0 {
		return fmt.Errorf("%w: size %d", ErrInvalidPages, p.Size)
	}
	if !isSHA256Hex(p.SHA256) {
		return fmt.Errorf("%w: sha256 %q is not 64 lowercase hex digits", ErrInvalidPages, p.SHA256)
	}
	if !isHex(p.XXH64, 16) {
		return fmt.Errorf("%w: xxh64 %q is not 16 lowercase hex digits", ErrInvalidPages, p.XXH64)
	}
	if len(p.Runs) > MaxRuns {
		return fmt.Errorf("%w: %d runs, at most %d", ErrInvalidPages, len(p.Runs), MaxRuns)
	}
	need := pageCount(p.Size)
	var total uint64
	for i, r := range p.Runs {
		pfn, n := r[0], r[1]
		if n == 0 {
			return fmt.Errorf("%w: run %d (PFN %#x) has no pages", ErrInvalidPages, i, pfn)
		}
		if pfn > maxPFN || n > maxPFN-pfn {
			return fmt.Errorf("%w: run %d: PFN %#x + %d pages overflows the physical address space", ErrInvalidPages, i, pfn, n)
		}
		if n > need-total {
			return fmt.Errorf("%w: runs hold more than the %d pages of %d bytes (at run %d)", ErrInvalidPages, need, p.Size, i)
		}
		total += n
	}
	if total != need {
		return fmt.Errorf("%w: runs hold %d pages, %d bytes need %d", ErrInvalidPages, total, p.Size, need)
	}
	return nil
}

func isSHA256Hex(s string) bool { return isHex(s, 64) }

// isHex reports whether s is n lowercase hex digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst).
const (
	pmPresent = 1 << 63
	pmPFNMask = 1<<55 - 1
)

// runsFromPagemap turns /proc/self/pagemap entries, one per page of a
// mapping in order, into runs of physically consecutive pages. A page not
// present or read as PFN 0 fails with ErrNotPinnable naming its index.
func runsFromPagemap(entries []uint64) ([][2]uint64, error) {
	var runs [][2]uint64
	for i, e := range entries {
		if e&pmPresent == 0 {
			return nil, fmt.Errorf("%w: page %d is not present", ErrNotPinnable, i)
		}
		pfn := e & pmPFNMask
		if pfn == 0 {
			return nil, fmt.Errorf("%w: page %d reads as PFN 0 (reading PFNs needs CAP_SYS_ADMIN)", ErrNotPinnable, i)
		}
		if n := len(runs); n > 0 && runs[n-1][0]+runs[n-1][1] == pfn {
			runs[n-1][1]++
			continue
		}
		runs = append(runs, [2]uint64{pfn, 1})
	}
	return runs, nil
}

// piece is one mmap of the vmcore: length bytes at file offset off, which
// hold physical memory from phys, mapped at byte dst of the destination.
type piece struct {
	dst, off, phys, length uint64
}

// plan places runs (validated, in file order) in the vmcore's PT_LOAD
// segments: one piece per stretch that is contiguous both physically and in
// the file, a run crossing from one segment into the next split in two. A
// page outside every segment fails with ErrNoOldMemory; a piece whose file
// offset or length is not page-aligned cannot be mmap'ed and fails too.
func plan(runs [][2]uint64, loads []crashhandler.Segment) ([]piece, error) {
	var out []piece
	var dst uint64
	for i, r := range runs {
		if r[0] > maxPFN || r[1] > maxPFN-r[0] {
			return nil, fmt.Errorf("%w: run %d: PFN %#x + %d pages overflows", ErrInvalidPages, i, r[0], r[1])
		}
		phys, n := r[0]*PageSize, r[1]*PageSize
		for n > 0 {
			s, ok := segmentAt(loads, phys)
			if !ok {
				return nil, fmt.Errorf("%w: run %d: physical %#x-%#x is not in any PT_LOAD of the vmcore", ErrNoOldMemory, i, phys, phys+n)
			}
			in := phys - s.Paddr
			if s.Offset > math.MaxUint64-in {
				return nil, fmt.Errorf("%w: PT_LOAD at physical %#x: file offset %#x overflows", ErrNoOldMemory, s.Paddr, s.Offset)
			}
			off := s.Offset + in
			take := min(n, s.Filesz-in)
			if off%PageSize != 0 {
				return nil, fmt.Errorf("run %d: physical %#x lies at vmcore offset %#x, not page-aligned: cannot mmap it", i, phys, off)
			}
			if take%PageSize != 0 {
				return nil, fmt.Errorf("run %d: the PT_LOAD holding physical %#x ends mid-page at %#x: cannot mmap it", i, phys, phys+take)
			}
			if k := len(out); k > 0 && out[k-1].phys+out[k-1].length == phys && out[k-1].off+out[k-1].length == off {
				out[k-1].length += take
			} else {
				out = append(out, piece{dst: dst, off: off, phys: phys, length: take})
			}
			dst += take
			phys += take
			n -= take
		}
	}
	return out, nil
}

// segmentAt returns the segment whose file data holds physical address
// phys.
func segmentAt(loads []crashhandler.Segment, phys uint64) (crashhandler.Segment, bool) {
	for _, s := range loads {
		if s.Paddr <= phys && phys-s.Paddr < s.Filesz {
			return s, true
		}
	}
	return crashhandler.Segment{}, false
}
