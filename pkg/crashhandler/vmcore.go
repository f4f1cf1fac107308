package crashhandler

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// ELF constants (include/uapi/linux/elf.h).
const (
	elfHeaderSize = 64
	phdrSize      = 56
	etCore        = 4
	ptLoad        = 1
	ptNote        = 4
	pnXNum        = 0xffff
	ntPRStatus    = 1
	emX86_64      = 62
	emAArch64     = 183

	// Limits against corrupt input.
	maxPhnum    = 1 << 20
	maxNoteSize = 64 << 20
	maxRead     = 64 << 20
)

// Segment is one ELF64 program header of a vmcore.
type Segment struct {
	Type   uint32 `json:"type"`
	Offset uint64 `json:"offset"`
	Vaddr  uint64 `json:"vaddr"`
	Paddr  uint64 `json:"paddr"`
	Filesz uint64 `json:"filesz"`
	Memsz  uint64 `json:"memsz"`
}

// Vmcore is an ELF64 core file such as /proc/vmcore in a crash kernel: the
// crashed kernel's memory as PT_LOAD segments (vaddr = kernel text mapping
// or direct map, paddr = physical address) and its notes (one NT_PRSTATUS
// per CPU that saved its registers, then VMCOREINFO).
type Vmcore struct {
	r        io.ReaderAt
	size     int64 // -1: unknown
	order    binary.ByteOrder
	Machine  uint16    `json:"machine"`
	Segments []Segment `json:"segments"`
}

// OpenVmcore parses the ELF64 header and program headers of r.
func OpenVmcore(r io.ReaderAt) (*Vmcore, error) {
	var eh [elfHeaderSize]byte
	if _, err := r.ReadAt(eh[:], 0); err != nil {
		return nil, fmt.Errorf("%w: reading ELF header: %w", ErrBadVmcore, err)
	}
	if string(eh[:4]) != "\x7fELF" {
		return nil, fmt.Errorf("%w: no ELF magic", ErrBadVmcore)
	}
	if eh[4] != 2 {
		return nil, fmt.Errorf("%w: ELF class %d, want ELFCLASS64", ErrBadVmcore, eh[4])
	}
	v := &Vmcore{r: r, size: readerSize(r)}
	switch eh[5] {
	case 1:
		v.order = binary.LittleEndian
	case 2:
		v.order = binary.BigEndian
	default:
		return nil, fmt.Errorf("%w: ELF data encoding %d", ErrBadVmcore, eh[5])
	}
	if t := v.order.Uint16(eh[16:]); t != etCore {
		return nil, fmt.Errorf("%w: ELF type %d, want ET_CORE", ErrBadVmcore, t)
	}
	v.Machine = v.order.Uint16(eh[18:])
	phoff := v.order.Uint64(eh[32:])
	phentsize := uint64(v.order.Uint16(eh[54:]))
	phnum := uint64(v.order.Uint16(eh[56:]))
	if phentsize != phdrSize {
		return nil, fmt.Errorf("%w: program header size %d, want %d", ErrBadVmcore, phentsize, phdrSize)
	}
	if phnum == pnXNum {
		// The real count is in section header 0's sh_info.
		shoff := v.order.Uint64(eh[40:])
		var sh [64]byte
		if _, err := r.ReadAt(sh[:], int64(shoff)); err != nil || shoff > 1<<62 {
			return nil, fmt.Errorf("%w: PN_XNUM without section header 0", ErrBadVmcore)
		}
		phnum = uint64(v.order.Uint32(sh[44:]))
	}
	if phnum > maxPhnum || phoff > 1<<62 || !v.inFile(phoff, phnum*phdrSize) {
		return nil, fmt.Errorf("%w: %d program headers at %#x", ErrBadVmcore, phnum, phoff)
	}
	buf := make([]byte, phnum*phdrSize)
	if _, err := r.ReadAt(buf, int64(phoff)); err != nil {
		return nil, fmt.Errorf("%w: reading %d program headers: %w", ErrBadVmcore, phnum, err)
	}
	for i := uint64(0); i < phnum; i++ {
		p := buf[i*phdrSize:]
		v.Segments = append(v.Segments, Segment{
			Type:   v.order.Uint32(p[0:]),
			Offset: v.order.Uint64(p[8:]),
			Vaddr:  v.order.Uint64(p[16:]),
			Paddr:  v.order.Uint64(p[24:]),
			Filesz: v.order.Uint64(p[32:]),
			Memsz:  v.order.Uint64(p[40:]),
		})
	}
	return v, nil
}

// readerSize returns the size of r if it tells (bytes.Reader,
// io.SectionReader, *os.File), else -1.
func readerSize(r io.ReaderAt) int64 {
	switch x := r.(type) {
	case interface{ Size() int64 }:
		return x.Size()
	case interface{ Stat() (os.FileInfo, error) }:
		if fi, err := x.Stat(); err == nil && fi.Mode().IsRegular() {
			return fi.Size()
		}
	}
	return -1
}

// inFile reports whether [off, off+n) lies within the file, when its size
// is known.
func (v *Vmcore) inFile(off, n uint64) bool {
	return v.size < 0 || (off <= uint64(v.size) && n <= uint64(v.size)-off)
}

// ReadVmcoreSegments returns the PT_LOAD segments of an ELF64 core (e.g.
// /proc/vmcore): the RAM of the crashed kernel, for cross-checking a memory
// map (CheckMemoryMap).
func ReadVmcoreSegments(r io.ReaderAt) ([]Segment, error) {
	v, err := OpenVmcore(r)
	if err != nil {
		return nil, err
	}
	return v.Loads(), nil
}

// Loads returns the PT_LOAD segments.
func (v *Vmcore) Loads() []Segment {
	var out []Segment
	for _, s := range v.Segments {
		if s.Type == ptLoad {
			out = append(out, s)
		}
	}
	return out
}

// Note is one ELF note.
type Note struct {
	Name string
	Type uint32
	Desc []byte
}

// Notes returns the notes of every PT_NOTE segment, in order.
func (v *Vmcore) Notes() ([]Note, error) {
	var notes []Note
	for _, s := range v.Segments {
		if s.Type != ptNote {
			continue
		}
		if s.Filesz > maxNoteSize || s.Offset > 1<<62 || !v.inFile(s.Offset, s.Filesz) {
			return nil, fmt.Errorf("%w: PT_NOTE of %d bytes at %#x", ErrBadVmcore, s.Filesz, s.Offset)
		}
		buf := make([]byte, s.Filesz)
		if _, err := v.r.ReadAt(buf, int64(s.Offset)); err != nil {
			return nil, fmt.Errorf("%w: reading PT_NOTE at %#x: %w", ErrBadVmcore, s.Offset, err)
		}
		ns, err := parseNotes(buf, v.order)
		if err != nil {
			return nil, err
		}
		notes = append(notes, ns...)
	}
	return notes, nil
}

// parseNotes walks Elf64_Nhdr records (4-byte namesz, descsz, type; name
// and desc each padded to 4 bytes, as the kernel writes them). A header of
// zeros ends the list (unused per-CPU note buffers).
func parseNotes(b []byte, order binary.ByteOrder) ([]Note, error) {
	var notes []Note
	for len(b) >= 12 {
		namesz, descsz, typ := uint64(order.Uint32(b)), uint64(order.Uint32(b[4:])), order.Uint32(b[8:])
		if namesz == 0 && descsz == 0 && typ == 0 {
			break
		}
		b = b[12:]
		nameEnd, descStart := namesz, align4(namesz)
		descEnd := descStart + descsz
		if descEnd > uint64(len(b)) {
			return notes, fmt.Errorf("%w: note of %d+%d bytes overruns its segment", ErrBadVmcore, namesz, descsz)
		}
		name := strings.TrimRight(string(b[:nameEnd]), "\x00")
		notes = append(notes, Note{Name: name, Type: typ, Desc: b[descStart:descEnd:descEnd]})
		if next := align4(descEnd); next < uint64(len(b)) {
			b = b[next:]
		} else {
			b = nil
		}
	}
	return notes, nil
}

func align4(n uint64) uint64 { return (n + 3) &^ 3 }

// VMCOREINFO is the crashed kernel's VMCOREINFO note: "KEY=value" lines
// (Documentation/admin-guide/kdump/vmcoreinfo.rst), e.g. OSRELEASE,
// PAGESIZE, CRASHTIME, SYMBOL(prb), SIZE(prb_desc),
// OFFSET(printk_info.seq).
type VMCOREINFO map[string]string

// ParseVMCOREINFO parses the note's text.
func ParseVMCOREINFO(b []byte) VMCOREINFO {
	info := VMCOREINFO{}
	for _, line := range strings.Split(strings.TrimRight(string(b), "\x00"), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			info[k] = v
		}
	}
	return info
}

// Symbol returns SYMBOL(name), an address printed in hex.
func (vi VMCOREINFO) Symbol(name string) (uint64, bool) {
	v, err := strconv.ParseUint(vi["SYMBOL("+name+")"], 16, 64)
	return v, err == nil
}

// Size returns SIZE(name) (decimal).
func (vi VMCOREINFO) Size(name string) (uint64, bool) { return vi.decimal("SIZE(" + name + ")") }

// Offset returns OFFSET(name), e.g. Offset("printk_info.seq").
func (vi VMCOREINFO) Offset(name string) (uint64, bool) { return vi.decimal("OFFSET(" + name + ")") }

// Number returns NUMBER(name).
func (vi VMCOREINFO) Number(name string) (int64, bool) {
	v, err := strconv.ParseInt(vi["NUMBER("+name+")"], 10, 64)
	return v, err == nil
}

func (vi VMCOREINFO) decimal(key string) (uint64, bool) {
	v, err := strconv.ParseUint(vi[key], 10, 64)
	return v, err == nil
}

// VMCOREINFO returns the parsed VMCOREINFO note.
func (v *Vmcore) VMCOREINFO() (VMCOREINFO, error) {
	notes, err := v.Notes()
	if err != nil {
		return nil, err
	}
	for _, n := range notes {
		if n.Name == "VMCOREINFO" {
			return ParseVMCOREINFO(n.Desc), nil
		}
	}
	return nil, fmt.Errorf("%w: no VMCOREINFO note", ErrBadVmcore)
}

// ReadVirt reads n bytes of the crashed kernel's memory at virtual address
// va, translating through the PT_LOAD segments (the kernel text mapping and
// the direct map). Bytes beyond a segment's file size read as zero.
func (v *Vmcore) ReadVirt(va uint64, n int) ([]byte, error) {
	if n < 0 || n > maxRead {
		return nil, fmt.Errorf("%w: read of %d bytes at %#x", ErrBadVmcore, n, va)
	}
	out := make([]byte, n)
	done := 0
	for done < n {
		addr := va + uint64(done)
		s, ok := v.segmentFor(addr)
		if !ok {
			return nil, fmt.Errorf("%w: address %#x is in no PT_LOAD segment", ErrBadVmcore, addr)
		}
		off := addr - s.Vaddr
		chunk := min(uint64(n-done), s.Memsz-off)
		if off < s.Filesz {
			fileChunk := min(chunk, s.Filesz-off)
			if !v.inFile(s.Offset+off, fileChunk) {
				return nil, fmt.Errorf("%w: segment at %#x extends past the end of the file", ErrBadVmcore, s.Vaddr)
			}
			if _, err := v.r.ReadAt(out[done:done+int(fileChunk)], int64(s.Offset+off)); err != nil {
				return nil, fmt.Errorf("%w: reading %#x: %w", ErrBadVmcore, addr, err)
			}
		}
		done += int(chunk)
	}
	return out, nil
}

func (v *Vmcore) segmentFor(va uint64) (Segment, bool) {
	for _, s := range v.Segments {
		if s.Type == ptLoad && va >= s.Vaddr && va-s.Vaddr < s.Memsz {
			return s, true
		}
	}
	return Segment{}, false
}

func (v *Vmcore) readU64(va uint64) (uint64, error) {
	b, err := v.ReadVirt(va, 8)
	if err != nil {
		return 0, err
	}
	return v.order.Uint64(b), nil
}

func (v *Vmcore) readU32(va uint64) (uint32, error) {
	b, err := v.ReadVirt(va, 4)
	if err != nil {
		return 0, err
	}
	return v.order.Uint32(b), nil
}

// ErrMemoryMapMismatch: a vmcore segment lies outside the map's RAM.
var ErrMemoryMapMismatch = errors.New("memory map does not cover the crashed kernel's RAM")

// CheckMemoryMap cross-checks a recorded memory map against the PT_LOAD
// segments of the crashed kernel's vmcore: every segment's physical range
// must lie in the map's System RAM. (The vmcore lacks the low 1 MiB and the
// crash reservation, so the map legitimately has more RAM than the
// segments.)
func CheckMemoryMap(mm memmap.Map, loads []Segment) error {
	ram := memmap.Merge(mm.RAM())
	var bad []string
	for _, s := range loads {
		if s.Memsz == 0 {
			continue
		}
		seg := memmap.Range{Start: s.Paddr, End: s.Paddr + s.Memsz}
		covered := false
		for _, r := range ram {
			if r.Covers(seg) {
				covered = true
				break
			}
		}
		if !covered {
			bad = append(bad, fmt.Sprintf("[%#x-%#x]", seg.Start, seg.End-1))
		}
	}
	if len(bad) > 0 {
		return fmt.Errorf("%w: vmcore RAM %s", ErrMemoryMapMismatch, strings.Join(bad, " "))
	}
	return nil
}
