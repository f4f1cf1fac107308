package oldmem

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cespare/xxhash/v2"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// testLoad is one PT_LOAD of a fake vmcore: pages bytes of physical memory
// from paddr, at file offset off (page-aligned).
type testLoad struct {
	paddr, off uint64
	data       []byte
}

// writeVmcore writes an ELF64 x86-64 core with loads as its PT_LOAD
// segments (and an empty PT_NOTE first, as the kernel's has) to
// root/proc/vmcore.
func writeVmcore(t *testing.T, root string, loads []testLoad) {
	t.Helper()
	le := binary.LittleEndian
	const ehSize, phSize = 64, 56
	phnum := 1 + len(loads)
	size := uint64(ehSize + phnum*phSize)
	for _, l := range loads {
		size = max(size, l.off+uint64(len(l.data)))
	}
	out := make([]byte, size)
	copy(out, "\x7fELF\x02\x01\x01")
	le.PutUint16(out[16:], 4)  // ET_CORE
	le.PutUint16(out[18:], 62) // EM_X86_64
	le.PutUint32(out[20:], 1)
	le.PutUint64(out[32:], ehSize)
	le.PutUint16(out[52:], ehSize)
	le.PutUint16(out[54:], phSize)
	le.PutUint16(out[56:], uint16(phnum))
	ph := out[ehSize:]
	le.PutUint32(ph[0:], 4) // PT_NOTE, empty
	le.PutUint64(ph[8:], uint64(ehSize+phnum*phSize))
	for i, l := range loads {
		p := ph[(i+1)*phSize:]
		le.PutUint32(p[0:], 1) // PT_LOAD
		le.PutUint64(p[8:], l.off)
		le.PutUint64(p[16:], 0xffff888000000000+l.paddr)
		le.PutUint64(p[24:], l.paddr)
		le.PutUint64(p[32:], uint64(len(l.data)))
		le.PutUint64(p[40:], uint64(len(l.data)))
		if l.off < uint64(ehSize+phnum*phSize) || l.off%PageSize != 0 {
			t.Fatalf("load %d at offset %#x overlaps the headers or is not page-aligned", i, l.off)
		}
		copy(out[l.off:], l.data)
	}
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc", "vmcore"), out, 0o444); err != nil {
		t.Fatal(err)
	}
}

func xxh(b []byte) string { return fmt.Sprintf("%016x", xxhash.Sum64(b)) }

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func TestMap(t *testing.T) {
	root := t.TempDir()
	loads := []testLoad{
		{paddr: 0x100000, off: 0x1000, data: testimage.Bytes(4*PageSize, 1)},
		{paddr: 0x200000, off: 0x5000, data: testimage.Bytes(4*PageSize, 2)},   // right after A in the file
		{paddr: 0x204000, off: 0xa000, data: testimage.Bytes(3*PageSize, 3)},   // physically right after B
		{paddr: 0x8000000, off: 0x10000, data: testimage.Bytes(8*PageSize, 4)}, // far up
	}
	writeVmcore(t, root, loads)
	page := func(pfn uint64) []byte {
		for _, l := range loads {
			if phys := pfn * PageSize; l.paddr <= phys && phys < l.paddr+uint64(len(l.data)) {
				return l.data[phys-l.paddr:][:PageSize]
			}
		}
		t.Fatalf("PFN %#x in no load", pfn)
		return nil
	}
	// Scattered and out of physical order: the high load first, a run
	// across B and C, A backwards.
	runs := [][2]uint64{{0x8005, 3}, {0x102, 2}, {0x203, 2}, {0x100, 1}, {0x8000, 2}, {0x206, 1}}
	var want []byte
	for _, r := range runs {
		for i := range r[1] {
			want = append(want, page(r[0]+i)...)
		}
	}
	want = want[:len(want)-PageSize+123] // the last page holds 123 bytes of the file
	p := Pages{Size: int64(len(want)), SHA256: sha(want), XXH64: xxh(want), Runs: runs}
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}

	data, unmap, err := Map(root, p)
	if err != nil {
		t.Fatal(err)
	}
	if len(data) != len(want) {
		t.Errorf("len(data) = %d, want %d", len(data), len(want))
	}
	if !bytes.Equal(data, want) {
		t.Errorf("mapped bytes differ from the pages' (first difference at %d)", firstDiff(data, want))
	}
	unmap()
	unmap() // idempotent

	t.Run("wrong checksum", func(t *testing.T) {
		q := p
		q.XXH64 = xxh([]byte("something else"))
		data, unmap, err := Map(root, q)
		if !errors.Is(err, ErrMoved) || data != nil || unmap != nil {
			t.Errorf("Map = %d bytes, %v, want ErrMoved", len(data), err)
		}
	})
	t.Run("pages moved", func(t *testing.T) {
		q := p
		q.Runs = append([][2]uint64{{0x8004, 3}}, p.Runs[1:]...)
		if _, _, err := Map(root, q); !errors.Is(err, ErrMoved) {
			t.Errorf("Map = %v, want ErrMoved", err)
		}
	})
	t.Run("outside the old memory", func(t *testing.T) {
		q := p
		q.Runs = append([][2]uint64{{0x9000, 3}}, p.Runs[1:]...)
		if _, _, err := Map(root, q); !errors.Is(err, ErrNoOldMemory) || !strings.Contains(err.Error(), "vmcore") {
			t.Errorf("Map = %v, want ErrNoOldMemory naming the vmcore", err)
		}
	})
	t.Run("invalid record", func(t *testing.T) {
		if _, _, err := Map(root, Pages{Size: 1, SHA256: p.SHA256, XXH64: p.XXH64}); !errors.Is(err, ErrInvalidPages) {
			t.Errorf("Map = %v, want ErrInvalidPages", err)
		}
	})
	t.Run("no vmcore", func(t *testing.T) {
		if _, _, err := Map(t.TempDir(), p); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("Map = %v, want ErrNotExist", err)
		}
	})
	t.Run("segment past the file's end", func(t *testing.T) {
		root := t.TempDir()
		writeVmcore(t, root, []testLoad{{paddr: 0x100000, off: 0x1000, data: testimage.Bytes(2*PageSize, 5)}})
		// Claim a segment twice as long as the file holds.
		name := filepath.Join(root, "proc", "vmcore")
		b, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		binary.LittleEndian.PutUint64(b[64+56+32:], 4*PageSize)
		if err := os.WriteFile(name, b, 0o444); err != nil {
			t.Fatal(err)
		}
		q := Pages{Size: 4 * PageSize, SHA256: p.SHA256, XXH64: p.XXH64, Runs: [][2]uint64{{0x100, 4}}}
		if _, _, err := Map(root, q); !errors.Is(err, ErrNoOldMemory) || !strings.Contains(err.Error(), "past the file's") {
			t.Errorf("Map = %v, want ErrNoOldMemory for the short file", err)
		}
	})
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

func TestPin(t *testing.T) {
	fd, err := unix.MemfdCreate("oldmem-test", unix.MFD_CLOEXEC)
	if err != nil {
		t.Skipf("memfd_create: %v", err)
	}
	f := os.NewFile(uintptr(fd), "memfd:oldmem-test")
	defer f.Close()
	content := testimage.Bytes(3<<20+123, 9)
	if _, err := f.Write(content); err != nil {
		t.Fatal(err)
	}
	size := int64(len(content))
	pin, err := Pin("", f, size, sha(content))
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.EAGAIN) {
		t.Skipf("cannot mlock %d bytes here (RLIMIT_MEMLOCK): %v", size, err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Close()
	p, err := pin.Pages()
	if errors.Is(err, ErrNotPinnable) && strings.Contains(err.Error(), "PFN 0") {
		t.Skipf("pagemap hides PFNs from this process (needs CAP_SYS_ADMIN): %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Validate(); err != nil {
		t.Errorf("record does not validate: %v", err)
	}
	if p.Size != size || p.SHA256 != sha(content) || p.XXH64 != xxh(content) {
		t.Errorf("record says %d bytes, sha256 %s, xxh64 %s; want %d, %s, %s", p.Size, p.SHA256, p.XXH64, size, sha(content), xxh(content))
	}
	var pages uint64
	for _, r := range p.Runs {
		pages += r[1]
	}
	if pages != pageCount(size) {
		t.Errorf("runs hold %d pages, want %d", pages, pageCount(size))
	}
	t.Logf("%d bytes in %d runs", size, len(p.Runs))

	// Nothing should have moved, but the kernel may migrate pages at any
	// time: a second record only has to validate.
	q, err := pin.Pages()
	if err != nil {
		t.Fatalf("second Pages: %v", err)
	}
	if diff := cmp.Diff(p, q); diff != "" {
		t.Logf("the pages moved between two reads (-first +second):\n%s", diff)
	}

	if err := pin.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := pin.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := pin.Pages(); err == nil {
		t.Error("Pages after Close succeeded")
	}
}

func TestPinRejects(t *testing.T) {
	f, err := os.Create(filepath.Join(t.TempDir(), "short"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.Write([]byte("abc")); err != nil {
		t.Fatal(err)
	}
	if _, err := Pin("", f, 0, testSHA); !errors.Is(err, ErrInvalidPages) {
		t.Errorf("size 0: %v", err)
	}
	if _, err := Pin("", f, 3, "xyz"); !errors.Is(err, ErrInvalidPages) {
		t.Errorf("bad digest: %v", err)
	}
	if _, err := Pin("", f, 4, testSHA); err == nil || !strings.Contains(err.Error(), "fewer than") {
		t.Errorf("size past the end of the file: %v", err)
	}
	pin, err := Pin(t.TempDir(), f, 3, testSHA)
	if err != nil {
		t.Fatal(err)
	}
	defer pin.Close()
	if _, err := pin.Pages(); !errors.Is(err, os.ErrNotExist) || !strings.Contains(err.Error(), "pagemap") {
		t.Errorf("Pages without a pagemap under root: %v", err)
	}
}
