package preserve

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// The format's constants (see the package documentation).
const (
	Magic         = "FRPRSV\x00\x01"
	FormatVersion = 1
	HeaderSize    = 64
	EntrySize     = 384
	// SlotSize is one copy of the table; there are two.
	SlotSize = 32 << 10
	// TableSize is where the areas begin: after both slots.
	TableSize = 2 * SlotSize
	// BlockSize is the alignment of every area's offset and size.
	BlockSize = 4096
	// MaxAreas is how many areas a table holds.
	MaxAreas = 64
	// MaxName and MaxCgroup are the longest name and cgroup path, in bytes.
	MaxName   = 63
	MaxCgroup = 255
)

// Area is one preserved area.
type Area struct {
	Name string `json:"name"`
	// Offset is where the area starts on the device the table was opened
	// on (OpenLayout: the region's /dev/pmemN), the offset to mmap.
	Offset int64 `json:"offset"`
	Size   int64 `json:"size"`
	// Cgroup is the workload's cgroup v2 path under the hierarchy's root
	// ("/work"), frozen before a fast reboot; empty: none.
	Cgroup string `json:"cgroup,omitempty"`
	// Generation is the generation that created the area.
	Generation int       `json:"generation"`
	Created    time.Time `json:"created"`
}

// entry is an Area as the table holds it: Offset from the part's start.
type entry struct {
	name, cgroup       string
	off, size          int64
	generation, create int64
}

// Table is the area table of an areas part. It is not safe for concurrent
// use, and two processes changing one table at once lose a change: callers
// serialize (fastreboot preserve create and rm hold a lock file in the
// state directory).
type Table struct {
	dev     keptmem.Device
	base    int64
	seq     uint64
	slot    int // the slot the current table is in; -1: none written
	entries []entry
}

// Open reads the table at the start of dev, the areas part (keptmem.Window
// of the Layout's AreasSize bytes at CacheSize); Area offsets are from
// dev's start. A part where neither slot has the magic (never written, or
// memory that held something else) opens as an empty table, written by the
// first change. Errors wrap ErrTooSmall, ErrCorrupt or ErrVersion; with two
// slots holding a table, the valid one of the higher sequence wins, so an
// interrupted write leaves the table before it.
func Open(dev keptmem.Device) (*Table, error) {
	return open(dev, 0)
}

// OpenLayout is Open on the areas part of dev, the whole kept region laid
// out as l; Area offsets are from dev's start (the offset in /dev/pmemN).
func OpenLayout(dev keptmem.Device, l keptmem.Layout) (*Table, error) {
	if l.AreasSize == 0 {
		return nil, fmt.Errorf("%w: %s: the layout keeps no areas (no %s= word)", ErrNoAreas, name(dev), keptmem.PreserveKey)
	}
	w, err := keptmem.Window(dev, l.CacheSize, l.AreasSize)
	if err != nil {
		return nil, fmt.Errorf("preserve: %w", err)
	}
	return open(w, l.CacheSize)
}

func open(dev keptmem.Device, base int64) (*Table, error) {
	if dev.Size() < TableSize+BlockSize {
		return nil, fmt.Errorf("%w: %s: %d bytes, the table and one area need %d", ErrTooSmall, name(dev), dev.Size(), TableSize+BlockSize)
	}
	buf := make([]byte, TableSize)
	if _, err := dev.ReadAt(buf, 0); err != nil {
		return nil, fmt.Errorf("preserve: reading the area table of %s: %w", name(dev), err)
	}
	t := &Table{dev: dev, base: base, slot: -1}
	var firstErr error
	for i := range 2 {
		s, ok, err := parseSlot(buf[i*SlotSize:(i+1)*SlotSize], dev.Size())
		switch {
		case err != nil:
			err = fmt.Errorf("%s, slot %d: %w", name(dev), i, err)
			if errors.Is(err, ErrVersion) {
				return nil, err
			}
			if firstErr == nil {
				firstErr = err
			}
		case ok && (t.slot < 0 || s.seq > t.seq):
			t.seq, t.slot, t.entries = s.seq, i, s.entries
		}
	}
	if t.slot < 0 && firstErr != nil {
		return nil, firstErr
	}
	return t, nil
}

type slot struct {
	seq     uint64
	entries []entry
}

// parseSlot reads one slot. ok is false, with no error, when it has no
// magic.
func parseSlot(b []byte, partSize int64) (slot, bool, error) {
	if len(b) < HeaderSize || string(b[:8]) != Magic {
		return slot{}, false, nil
	}
	le := binary.LittleEndian
	if v := le.Uint32(b[8:]); v != FormatVersion {
		return slot{}, false, fmt.Errorf("%w: version %d, this fastreboot reads %d", ErrVersion, v, FormatVersion)
	}
	n := le.Uint32(b[12:])
	if n > MaxAreas {
		return slot{}, false, fmt.Errorf("%w: %d entries, at most %d", ErrCorrupt, n, MaxAreas)
	}
	end := HeaderSize + int(n)*EntrySize
	if !bytes.Equal(marshalChecksum(b[:32], b[HeaderSize:end]), b[32:64]) {
		return slot{}, false, fmt.Errorf("%w: the checksum does not match its bytes", ErrCorrupt)
	}
	if size := int64(le.Uint64(b[24:])); size != partSize {
		return slot{}, false, fmt.Errorf("%w: written for an areas part of %d bytes, this one is %d (did %s= change?)", ErrCorrupt, size, partSize, keptmem.PreserveKey)
	}
	s := slot{seq: le.Uint64(b[16:])}
	for i := range int(n) {
		e := b[HeaderSize+i*EntrySize:][:EntrySize]
		en := entry{
			name:       cString(e[0:64]),
			cgroup:     cString(e[64:320]),
			off:        int64(le.Uint64(e[320:])),
			size:       int64(le.Uint64(e[328:])),
			generation: int64(le.Uint64(e[336:])),
			create:     int64(le.Uint64(e[344:])),
		}
		if err := en.check(partSize); err != nil {
			return slot{}, false, fmt.Errorf("%w: entry %d: %w", ErrCorrupt, i, err)
		}
		s.entries = append(s.entries, en)
	}
	if err := checkOverlaps(s.entries); err != nil {
		return slot{}, false, fmt.Errorf("%w: %w", ErrCorrupt, err)
	}
	return s, true, nil
}

// cString is b up to its first NUL.
func cString(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return string(b)
}

// check is what an entry read from a table must satisfy.
func (e entry) check(partSize int64) error {
	if err := ValidName(e.name); err != nil {
		return err
	}
	if err := validCgroup(e.cgroup); err != nil {
		return err
	}
	switch {
	case e.off%BlockSize != 0 || e.off < TableSize:
		return fmt.Errorf("area %q: offset %d is not 4096-aligned after the table", e.name, e.off)
	case e.size <= 0 || e.size%BlockSize != 0:
		return fmt.Errorf("area %q: size %d is not a positive multiple of 4096", e.name, e.size)
	case e.off > partSize || e.size > partSize-e.off:
		return fmt.Errorf("area %q: %d bytes at %d end past the part's %d bytes", e.name, e.size, e.off, partSize)
	case e.generation < 0:
		return fmt.Errorf("area %q: generation %d", e.name, e.generation)
	}
	return nil
}

// checkOverlaps reports two entries of one name or sharing bytes.
func checkOverlaps(es []entry) error {
	s := slices.Clone(es)
	slices.SortFunc(s, func(a, b entry) int { return cmp.Compare(a.off, b.off) })
	names := map[string]bool{}
	for i, e := range s {
		if names[e.name] {
			return fmt.Errorf("two areas are named %q", e.name)
		}
		names[e.name] = true
		if i > 0 && s[i-1].off+s[i-1].size > e.off {
			return fmt.Errorf("areas %q and %q overlap", s[i-1].name, e.name)
		}
	}
	return nil
}

// ValidName checks an area's name: 1 to MaxName bytes of ASCII letters,
// digits, '.', '_' and '-', not starting with '.' or '-' (so never a path
// or a flag).
func ValidName(n string) error {
	if n == "" || len(n) > MaxName {
		return fmt.Errorf("%w: name %q: want 1 to %d bytes", ErrInvalid, n, MaxName)
	}
	if n[0] == '.' || n[0] == '-' {
		return fmt.Errorf("%w: name %q starts with %q", ErrInvalid, n, n[0])
	}
	for _, c := range n {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-') {
			return fmt.Errorf("%w: name %q: %q is not a letter, digit, '.', '_' or '-'", ErrInvalid, n, c)
		}
	}
	return nil
}

// validCgroup checks a cgroup path: empty, or absolute and clean ("/work",
// "/a/b"), at most MaxCgroup bytes, no "." or ".." component.
func validCgroup(c string) error {
	if c == "" {
		return nil
	}
	switch {
	case len(c) > MaxCgroup:
		return fmt.Errorf("%w: cgroup %q is longer than %d bytes", ErrInvalid, c, MaxCgroup)
	case c == "/" || !strings.HasPrefix(c, "/"):
		return fmt.Errorf("%w: cgroup %q: want a path under the cgroup v2 root such as /work (the root cgroup cannot be frozen)", ErrInvalid, c)
	}
	for _, part := range strings.Split(c[1:], "/") {
		if part == "" || part == "." || part == ".." || strings.ContainsRune(part, 0) {
			return fmt.Errorf("%w: cgroup %q is not a clean path", ErrInvalid, c)
		}
	}
	return nil
}

// List returns the areas by offset.
func (t *Table) List() []Area {
	out := make([]Area, 0, len(t.entries))
	for _, e := range t.entries {
		out = append(out, t.area(e))
	}
	slices.SortFunc(out, func(a, b Area) int { return cmp.Compare(a.Offset, b.Offset) })
	return out
}

func (t *Table) area(e entry) Area {
	return Area{Name: e.name, Offset: t.base + e.off, Size: e.size, Cgroup: e.cgroup,
		Generation: int(e.generation), Created: time.Unix(e.create, 0).UTC()}
}

// Area returns the area named n: its offset on the device and its size,
// what a process needs to map it. Unknown names wrap ErrNotFound.
func (t *Table) Area(n string) (Area, error) {
	for _, e := range t.entries {
		if e.name == n {
			return t.area(e), nil
		}
	}
	return Area{}, fmt.Errorf("%w: %q in %s", ErrNotFound, n, name(t.dev))
}

// Free returns the bytes no area takes and the largest free range, after
// the table.
func (t *Table) Free() (total, largest int64) {
	for _, g := range t.gaps() {
		total += g[1] - g[0]
		largest = max(largest, g[1]-g[0])
	}
	return total, largest
}

// gaps returns the free ranges [start, end) of the part, by offset.
func (t *Table) gaps() [][2]int64 {
	es := slices.Clone(t.entries)
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.off, b.off) })
	var out [][2]int64
	at := int64(TableSize)
	for _, e := range es {
		if e.off > at {
			out = append(out, [2]int64{at, e.off})
		}
		at = e.off + e.size
	}
	if end := t.dev.Size() &^ (BlockSize - 1); end > at {
		out = append(out, [2]int64{at, end})
	}
	return out
}

// Create adds an area of size bytes (a multiple of 4096) named n, whose
// workload runs in cgroup (a path under the cgroup v2 root such as /work,
// or "" for none), created by generation gen, at the lowest free offset
// that holds it, and writes the table. Its bytes are not cleared: they are
// whatever the part held there. Errors wrap ErrInvalid, ErrExists or
// ErrNoRoom (naming what is free), or are the write's.
func (t *Table) Create(n string, size int64, cgroup string, gen int) (Area, error) {
	if err := ValidName(n); err != nil {
		return Area{}, err
	}
	if err := validCgroup(cgroup); err != nil {
		return Area{}, fmt.Errorf("area %q: %w", n, err)
	}
	if size <= 0 || size%BlockSize != 0 {
		return Area{}, fmt.Errorf("%w: area %q: size %d is not a positive multiple of 4096 (round it up to %d)", ErrInvalid, n, size, (max(size, 1)+BlockSize-1)/BlockSize*BlockSize)
	}
	if _, err := t.Area(n); err == nil {
		return Area{}, fmt.Errorf("%w: %q in %s (remove it first)", ErrExists, n, name(t.dev))
	}
	if len(t.entries) >= MaxAreas {
		return Area{}, fmt.Errorf("%w: %s holds %d areas, the most a table holds", ErrNoRoom, name(t.dev), MaxAreas)
	}
	off := int64(-1)
	for _, g := range t.gaps() {
		if g[1]-g[0] >= size {
			off = g[0]
			break
		}
	}
	if off < 0 {
		total, largest := t.Free()
		return Area{}, fmt.Errorf("%w: area %q of %s: %s of the %s areas part is free, the largest free range %s (the table takes the first %s)",
			ErrNoRoom, n, memmap.FormatSize(uint64(size)), memmap.FormatSize(uint64(total)), memmap.FormatSize(uint64(t.dev.Size())), memmap.FormatSize(uint64(largest)), memmap.FormatSize(TableSize))
	}
	e := entry{name: n, cgroup: cgroup, off: off, size: size, generation: int64(gen), create: time.Now().Unix()}
	if err := t.write(append(slices.Clone(t.entries), e)); err != nil {
		return Area{}, err
	}
	return t.area(e), nil
}

// Remove drops the area named n from the table and writes it; its bytes
// are left as they are. An unknown name wraps ErrNotFound.
func (t *Table) Remove(n string) error {
	i := slices.IndexFunc(t.entries, func(e entry) bool { return e.name == n })
	if i < 0 {
		return fmt.Errorf("%w: %q in %s", ErrNotFound, n, name(t.dev))
	}
	return t.write(slices.Delete(slices.Clone(t.entries), i, i+1))
}

// Sync returns once everything written to the device, the table and the
// areas workloads wrote through their mappings, is in the region (fsync(2)
// on /dev/pmemN): before a fast reboot, after Freeze.
func (t *Table) Sync() error {
	if err := t.dev.Sync(); err != nil {
		return fmt.Errorf("preserve: syncing %s: %w", name(t.dev), err)
	}
	return nil
}

// write writes es as the next table into the slot the current one is not
// in, and syncs; the current table stays valid until the write is whole.
func (t *Table) write(es []entry) error {
	b := marshal(t.seq+1, es, t.dev.Size())
	next := 0
	if t.slot == 0 {
		next = 1
	}
	if _, err := t.dev.WriteAt(b, int64(next)*SlotSize); err != nil {
		return fmt.Errorf("preserve: writing the area table of %s: %w", name(t.dev), err)
	}
	if err := t.Sync(); err != nil {
		return err
	}
	t.seq, t.slot, t.entries = t.seq+1, next, es
	return nil
}

// marshal returns one slot holding the table.
func marshal(seq uint64, es []entry, partSize int64) []byte {
	b := make([]byte, SlotSize)
	le := binary.LittleEndian
	copy(b, Magic)
	le.PutUint32(b[8:], FormatVersion)
	le.PutUint32(b[12:], uint32(len(es)))
	le.PutUint64(b[16:], seq)
	le.PutUint64(b[24:], uint64(partSize))
	for i, e := range es {
		p := b[HeaderSize+i*EntrySize:][:EntrySize]
		copy(p[0:64], e.name)
		copy(p[64:320], e.cgroup)
		le.PutUint64(p[320:], uint64(e.off))
		le.PutUint64(p[328:], uint64(e.size))
		le.PutUint64(p[336:], uint64(e.generation))
		le.PutUint64(p[344:], uint64(e.create))
	}
	copy(b[32:64], marshalChecksum(b[:32], b[HeaderSize:HeaderSize+len(es)*EntrySize]))
	return b
}

// marshalChecksum is a slot's checksum: SHA-256 of its header's first 32
// bytes and its entries.
func marshalChecksum(head, entries []byte) []byte {
	h := sha256.New()
	h.Write(head)
	h.Write(entries)
	return h.Sum(nil)
}

// name names dev in messages: its Name if it has one.
func name(dev keptmem.Device) string {
	if n, ok := dev.(interface{ Name() string }); ok {
		return n.Name()
	}
	return "the areas part"
}
