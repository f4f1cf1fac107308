package keptmem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestWriteOpenRoundTrip(t *testing.T) {
	dev := fileDevice(t, 64<<10)
	blobs := testBlobs()
	blobs = append(blobs, blobs[0]) // the same module twice is kept once
	wrote, err := Write(dev, blobs, WriteOptions{Generation: 7})
	if err != nil {
		t.Fatalf("Write: %v", err)
	}
	ix, err := Open(dev)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if d := cmp.Diff(wrote.Entries(), ix.Entries()); d != "" {
		t.Errorf("entries (-written +read):\n%s", d)
	}
	if d := cmp.Diff(wrote.Header(), ix.Header()); d != "" {
		t.Errorf("header (-written +read):\n%s", d)
	}
	if ix.Len() != 4 {
		t.Errorf("%d entries, want 4", ix.Len())
	}
	h := ix.Header()
	if h.Sequence != 1 || h.Generation != 7 || h.RegionSize != 64<<10 {
		t.Errorf("header %+v: want sequence 1, generation 7, region size %d", h, 64<<10)
	}
	checkSections(t, ix)
	for i, e := range ix.Entries() {
		if e.Offset%BlockSize != 0 || e.Offset < DataStart {
			t.Errorf("entry %d at %#x: not aligned at or after DataStart", i, e.Offset)
		}
	}
	if ix.Section(strings.Repeat("0", 64)) != nil {
		t.Error("Section of a digest not kept is not nil")
	}

	// A second write counts on.
	if _, err := Write(dev, blobs[:1], WriteOptions{Generation: 8}); err != nil {
		t.Fatalf("second Write: %v", err)
	}
	ix, err = Open(dev)
	if err != nil {
		t.Fatalf("Open after the second write: %v", err)
	}
	if h := ix.Header(); h.Sequence != 2 || h.Generation != 8 || ix.Len() != 1 {
		t.Errorf("after the second write: header %+v, %d entries; want sequence 2, generation 8, 1 entry", h, ix.Len())
	}
	checkSections(t, ix)
}

func TestOpenBlank(t *testing.T) {
	for _, tc := range []struct {
		name string
		dev  Device
		want error
	}{
		{"zeros", newMem(1 << 20), ErrNoIndex},
		{"garbage", &memDevice{b: bytes.Repeat([]byte{0xa5}, 1<<20)}, ErrNoIndex},
		{"smaller than a block", newMem(100), ErrTooSmall},
		{"smaller than the header and the probed block", newMem(DataStart - 1), ErrTooSmall},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(tc.dev)
			if !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
		})
	}
}

func TestWriteTooSmall(t *testing.T) {
	dev := newMem(44 << 10) // testBlobs need 41280 bytes
	if _, err := Write(dev, testBlobs(), WriteOptions{}); err != nil {
		t.Fatalf("Write: %v", err)
	}
	before := bytes.Clone(dev.b)
	big := newBlob(bytes.Repeat([]byte{1}, 20<<10))
	_, err := Write(dev, append(testBlobs(), big), WriteOptions{})
	if !errors.Is(err, ErrTooSmall) {
		t.Fatalf("Write of too much = %v, want ErrTooSmall", err)
	}
	if !strings.Contains(err.Error(), "need") {
		t.Errorf("error %q does not say what is needed", err)
	}
	if !bytes.Equal(before, dev.b) {
		t.Error("a refused Write changed the region")
	}
	if _, err := Open(dev); err != nil {
		t.Errorf("the previous index does not open after a refused write: %v", err)
	}
	// A size that would overflow the layout is too small too.
	if _, err := Write(dev, []Blob{hugeBlob{}}, WriteOptions{}); !errors.Is(err, ErrTooSmall) {
		t.Errorf("Write of a huge blob = %v, want ErrTooSmall", err)
	}
}

type hugeBlob struct{}

func (hugeBlob) ReadAt(p []byte, off int64) (int, error) { return len(p), nil }
func (hugeBlob) Digest() string                          { return strings.Repeat("ab", 32) }
func (hugeBlob) Size() int64                             { return 1<<63 - 1 }

func TestWriteBadBlob(t *testing.T) {
	good := newBlob([]byte("good"))
	lying := blob{bytes.NewReader([]byte("bad")), good.digest}
	for _, tc := range []struct {
		name  string
		blobs []Blob
	}{
		{"digest mismatch", []Blob{lying}},
		{"malformed digest", []Blob{blob{bytes.NewReader(nil), "ABC"}}},
		{"same digest, other size", []Blob{good, blob{bytes.NewReader([]byte("good!")), good.digest}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newMem(64 << 10)
			if _, err := Write(dev, tc.blobs, WriteOptions{}); !errors.Is(err, ErrBadBlob) {
				t.Fatalf("Write = %v, want ErrBadBlob", err)
			}
			if _, err := Open(dev); err == nil {
				t.Error("a failed Write left a valid index")
			}
		})
	}
}

// TestTornWrite fails the device after every number of bytes a Write
// writes (stepping through each stage): the region then holds either no
// valid index or, when the write failed before it touched the header, the
// previous one with its bytes intact; never a valid index with bad bytes.
func TestTornWrite(t *testing.T) {
	first := []Blob{newBlob(bytes.Repeat([]byte("old kernel "), 900)), newBlob([]byte("old initrd"))}
	second := testBlobs()
	base := newMem(64 << 10)
	if _, err := Write(base, first, WriteOptions{Generation: 1}); err != nil {
		t.Fatal(err)
	}
	// Count what a full second write writes.
	count := &tornDevice{Device: &memDevice{b: bytes.Clone(base.b)}, budget: 1 << 40}
	if _, err := Write(count, second, WriteOptions{}); err != nil {
		t.Fatal(err)
	}
	total := 1<<40 - count.budget
	seen := map[string]bool{}
	for n := int64(0); n < total; n += 61 {
		for _, budget := range []int64{n, min(n+1, total-1)} {
			mem := &memDevice{b: bytes.Clone(base.b)}
			if _, err := Write(&tornDevice{Device: mem, budget: budget}, second, WriteOptions{}); !errors.Is(err, errTorn) {
				t.Fatalf("Write torn after %d of %d bytes = %v, want the device's error", budget, total, err)
			}
			ix, err := Open(mem)
			switch {
			case err == nil:
				if budget != 0 || ix.Header().Sequence != 1 {
					t.Fatalf("torn after %d bytes: a valid index (sequence %d)", budget, ix.Header().Sequence)
				}
				checkSections(t, ix)
				seen["previous"] = true
			case errors.Is(err, ErrNoIndex):
				seen["no index"] = true
			case errors.Is(err, ErrCorrupt):
				seen["corrupt"] = true
			default:
				t.Fatalf("torn after %d bytes: Open = %v", budget, err)
			}
		}
	}
	// The header is written last, so a tear inside it (its last 128
	// bytes) is the only way to a corrupt header.
	for cut := int64(1); cut < HeaderSize; cut += 7 {
		mem := &memDevice{b: bytes.Clone(base.b)}
		if _, err := Write(&tornDevice{Device: mem, budget: total - cut}, second, WriteOptions{}); !errors.Is(err, errTorn) {
			t.Fatalf("Write torn %d bytes before its end = %v", cut, err)
		}
		if _, err := Open(mem); !errors.Is(err, ErrNoIndex) && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("torn %d bytes before the end: Open = %v, want ErrNoIndex or ErrCorrupt", cut, err)
		}
		seen["torn header"] = true
	}
	t.Logf("outcomes: %v over %d bytes", seen, total)
	if !seen["previous"] || !seen["no index"] || !seen["torn header"] {
		t.Errorf("outcomes %v: want the previous index (nothing written), no index and torn headers", seen)
	}
}

// writeTest writes testBlobs to a fresh memory device.
func writeTest(t *testing.T) (*memDevice, *Index) {
	t.Helper()
	dev := newMem(64 << 10)
	ix, err := Write(dev, testBlobs(), WriteOptions{Generation: 3})
	if err != nil {
		t.Fatal(err)
	}
	return dev, ix
}

func TestOpenFlippedByte(t *testing.T) {
	dev, ix := writeTest(t)
	h := ix.Header()
	for _, tc := range []struct {
		name string
		off  int64
		want error
	}{
		{"magic", 0, ErrNoIndex},
		{"version", offVersion, ErrCorrupt},
		{"sequence", offSequence, ErrCorrupt},
		{"index offset", offIndexOff, ErrCorrupt},
		{"header checksum", offHeaderSum + 5, ErrCorrupt},
		{"the block nd_pmem probes", BlockSize + 100, ErrCorrupt},
		{"index digest", int64(h.IndexOffset) + 3, ErrCorrupt},
		{"index offset field", int64(h.IndexOffset) + 64, ErrCorrupt},
		{"index size field", int64(h.IndexOffset) + EntrySize + 72, ErrCorrupt},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := &memDevice{b: bytes.Clone(dev.b)}
			mem.b[tc.off] ^= 0x10
			_, err := Open(mem)
			if !errors.Is(err, tc.want) {
				t.Errorf("Open = %v, want %v", err, tc.want)
			}
		})
	}
	// A flipped module byte is not the index's business: Open succeeds,
	// and the digest check of whoever uses the bytes finds it (see
	// ExampleIndex_Section and the modcache test in adopt_test.go).
	mem := &memDevice{b: bytes.Clone(dev.b)}
	e := ix.Entries()[0]
	mem.b[e.Offset+e.Size/2] ^= 1
	ix2, err := Open(mem)
	if err != nil {
		t.Fatalf("Open with a flipped module byte: %v", err)
	}
	got := sha256.New()
	if _, err := io.Copy(got, ix2.Section(e.Digest)); err != nil {
		t.Fatal(err)
	}
	if hex.EncodeToString(got.Sum(nil)) == e.Digest {
		t.Error("the flipped module still hashes to its digest")
	}
}

// craft writes a header and an index of entries (as given, not sorted)
// to a device of size bytes, with a valid index digest and header
// checksum, so that only the entries are wrong.
func craft(size int64, indexOff int64, entries []Entry, patch func(h *Header)) *memDevice {
	dev := newMem(int(size))
	var index []byte
	for _, e := range entries {
		index = append(index, e.Digest...)
		index = binary.LittleEndian.AppendUint64(index, uint64(e.Offset))
		index = binary.LittleEndian.AppendUint64(index, uint64(e.Size))
	}
	copy(dev.b[indexOff:], index)
	h := Header{Sequence: 1, RegionSize: uint64(size), IndexOffset: uint64(indexOff), IndexLength: uint64(len(index)), IndexSHA256: sha256.Sum256(index)}
	if patch != nil {
		patch(&h)
	}
	copy(dev.b, h.encode())
	return dev
}

func TestOpenHandCrafted(t *testing.T) {
	a, b, c := strings.Repeat("a", 64), strings.Repeat("b", 64), strings.Repeat("c", 64)
	const size, indexOff = 64 << 10, 32 << 10
	for _, tc := range []struct {
		name    string
		entries []Entry
		patch   func(h *Header)
		want    error // nil: valid
		msg     string
	}{
		{name: "valid", entries: []Entry{{a, 8192, 100}, {b, 12288, 4096}, {c, 4 * 4096, 0}}},
		{name: "empty index", entries: nil},
		{name: "overlap", entries: []Entry{{a, 8192, 5000}, {b, 12288, 10}}, want: ErrCorrupt, msg: "overlap"},
		{name: "same offset", entries: []Entry{{a, 8192, 0}, {b, 8192, 0}}, want: ErrCorrupt, msg: "overlap"},
		{name: "into the index", entries: []Entry{{a, 28 << 10, 4097}}, want: ErrCorrupt, msg: "past the index"},
		{name: "huge size", entries: []Entry{{a, 8192, -1}}, want: ErrCorrupt, msg: "past the index"},
		{name: "in the header block", entries: []Entry{{a, 0, 10}}, want: ErrCorrupt, msg: "offset"},
		{name: "in the probed block", entries: []Entry{{a, 4096, 10}}, want: ErrCorrupt, msg: "offset"},
		{name: "unaligned", entries: []Entry{{a, 8193, 10}}, want: ErrCorrupt, msg: "offset"},
		{name: "unsorted", entries: []Entry{{b, 8192, 1}, {a, 12288, 1}}, want: ErrCorrupt, msg: "sorted"},
		{name: "duplicate", entries: []Entry{{a, 8192, 1}, {a, 12288, 1}}, want: ErrCorrupt, msg: "sorted"},
		{name: "uppercase digest", entries: []Entry{{strings.Repeat("A", 64), 8192, 1}}, want: ErrCorrupt, msg: "hex"},
		{name: "region size", patch: func(h *Header) { h.RegionSize = 128 << 10 }, want: ErrCorrupt, msg: "region of"},
		{name: "index past the end", patch: func(h *Header) { h.IndexLength = 1 << 20 * EntrySize }, want: ErrCorrupt, msg: "past the region"},
		{name: "index offset overflow", patch: func(h *Header) { h.IndexOffset = 1<<64 - 4096 }, want: ErrCorrupt, msg: "past the region"},
		{name: "index unaligned", patch: func(h *Header) { h.IndexOffset = indexOff + 8 }, want: ErrCorrupt, msg: "index offset"},
		{name: "index in the header block", patch: func(h *Header) { h.IndexOffset = 0 }, want: ErrCorrupt, msg: "index offset"},
		{name: "index in the probed block", patch: func(h *Header) { h.IndexOffset = 4096 }, want: ErrCorrupt, msg: "index offset"},
		{name: "index length", entries: []Entry{{a, 8192, 1}}, patch: func(h *Header) { h.IndexLength-- }, want: ErrCorrupt, msg: "entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := craft(size, indexOff, tc.entries, tc.patch)
			ix, err := Open(dev)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Open: %v", err)
				}
				if d := cmp.Diff(tc.entries, ix.Entries(), cmp.Comparer(func(a, b []Entry) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); d != "" {
					t.Errorf("entries (-crafted +read):\n%s", d)
				}
				return
			}
			if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("Open = %v, want %v saying %q", err, tc.want, tc.msg)
			}
		})
	}
}

func TestOpenVersion(t *testing.T) {
	dev, _ := writeTest(t)
	binary.LittleEndian.PutUint32(dev.b[offVersion:], 2)
	sum := sha256.Sum256(dev.b[:offHeaderSum])
	copy(dev.b[offHeaderSum:], sum[:])
	if _, err := Open(dev); !errors.Is(err, ErrVersion) {
		t.Errorf("Open of version 2 = %v, want ErrVersion", err)
	}
}

// TestWriteHashed: WriteOptions.Hashed copies without hashing (a lying blob
// is written, size checked only), and the reader's own hashing is what
// catches it; without it the write refuses the blob.
func TestWriteHashed(t *testing.T) {
	good := newBlob([]byte("module bytes"))
	liar := blob{Reader: bytes.NewReader([]byte("other bytes!")), digest: good.digest}
	if _, err := Write(newMem(1<<20), []Blob{liar}, WriteOptions{}); !errors.Is(err, ErrBadBlob) {
		t.Errorf("Write(liar) = %v, want ErrBadBlob", err)
	}
	dev := newMem(1 << 20)
	ix, err := Write(dev, []Blob{liar}, WriteOptions{Hashed: true})
	if err != nil {
		t.Fatalf("Write(liar, Hashed) = %v", err)
	}
	b, err := io.ReadAll(ix.Section(good.digest))
	if err != nil {
		t.Fatal(err)
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) == good.digest {
		t.Error("the section of a lying blob hashes to its claimed digest")
	}
	short := blob{Reader: bytes.NewReader([]byte("short")), digest: good.digest}
	lying := sizeLiar{short, good.Size()}
	if _, err := Write(newMem(1<<20), []Blob{lying}, WriteOptions{Hashed: true}); !errors.Is(err, ErrBadBlob) {
		t.Errorf("Write(short blob, Hashed) = %v, want ErrBadBlob (sizes are still checked)", err)
	}
}

// sizeLiar is a blob claiming more bytes than it has.
type sizeLiar struct {
	blob
	size int64
}

func (s sizeLiar) Size() int64 { return s.size }
