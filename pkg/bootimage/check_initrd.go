package bootimage

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
)

// What the kernel's init/initramfs.c reads.
const (
	cpioHeaderLen = 110
	pathMax       = 4096 // PATH_MAX: longest name (with its NUL) the kernel creates
	trailerName   = "TRAILER!!!"
	sIFMT         = 0o170000
	sIFREG        = 0o100000
	sIFLNK        = 0o120000
)

// initrdPiece describes one piece of an initrd as the check found it.
type initrdPiece struct {
	Offset   int64  // where the piece starts in the initrd
	Length   int64  // bytes of the initrd it occupies
	Format   string // "cpio" for an uncompressed archive, else the compressor
	Unpacked int64  // bytes of cpio data it holds (after decompression)
	Archives int    // cpio archives, each ending in TRAILER!!!
	Entries  int    // cpio entries, trailers not counted
}

// Default initrd limits (InitrdLimits). A compressed piece of an initrd
// built from programs and kernel modules unpacks to 3 to 5 times its
// size; one that unpacks to a hundred times its size, beyond 16 MiB, is
// far more likely a decompression bomb, which the kernel would unpack
// into RAM at boot.
const (
	// DefaultInitrdMaxRatio is how many times its compressed size a
	// compressed piece may unpack to.
	DefaultInitrdMaxRatio = 100
	// InitrdRatioFloor is what any compressed piece may unpack to,
	// whatever its ratio: small pieces of mostly empty files compress
	// far better than a hundred to one.
	InitrdRatioFloor = 16 << 20
	// DefaultInitrdMaxUnpacked is what all initrd pieces of a boot image
	// may unpack to together (uncompressed archives count their size).
	DefaultInitrdMaxUnpacked = 4 << 30
)

// InitrdLimits bound what an initrd unpacks to; ScanInitrd stops
// decompressing a piece as soon as it passes them. The zero value means
// the defaults.
type InitrdLimits struct {
	// MaxRatio is how many times its compressed size a compressed piece
	// (one stream) may unpack to, or InitrdRatioFloor if that is more.
	// 0 means DefaultInitrdMaxRatio, a negative value no ratio limit.
	MaxRatio int64
	// MaxUnpacked is what the initrd (all its pieces) may unpack to:
	// ScanInitrd applies it to the one initrd it reads, and a boot image
	// of several initrd modules (pkg/fastreboot) to all of them together
	// (UnpackedLimit). 0 means DefaultInitrdMaxUnpacked, a negative value
	// no limit.
	MaxUnpacked int64
}

// UnpackedLimit returns the bound on what all initrd pieces of a boot
// image may unpack to together (MaxUnpacked, or its default), and false
// when there is none.
func (l InitrdLimits) UnpackedLimit() (int64, bool) {
	l = l.withDefaults()
	return l.MaxUnpacked, l.MaxUnpacked > 0
}

func (l InitrdLimits) withDefaults() InitrdLimits {
	if l.MaxRatio == 0 {
		l.MaxRatio = DefaultInitrdMaxRatio
	}
	if l.MaxUnpacked == 0 {
		l.MaxUnpacked = DefaultInitrdMaxUnpacked
	}
	return l
}

// InitrdInfo is what ScanInitrd found.
type InitrdInfo struct {
	// Pieces is the number of pieces: uncompressed archives and
	// compressed streams.
	Pieces int
	// UnpackedBytes is the cpio data the pieces hold once decompressed:
	// what the kernel unpacks into its rootfs, near enough (file data
	// plus headers and names).
	UnpackedBytes int64
}

// ScanInitrd is CheckInitrd with limits on what the pieces unpack to, and
// it says how much that is. A piece beyond the limits fails with an error
// wrapping ErrBadInitrd and ErrUnpackLimit that names the piece (format,
// offset), its compressed size and what it unpacked to before it was
// stopped.
func ScanInitrd(r io.ReaderAt, size int64, lim InitrdLimits) (InitrdInfo, error) {
	pieces, err := scanInitrdLimits(r, size, lim.withDefaults())
	info := InitrdInfo{Pieces: len(pieces)}
	for _, p := range pieces {
		info.UnpackedBytes += p.Unpacked
	}
	return info, err
}

// CheckInitrd reports whether r (size bytes) is an initrd that the kernel
// unpacks completely into its rootfs, the way init/initramfs.c reads it: a
// sequence of pieces with zero bytes allowed between them, each piece
// either an uncompressed newc (070701) or crc (070702) cpio archive
// starting at a 4-byte aligned offset, or a gzip, xz, zstd, lz4 (legacy
// frame 0x184C2102), bzip2 or lzma stream holding such archives. Every
// compressed stream is decompressed fully (and its checksums verified) as
// a stream, without holding the decompressed data in memory; every cpio
// header is walked; crc archives have their data checksums verified; every
// archive must end in a TRAILER!!! record.
//
// It is stricter than the kernel in places where the kernel silently
// ignores damage: an uncompressed archive cut short, a cpio name longer
// than PATH_MAX, a compressed piece holding no archive. lzo pieces are
// refused because this check cannot decompress them, and so are xz
// streams with BCJ filters (the xz package reads LZMA2 only). Consecutive
// bzip2 streams are read as one piece.
//
// Failures wrap ErrBadInitrd and give the offset in the initrd (and in the
// decompressed data) where they were found; a truncated file or stream
// says "truncated". Read errors from r are returned as they are. The
// default InitrdLimits apply (see ScanInitrd).
func CheckInitrd(r io.ReaderAt, size int64) error {
	_, err := scanInitrd(r, size)
	return err
}

func badInitrd(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInitrd, fmt.Sprintf(format, args...))
}

// scanInitrd checks the initrd under the default limits and describes
// its pieces.
func scanInitrd(r io.ReaderAt, size int64) ([]initrdPiece, error) {
	return scanInitrdLimits(r, size, InitrdLimits{}.withDefaults())
}

// scanInitrdLimits checks the initrd and describes its pieces.
func scanInitrdLimits(r io.ReaderAt, size int64, lim InitrdLimits) ([]initrdPiece, error) {
	if size <= 0 {
		return nil, badInitrd("empty (%d bytes)", size)
	}
	c := newCursor(r, size)
	var pieces []initrdPiece
	var unpacked int64 // by the pieces so far
	for {
		b, err := c.peekByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return pieces, c.readError(err)
		}
		var p initrdPiece
		switch {
		case b == 0:
			if err := c.skipZeros(); err != nil {
				return pieces, c.readError(err)
			}
			continue
		case b == '0' && c.off%4 == 0:
			p, err = scanCpioPiece(c)
		default:
			p, err = scanCompressedPiece(c, lim, unpacked)
		}
		if err != nil {
			return pieces, err
		}
		unpacked += p.Unpacked
		if lim.MaxUnpacked >= 0 && unpacked > lim.MaxUnpacked {
			return pieces, fmt.Errorf("%w: %w: the pieces up to the %s piece at offset %d unpack to %d bytes, more than the %d an initrd may (InitrdLimits.MaxUnpacked)",
				ErrBadInitrd, ErrUnpackLimit, p.Format, p.Offset, unpacked, lim.MaxUnpacked)
		}
		pieces = append(pieces, p)
	}
	if len(pieces) == 0 {
		return nil, badInitrd("no cpio archive in %d bytes of zeros", size)
	}
	return pieces, nil
}

// scanCpioPiece reads one uncompressed archive at c's (aligned) offset and
// the zero padding after it.
func scanCpioPiece(c *cursor) (initrdPiece, error) {
	p := initrdPiece{Offset: c.off, Format: "cpio", Archives: 1}
	n, err := walkArchive(&c.stream)
	if err != nil {
		if c.ioErr != nil {
			return p, c.readError(c.ioErr)
		}
		return p, badInitrd("%v", err)
	}
	p.Entries = n
	p.Length = c.off - p.Offset
	p.Unpacked = p.Length
	// do_reset: zeros may follow; whatever comes next must be aligned.
	if err := c.skipZeros(); err != nil {
		return p, c.readError(err)
	}
	if _, err := c.peekByte(); err == nil && c.off%4 != 0 {
		return p, badInitrd("offset %d: broken padding: data after the cpio archive at %d starts at an offset that is not a multiple of 4", c.off, p.Offset)
	}
	return p, nil
}

// scanCompressedPiece decompresses the stream at c's offset, walks the
// archives in it and leaves c just after the stream. The stream may unpack
// to lim.MaxRatio times what it has consumed (at least InitrdRatioFloor),
// and the pieces before it (unpacked bytes) and it to lim.MaxUnpacked;
// decompression stops as soon as it passes either.
func scanCompressedPiece(c *cursor, lim InitrdLimits, unpacked int64) (initrdPiece, error) {
	start := c.off
	p := initrdPiece{Offset: start}
	head, err := c.br.Peek(8)
	if len(head) == 0 {
		return p, c.readError(err)
	}
	format := compressionFormat(head)
	p.Format = format
	switch format {
	case "":
		hint := ""
		if bytes.HasPrefix(head, []byte("0707")) {
			hint = "; a cpio archive must start at an offset that is a multiple of 4: pad the piece before it with zeros"
		}
		return p, badInitrd("offset %d: bad magic % x (%q): not a newc/crc cpio archive (070701/070702) nor a gzip, xz, zstd, lz4, bzip2 or lzma stream%s", start, head, head, hint)
	case "lzo":
		return p, badInitrd("offset %d: lzo-compressed piece: the kernel may accept it, but this check cannot decompress lzo", start)
	}

	d, err := openDecoder(format, c)
	if err != nil {
		return p, decoderError(c, format, start, err)
	}
	guard := &unpackGuard{r: d, lim: lim, before: unpacked, consumed: func() int64 { return c.off - start }, rest: c.size - start}
	out := newStream(guard, streamBuf)
	archives, entries, werr := walkDecompressed(out)
	if guard.err != nil {
		return p, fmt.Errorf("%w: %w: %s piece at offset %d: %v", ErrBadInitrd, ErrUnpackLimit, format, start, guard.err)
	}
	derr := d.err
	if cerr := d.close(); derr == nil && cerr != io.EOF {
		derr = cerr
	}
	if derr != nil {
		return p, decoderError(c, format, start, derr)
	}
	if werr != nil {
		return p, badInitrd("%s piece at offset %d: in the decompressed data: %v", format, start, werr)
	}
	used, err := d.consumed()
	if err != nil {
		return p, decoderError(c, format, start, err)
	}
	if used <= 0 || start+used > c.size {
		return p, badInitrd("%s piece at offset %d: stream length %d does not fit the initrd", format, start, used)
	}
	p.Length = used
	p.Unpacked = out.off
	if err := ratioLimit(lim, used, p.Unpacked); err != nil {
		return p, fmt.Errorf("%w: %w: %s piece at offset %d: %v", ErrBadInitrd, ErrUnpackLimit, format, start, err)
	}
	p.Archives = archives
	p.Entries = entries
	c.seek(start + used)
	return p, nil
}

// unpackGuard passes the decompressed bytes of one piece on until they
// pass the limits: lim.MaxRatio times the compressed bytes consumed so far
// (or InitrdRatioFloor), and lim.MaxUnpacked with the pieces before.
type unpackGuard struct {
	r        io.Reader
	lim      InitrdLimits
	before   int64
	consumed func() int64
	rest     int64 // bytes of the initrd from the piece's start
	n        int64
	err      error
}

func (g *unpackGuard) Read(p []byte) (int, error) {
	if g.err != nil {
		return 0, g.err
	}
	n, err := g.r.Read(p)
	g.n += int64(n)
	if g.lim.MaxUnpacked >= 0 && g.before+g.n > g.lim.MaxUnpacked {
		g.err = fmt.Errorf("stopped: it unpacks to more than %d bytes, with the pieces before it more than the %d an initrd may (InitrdLimits.MaxUnpacked)",
			g.lim.MaxUnpacked-g.before, g.lim.MaxUnpacked)
		return 0, g.err
	}
	// The stream has consumed at most what the cursor read.
	if rerr := ratioLimit(g.lim, g.consumed(), g.n); rerr != nil {
		g.err = fmt.Errorf("stopped: its first %v; the piece has at most %d bytes", rerr, g.rest)
		return 0, g.err
	}
	return n, err
}

// ratioLimit checks that compressed bytes unpacking to unpacked bytes
// stay within lim.MaxRatio (or InitrdRatioFloor).
func ratioLimit(lim InitrdLimits, compressed, unpacked int64) error {
	if lim.MaxRatio < 0 {
		return nil
	}
	limit := max(InitrdRatioFloor, lim.MaxRatio*compressed)
	if unpacked > limit {
		return fmt.Errorf("%d compressed bytes unpack to more than %d bytes, more than %d times their size (InitrdLimits.MaxRatio; any piece may unpack to %d)",
			compressed, limit, lim.MaxRatio, int64(InitrdRatioFloor))
	}
	return nil
}

func decoderError(c *cursor, format string, start int64, err error) error {
	if c.ioErr != nil {
		return c.readError(c.ioErr)
	}
	if c.eof {
		return badInitrd("%s piece at offset %d: truncated: the initrd ends (at offset %d) before the stream does (%v)", format, start, c.size, err)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return badInitrd("%s piece at offset %d: truncated: the stream ends before it is complete (%v)", format, start, err)
	}
	if strings.Contains(err.Error(), "unsupported") {
		// e.g. xz with a BCJ filter: the kernel may read it, this check
		// cannot.
		return badInitrd("%s piece at offset %d: cannot be checked: %v", format, start, err)
	}
	return badInitrd("%s piece at offset %d: corrupt: %v", format, start, err)
}

// compressionFormat names the compressor whose magic starts b, using the
// two-byte magics of lib/decompress.c; "" if none.
func compressionFormat(b []byte) string {
	if len(b) < 2 {
		return ""
	}
	switch {
	case b[0] == 0x1f && (b[1] == 0x8b || b[1] == 0x9e):
		return "gzip"
	case b[0] == 'B' && b[1] == 'Z':
		return "bzip2"
	case b[0] == 0x5d && b[1] == 0x00:
		return "lzma"
	case b[0] == 0xfd && b[1] == 0x37:
		return "xz"
	case b[0] == 0x89 && b[1] == 0x4c:
		return "lzo"
	case b[0] == 0x02 && b[1] == 0x21:
		return "lz4"
	case b[0] == 0x28 && b[1] == 0xb5:
		return "zstd"
	}
	return ""
}

// walkDecompressed walks the archives in decompressed data the way
// flush_buffer does: archives follow each other, separated by zeros, each
// starting at an aligned offset; the data must end after a trailer.
func walkDecompressed(s *stream) (archives, entries int, err error) {
	for {
		if err := s.skipZeros(); err != nil {
			return archives, entries, err
		}
		b, err := s.peekByte()
		if err == io.EOF {
			break
		}
		if err != nil {
			return archives, entries, err
		}
		if s.off%4 != 0 {
			return archives, entries, fmt.Errorf("offset %d: broken padding: data after a cpio archive starts at an offset that is not a multiple of 4", s.off)
		}
		if b != '0' {
			head, _ := s.br.Peek(8)
			return archives, entries, fmt.Errorf("offset %d: junk after a cpio archive: % x (%q)", s.off, head, head)
		}
		n, err := walkArchive(s)
		entries += n
		if err != nil {
			return archives, entries, err
		}
		archives++
	}
	if archives == 0 {
		return 0, 0, fmt.Errorf("data holds no cpio archive (%d bytes)", s.off)
	}
	return archives, entries, nil
}

// walkArchive reads one cpio archive from s, which is at an aligned
// offset, up to and including its TRAILER!!! record, and returns the
// number of entries before the trailer. Entry data is skipped (or summed,
// for crc archives), never held.
func walkArchive(s *stream) (int, error) {
	var hdr [cpioHeaderLen]byte
	var name [pathMax]byte
	var scratch [32 << 10]byte
	entries := 0
	for {
		at := s.off
		if _, err := io.ReadFull(s, hdr[:]); err != nil {
			return entries, truncatedCpio(err, "offset %d: cpio header cut short, before %s", at, trailerName)
		}
		var csum bool
		switch m := hdr[:6]; string(m) {
		case "070701":
		case "070702":
			csum = true
		case "070707":
			return entries, fmt.Errorf("offset %d: old portable cpio (magic 070707): the kernel reads only newc (070701) and crc (070702); use cpio -H newc", at)
		default:
			return entries, fmt.Errorf("offset %d: bad cpio magic % x (%q), want 070701 or 070702", at, m, m)
		}
		var field [13]uint32
		for i := range field {
			v, ok := parseHex8(hdr[6+8*i : 14+8*i])
			if !ok {
				return entries, fmt.Errorf("offset %d: cpio header field %d is not hex: %q", at, i, hdr[6+8*i:14+8*i])
			}
			field[i] = v
		}
		mode, fileSize, nameSize, check := field[1], int64(field[6]), field[11], field[12]
		if nameSize == 0 || nameSize > pathMax {
			return entries, fmt.Errorf("offset %d: cpio name size %d, want 1 to %d", at, nameSize, pathMax)
		}
		if _, err := io.ReadFull(s, name[:nameSize]); err != nil {
			return entries, truncatedCpio(err, "offset %d: cpio name cut short, before %s", at, trailerName)
		}
		if name[nameSize-1] != 0 {
			return entries, fmt.Errorf("offset %d: cpio name %q is not NUL-terminated", at, name[:nameSize])
		}
		fileName := string(name[:nameSize-1])
		if err := s.align4(); err != nil {
			return entries, truncatedCpio(err, "offset %d: cpio entry %q cut short, before %s", at, fileName, trailerName)
		}

		isReg := mode&sIFMT == sIFREG
		var sum uint32
		if csum && isReg {
			for left := fileSize; left > 0; {
				n, err := s.Read(scratch[:min(left, int64(len(scratch)))])
				for _, b := range scratch[:n] {
					sum += uint32(b)
				}
				left -= int64(n)
				if err != nil && left > 0 {
					return entries, truncatedCpio(err, "offset %d: data of %q cut short, before %s", at, fileName, trailerName)
				}
			}
		} else if _, err := s.discard(fileSize); err != nil {
			return entries, truncatedCpio(err, "offset %d: data of %q cut short, before %s", at, fileName, trailerName)
		}
		if err := s.align4(); err != nil {
			return entries, truncatedCpio(err, "offset %d: cpio entry %q cut short, before %s", at, fileName, trailerName)
		}
		if csum && isReg && sum != check {
			return entries, fmt.Errorf("offset %d: bad data checksum for %q: header says %08x, data sums to %08x", at, fileName, check, sum)
		}

		// do_header reads the name only of regular files and of entries
		// without data (symlinks go elsewhere); only then can it be the
		// trailer.
		if fileName == trailerName && mode&sIFMT != sIFLNK && (isReg || fileSize == 0) {
			return entries, nil
		}
		entries++
	}
}

// truncatedCpio describes an archive that ends early, or passes on a
// read error that is not about the end of the data.
func truncatedCpio(err error, format string, args ...any) error {
	if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("truncated: "+format, args...)
	}
	return err
}

func parseHex8(b []byte) (uint32, bool) {
	var v uint32
	for _, c := range b {
		var d byte
		switch {
		case '0' <= c && c <= '9':
			d = c - '0'
		case 'a' <= c && c <= 'f':
			d = c - 'a' + 10
		case 'A' <= c && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, false
		}
		v = v<<4 | uint32(d)
	}
	return v, true
}
