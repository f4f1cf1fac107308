package keptmem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// The on-region format; doc.go describes it.
const (
	// Magic opens a valid header. Write zeroes it first and writes it
	// last.
	Magic = "FRKEPT\x00\x01"
	// FormatVersion is the format this package writes and reads.
	FormatVersion = 1
	// BlockSize aligns every module and the index.
	BlockSize = 4096
	// DataStart is where the modules may begin: after the header's block
	// (0-4095) and a zero block (4096-8191) where nd_pmem's probe looks for
	// a BTT, pfn or dax info block, which module bytes must never form
	// (docs/kernel-facts.md, Kept memory region).
	DataStart = 2 * BlockSize
	// HeaderSize is the header's encoded length at offset 0.
	HeaderSize = 128
	// EntrySize is one index entry's length.
	EntrySize = 80
)

// Header field offsets.
const (
	offMagic      = 0
	offVersion    = 8
	offHeaderSize = 12
	offSequence   = 16
	offGeneration = 24
	offRegionSize = 32
	offIndexOff   = 40
	offIndexLen   = 48
	offIndexSum   = 56
	offReserved   = 88
	offHeaderSum  = 96
)

// Header is the decoded header of a kept region.
type Header struct {
	// Sequence counts the writes of the region: one more than the last
	// valid header's when Write found one, else 1.
	Sequence uint64 `json:"sequence"`
	// Generation is the writer's, as WriteOptions gave it.
	Generation uint64 `json:"generation"`
	// RegionSize is the device's size when written.
	RegionSize uint64 `json:"region_size"`
	// IndexOffset and IndexLength locate the index; IndexSHA256 is its
	// digest.
	IndexOffset uint64   `json:"index_offset"`
	IndexLength uint64   `json:"index_length"`
	IndexSHA256 [32]byte `json:"-"`
}

func (h Header) encode() []byte {
	b := make([]byte, HeaderSize)
	copy(b[offMagic:], Magic)
	le := binary.LittleEndian
	le.PutUint32(b[offVersion:], FormatVersion)
	le.PutUint32(b[offHeaderSize:], HeaderSize)
	le.PutUint64(b[offSequence:], h.Sequence)
	le.PutUint64(b[offGeneration:], h.Generation)
	le.PutUint64(b[offRegionSize:], h.RegionSize)
	le.PutUint64(b[offIndexOff:], h.IndexOffset)
	le.PutUint64(b[offIndexLen:], h.IndexLength)
	copy(b[offIndexSum:], h.IndexSHA256[:])
	sum := sha256.Sum256(b[:offHeaderSum])
	copy(b[offHeaderSum:], sum[:])
	return b
}

// Entry is one module in the region's index.
type Entry struct {
	// Digest is the module's lowercase SHA-256 hex, as the writer claimed
	// it; nothing checked the bytes since (see Index.Section).
	Digest string `json:"sha256"`
	// Offset and Size locate its bytes from the region's start.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
}

func (e Entry) end() int64 { return e.Offset + e.Size }

// Index is a kept region's validated index: the modules it holds, read in
// place from the device (nothing is copied until a section is read).
type Index struct {
	dev     Device
	header  Header
	entries []Entry // sorted by digest
}

// Header returns the region's header.
func (ix *Index) Header() Header { return ix.header }

// Entries returns the modules, sorted by digest.
func (ix *Index) Entries() []Entry { return slices.Clone(ix.entries) }

// Len is the number of modules.
func (ix *Index) Len() int { return len(ix.entries) }

// Section returns a reader of the kept bytes of the module with this
// digest, or nil if the region does not hold it. The bytes are read from
// the device as they are: the caller verifies their digest before using
// them (modcache.Cache.AdoptSections defers that check to the first use).
// Index satisfies modcache.Sections.
func (ix *Index) Section(digest string) *io.SectionReader {
	i, ok := slices.BinarySearchFunc(ix.entries, digest, func(e Entry, d string) int { return strings.Compare(e.Digest, d) })
	if !ok {
		return nil
	}
	e := ix.entries[i]
	return io.NewSectionReader(ix.dev, e.Offset, e.Size)
}

// Open reads and validates the index of the region on dev. The header's
// magic, version, length and checksum, its region size against dev.Size,
// the index's bounds and SHA-256, and every entry (a well-formed digest,
// sorted and unique, a BlockSize-aligned offset at or after DataStart, its
// bytes before the index and overlapping no other entry's), and that the
// block nd_pmem probes (4096-8191) is zero, are checked. The modules'
// bytes are not read.
//
// A region without the magic (blank, never written, or invalidated by a
// Write that did not finish) is ErrNoIndex; a header of another version
// ErrVersion; any other inconsistency ErrCorrupt; a device too small for a
// header ErrTooSmall. Each error names the device and what is wrong.
func Open(dev Device) (*Index, error) {
	name := deviceName(dev)
	size := dev.Size()
	if size < DataStart {
		return nil, fmt.Errorf("%w: %s has %d bytes, less than the %d bytes before the modules", ErrTooSmall, name, size, DataStart)
	}
	b := make([]byte, HeaderSize)
	if _, err := dev.ReadAt(b, 0); err != nil {
		return nil, fmt.Errorf("keptmem: reading the header of %s: %w", name, err)
	}
	h, err := decodeHeader(b, uint64(size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	probe := make([]byte, DataStart-BlockSize)
	if _, err := dev.ReadAt(probe, BlockSize); err != nil {
		return nil, fmt.Errorf("keptmem: reading %s at %#x: %w", name, BlockSize, err)
	}
	if !allZero(probe) {
		return nil, fmt.Errorf("%w: %s: the block at %#x, which nd_pmem probes for an info block, is not zero", ErrCorrupt, name, BlockSize)
	}
	ib := make([]byte, h.IndexLength)
	if _, err := dev.ReadAt(ib, int64(h.IndexOffset)); err != nil {
		return nil, fmt.Errorf("keptmem: reading the index of %s (%d bytes at %#x): %w", name, h.IndexLength, h.IndexOffset, err)
	}
	if sum := sha256.Sum256(ib); sum != h.IndexSHA256 {
		return nil, fmt.Errorf("%w: %s: the index (%d bytes at %#x) does not match the header's SHA-256", ErrCorrupt, name, h.IndexLength, h.IndexOffset)
	}
	entries, err := decodeIndex(ib, int64(h.IndexOffset))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Index{dev: dev, header: h, entries: entries}, nil
}

// decodeHeader validates the header bytes b of a region of size bytes.
func decodeHeader(b []byte, size uint64) (Header, error) {
	if string(b[offMagic:offMagic+len(Magic)]) != Magic {
		if allZero(b) {
			return Header{}, fmt.Errorf("%w: the header is blank", ErrNoIndex)
		}
		return Header{}, fmt.Errorf("%w: no %q magic at offset 0", ErrNoIndex, Magic)
	}
	le := binary.LittleEndian
	sum := sha256.Sum256(b[:offHeaderSum])
	if !bytes.Equal(sum[:], b[offHeaderSum:HeaderSize]) {
		return Header{}, fmt.Errorf("%w: the header's checksum does not match", ErrCorrupt)
	}
	if v := le.Uint32(b[offVersion:]); v != FormatVersion {
		return Header{}, fmt.Errorf("%w: version %d, this reader knows %d", ErrVersion, v, FormatVersion)
	}
	if n := le.Uint32(b[offHeaderSize:]); n != HeaderSize {
		return Header{}, fmt.Errorf("%w: the header says it has %d bytes, not %d", ErrCorrupt, n, HeaderSize)
	}
	if !allZero(b[offReserved:offHeaderSum]) {
		return Header{}, fmt.Errorf("%w: the header's reserved bytes are not zero", ErrCorrupt)
	}
	h := Header{
		Sequence:    le.Uint64(b[offSequence:]),
		Generation:  le.Uint64(b[offGeneration:]),
		RegionSize:  le.Uint64(b[offRegionSize:]),
		IndexOffset: le.Uint64(b[offIndexOff:]),
		IndexLength: le.Uint64(b[offIndexLen:]),
	}
	copy(h.IndexSHA256[:], b[offIndexSum:])
	switch {
	case h.RegionSize != size:
		return Header{}, fmt.Errorf("%w: the header was written for a region of %d bytes, the device has %d", ErrCorrupt, h.RegionSize, size)
	case h.IndexOffset < DataStart || h.IndexOffset%BlockSize != 0:
		return Header{}, fmt.Errorf("%w: the index offset %#x is not a multiple of %d at or after %#x", ErrCorrupt, h.IndexOffset, BlockSize, DataStart)
	case h.IndexLength%EntrySize != 0:
		return Header{}, fmt.Errorf("%w: the index length %d is not a multiple of the %d-byte entry", ErrCorrupt, h.IndexLength, EntrySize)
	case h.IndexOffset > size || h.IndexLength > size-h.IndexOffset:
		return Header{}, fmt.Errorf("%w: the index (%d bytes at %#x) ends past the region's %d bytes", ErrCorrupt, h.IndexLength, h.IndexOffset, size)
	}
	return h, nil
}

// decodeIndex validates the index table b; the modules lie before
// indexOff.
func decodeIndex(b []byte, indexOff int64) ([]Entry, error) {
	le := binary.LittleEndian
	entries := make([]Entry, 0, len(b)/EntrySize)
	for i := 0; i+EntrySize <= len(b); i += EntrySize {
		raw := b[i : i+EntrySize]
		digest := string(raw[:64])
		off, size := le.Uint64(raw[64:]), le.Uint64(raw[72:])
		n := len(entries)
		switch {
		case !bootimage.IsSHA256Hex(digest):
			return nil, fmt.Errorf("%w: index entry %d: digest %q is not 64 lowercase hex digits", ErrCorrupt, n, digest)
		case n > 0 && digest <= entries[n-1].Digest:
			return nil, fmt.Errorf("%w: index entry %d: %s is not after %s (sorted, unique)", ErrCorrupt, n, digest, entries[n-1].Digest)
		case off < DataStart || off%BlockSize != 0:
			return nil, fmt.Errorf("%w: index entry %d (%s): offset %#x is not a multiple of %d at or after %#x", ErrCorrupt, n, digest, off, BlockSize, DataStart)
		case off > uint64(indexOff) || size > uint64(indexOff)-off:
			return nil, fmt.Errorf("%w: index entry %d (%s): %d bytes at %#x end past the index at %#x", ErrCorrupt, n, digest, size, off, indexOff)
		}
		entries = append(entries, Entry{Digest: digest, Offset: int64(off), Size: int64(size)})
	}
	byOff := slices.Clone(entries)
	sort.Slice(byOff, func(i, j int) bool { return byOff[i].Offset < byOff[j].Offset })
	for i := 1; i < len(byOff); i++ {
		if a, b := byOff[i-1], byOff[i]; b.Offset < a.end() || b.Offset == a.Offset {
			return nil, fmt.Errorf("%w: modules %s (%d bytes at %#x) and %s (%d bytes at %#x) overlap", ErrCorrupt, a.Digest, a.Size, a.Offset, b.Digest, b.Size, b.Offset)
		}
	}
	return entries, nil
}

func allZero(b []byte) bool {
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// Blob is a module to keep: its bytes and the digest and size they must
// have. modcache.Entry is one.
type Blob interface {
	io.ReaderAt
	Digest() string
	Size() int64
}

// WriteOptions say what Write records and to whom it speaks.
type WriteOptions struct {
	// Generation is recorded in the header.
	Generation uint64
	// Logger receives what was written; nil discards.
	Logger *slog.Logger
	// Hashed says the blobs' digests were checked already (entries of a
	// module cache): their bytes are copied without hashing them again,
	// and only their sizes are checked. Whoever reads the region hashes
	// each module before using it either way (modcache.AdoptSections).
	Hashed bool
}

// Write lays blobs out on dev and returns the new index. Blobs of the
// same digest are kept once. In order, each step synced before the next:
//
//  1. the header and the block after it are zeroed (a valid header
//     before it would describe bytes about to change);
//  2. the modules are written, sorted by digest, each at the next
//     BlockSize-aligned offset from DataStart (an empty one
//     takes a block too), and hashed on the way (unless
//     WriteOptions.Hashed): one whose bytes do not match its digest or
//     size stops the write (ErrBadBlob), leaving the region without an
//     index;
//  3. the index, at the next aligned offset after the modules;
//  4. the header, last.
//
// So a write interrupted at any point (a crash, a failed device) leaves
// no valid header and Open answers ErrNoIndex or ErrCorrupt: the next
// generation rebuilds its cache from storage, and never trusts bytes half
// written. The sequence number is one more than the region's previous
// valid header's, if it had one.
//
// Every module is rewritten, also those the region already held at the
// same place: keeping them in place would need a layout that never moves
// a kept module under a new one, and the copy is made at staging time,
// outside the downtime.
//
// Modules that do not fit are ErrTooSmall, naming the bytes needed and
// there; the region is then left as it was.
func Write(dev Device, blobs []Blob, opts WriteOptions) (*Index, error) {
	name := deviceName(dev)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	byDigest := make(map[string]Blob, len(blobs))
	for _, b := range blobs {
		d := b.Digest()
		if !bootimage.IsSHA256Hex(d) {
			return nil, fmt.Errorf("%w: digest %q is not 64 lowercase hex digits", ErrBadBlob, d)
		}
		if b.Size() < 0 {
			return nil, fmt.Errorf("%w: %s: negative size %d", ErrBadBlob, d, b.Size())
		}
		if o, ok := byDigest[d]; ok && o.Size() != b.Size() {
			return nil, fmt.Errorf("%w: %s given twice, with %d and %d bytes", ErrBadBlob, d, o.Size(), b.Size())
		}
		byDigest[d] = b
	}
	digests := make([]string, 0, len(byDigest))
	for d := range byDigest {
		digests = append(digests, d)
	}
	slices.Sort(digests)

	// Layout. need saturates, so that absurd sizes report as too small
	// rather than wrap.
	size := dev.Size()
	entries := make([]Entry, 0, len(digests))
	need := int64(DataStart)
	for _, d := range digests {
		n := byDigest[d].Size()
		entries = append(entries, Entry{Digest: d, Offset: need, Size: n})
		if n > math.MaxInt64-BlockSize-need {
			need = math.MaxInt64 - BlockSize
			continue
		}
		need = alignUp(need + max(n, 1)) // an empty module takes a block too: no two share an offset
	}
	indexOff := need
	indexLen := int64(len(digests)) * EntrySize
	need = min(need, math.MaxInt64-indexLen) + indexLen
	if need > size {
		return nil, fmt.Errorf("%w: %s: %d modules need %d bytes with the header and the index (%d-byte blocks), the region has %d",
			ErrTooSmall, name, len(digests), need, BlockSize, size)
	}

	index := make([]byte, 0, indexLen)
	for _, e := range entries {
		index = append(index, e.Digest...)
		index = binary.LittleEndian.AppendUint64(index, uint64(e.Offset))
		index = binary.LittleEndian.AppendUint64(index, uint64(e.Size))
	}
	h := Header{
		Sequence:    1,
		Generation:  opts.Generation,
		RegionSize:  uint64(size),
		IndexOffset: uint64(indexOff),
		IndexLength: uint64(indexLen),
		IndexSHA256: sha256.Sum256(index),
	}
	if old, err := Open(dev); err == nil {
		h.Sequence = old.header.Sequence + 1
	}

	// 1. Invalidate (and clear the block nd_pmem probes).
	if _, err := dev.WriteAt(make([]byte, DataStart), 0); err != nil {
		return nil, fmt.Errorf("keptmem: invalidating the header of %s: %w", name, err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("keptmem: syncing %s after invalidating its header: %w", name, err)
	}
	// 2. Modules.
	buf := make([]byte, 1<<20)
	for _, e := range entries {
		if err := copyBlob(dev, e, byDigest[e.Digest], buf, !opts.Hashed); err != nil {
			return nil, fmt.Errorf("keptmem: writing %s to %s: %w", e.Digest, name, err)
		}
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("keptmem: syncing the modules of %s: %w", name, err)
	}
	// 3. Index.
	if _, err := dev.WriteAt(index, indexOff); err != nil {
		return nil, fmt.Errorf("keptmem: writing the index of %s: %w", name, err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("keptmem: syncing the index of %s: %w", name, err)
	}
	// 4. Header.
	if _, err := dev.WriteAt(h.encode(), 0); err != nil {
		return nil, fmt.Errorf("keptmem: writing the header of %s: %w", name, err)
	}
	if err := dev.Sync(); err != nil {
		return nil, fmt.Errorf("keptmem: syncing the header of %s: %w", name, err)
	}
	log.Info("keptmem: region written", "device", name, "modules", len(entries), "bytes", indexOff+indexLen,
		"sequence", h.Sequence, "generation", h.Generation)
	return &Index{dev: dev, header: h, entries: entries}, nil
}

// copyBlob writes b's bytes at e.Offset and checks their size, and their
// digest if check.
func copyBlob(dev Device, e Entry, b Blob, buf []byte, check bool) error {
	hash := sha256.New()
	src := io.NewSectionReader(b, 0, e.Size)
	var w io.Writer = io.NewOffsetWriter(dev, e.Offset)
	if check {
		w = io.MultiWriter(w, hash)
	}
	n, err := io.CopyBuffer(w, src, buf)
	if err != nil {
		return err
	}
	if n != e.Size {
		return fmt.Errorf("%w: %d bytes read, %d expected", ErrBadBlob, n, e.Size)
	}
	if got := hex.EncodeToString(hash.Sum(nil)); check && got != e.Digest {
		return fmt.Errorf("%w: its bytes hash to %s", ErrBadBlob, got)
	}
	return nil
}

func alignUp(n int64) int64 { return (n + BlockSize - 1) &^ (BlockSize - 1) }
