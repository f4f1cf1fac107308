package keptmem

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
)

// memDevice is a Device over a byte slice.
type memDevice struct {
	b     []byte
	syncs int
}

func newMem(size int) *memDevice { return &memDevice{b: make([]byte, size)} }

func (d *memDevice) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 || off > int64(len(d.b)) {
		return 0, fmt.Errorf("read at %d: out of range", off)
	}
	n := copy(p, d.b[off:])
	if n < len(p) {
		return n, errors.New("short read")
	}
	return n, nil
}

func (d *memDevice) WriteAt(p []byte, off int64) (int, error) {
	if off < 0 || off+int64(len(p)) > int64(len(d.b)) {
		return 0, fmt.Errorf("write at %d: out of range", off)
	}
	return copy(d.b[off:], p), nil
}

func (d *memDevice) Sync() error { d.syncs++; return nil }
func (d *memDevice) Size() int64 { return int64(len(d.b)) }

var errTorn = errors.New("the device failed (torn write)")

// tornDevice fails every write after budget bytes: the write that crosses
// it is partial.
type tornDevice struct {
	Device
	budget int64
}

func (d *tornDevice) WriteAt(p []byte, off int64) (int, error) {
	if d.budget <= 0 {
		return 0, errTorn
	}
	if int64(len(p)) > d.budget {
		n, _ := d.Device.WriteAt(p[:d.budget], off)
		d.budget = 0
		return n, errTorn
	}
	d.budget -= int64(len(p))
	return d.Device.WriteAt(p, off)
}

// blob is a Blob over bytes.
type blob struct {
	*bytes.Reader
	digest string
}

func newBlob(b []byte) blob {
	sum := sha256.Sum256(b)
	return blob{bytes.NewReader(b), hex.EncodeToString(sum[:])}
}

func (b blob) Digest() string { return b.digest }

// testBlobs are three modules of odd sizes (one empty).
func testBlobs() []Blob {
	return []Blob{
		newBlob(bytes.Repeat([]byte("kernel "), 1500)),
		newBlob(bytes.Repeat([]byte("070701 initrd "), 700)),
		newBlob([]byte("tiny")),
		newBlob(nil),
	}
}

// checkSections reads every section of ix and checks its digest: what a
// user of a valid index must be able to rely on after a write finished.
func checkSections(t *testing.T, ix *Index) {
	t.Helper()
	for _, e := range ix.Entries() {
		sec := ix.Section(e.Digest)
		if sec == nil {
			t.Fatalf("Section(%s) = nil for a listed entry", e.Digest)
		}
		h := sha256.New()
		if _, err := io.Copy(h, sec); err != nil {
			t.Fatalf("reading %s: %v", e.Digest, err)
		}
		if got := hex.EncodeToString(h.Sum(nil)); got != e.Digest {
			t.Errorf("section %s hashes to %s", e.Digest, got)
		}
	}
}

// fileDevice creates a file of size bytes and opens it as a Device.
func fileDevice(t *testing.T, size int64) *FileDevice {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pmem0")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, size); err != nil {
		t.Fatal(err)
	}
	d, err := OpenFileDevice(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}
