package bootimage

import (
	"bufio"
	"bytes"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// What the kernel's init/initramfs.c and lib/decompress*.c accept, and the
// limits this check adds so that hostile input cannot make it allocate
// without bound.
const (
	cpioHeaderLen = 110
	pathMax       = 4096 // PATH_MAX: longest name (with its NUL) the kernel creates
	trailerName   = "TRAILER!!!"
	sIFMT         = 0o170000
	sIFREG        = 0o100000
	sIFLNK        = 0o120000

	// lib/decompress_unlz4.c: legacy frames hold chunks that decompress
	// to at most 8 MiB each.
	lz4LegacyMagic = 0x184C2102
	lz4ChunkOut    = 8 << 20
	// lib/decompress_unzstd.c refuses windows above 1<<ZSTD_WINDOWLOG_MAX
	// (128 MiB); the same bound is used for the lzma dictionary.
	maxWindow = 128 << 20

	streamBuf = 64 << 10
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
// refused because this check cannot decompress them. Consecutive bzip2
// streams are read as one piece.
//
// Failures wrap ErrBadInitrd and give the offset in the initrd (and in the
// decompressed data) where they were found; a truncated file or stream
// says "truncated". Read errors from r are returned as they are.
func CheckInitrd(r io.ReaderAt, size int64) error {
	_, err := scanInitrd(r, size)
	return err
}

func badInitrd(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrBadInitrd, fmt.Sprintf(format, args...))
}

// scanInitrd checks the initrd and describes its pieces.
func scanInitrd(r io.ReaderAt, size int64) ([]initrdPiece, error) {
	if size <= 0 {
		return nil, badInitrd("empty (%d bytes)", size)
	}
	c := newCursor(r, size)
	var pieces []initrdPiece
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
			p, err = scanCompressedPiece(c)
		}
		if err != nil {
			return pieces, err
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
// archives in it and leaves c just after the stream.
func scanCompressedPiece(c *cursor) (initrdPiece, error) {
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
	out := newStream(d, streamBuf)
	archives, entries, werr := walkDecompressed(out)
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
	p.Length = used
	p.Unpacked = out.off
	p.Archives = archives
	p.Entries = entries
	c.seek(start + used)
	return p, nil
}

func decoderError(c *cursor, format string, start int64, err error) error {
	if c.ioErr != nil {
		return c.readError(c.ioErr)
	}
	if c.eof || errors.Is(err, io.ErrUnexpectedEOF) {
		return badInitrd("%s piece at offset %d: truncated: the stream is cut short at offset %d (%v)", format, start, c.size, err)
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

// stream reads sequentially through a buffer and counts its offset.
type stream struct {
	br  *bufio.Reader
	off int64 // offset of the next byte
	eof bool  // a read ran into the end of the data
}

func newStream(r io.Reader, size int) *stream {
	return &stream{br: bufio.NewReaderSize(r, size)}
}

func (s *stream) Read(p []byte) (int, error) {
	n, err := s.br.Read(p)
	s.off += int64(n)
	if err == io.EOF {
		s.eof = true
	}
	return n, err
}

func (s *stream) ReadByte() (byte, error) {
	b, err := s.br.ReadByte()
	if err == nil {
		s.off++
	} else if err == io.EOF {
		s.eof = true
	}
	return b, err
}

func (s *stream) peekByte() (byte, error) {
	b, err := s.br.Peek(1)
	if len(b) == 0 {
		return 0, err
	}
	return b[0], nil
}

func (s *stream) discard(n int64) (int64, error) {
	var done int64
	for done < n {
		k, err := s.br.Discard(int(min(n-done, 1<<30)))
		done += int64(k)
		s.off += int64(k)
		if err != nil {
			if err == io.EOF {
				s.eof = true
			}
			return done, err
		}
	}
	return done, nil
}

func (s *stream) align4() error {
	_, err := s.discard((4 - s.off%4) % 4)
	return err
}

// skipZeros consumes zero bytes; io.EOF is not an error here.
func (s *stream) skipZeros() error {
	for {
		buf, err := s.br.Peek(1)
		if len(buf) == 0 {
			if err == io.EOF {
				return nil
			}
			return err
		}
		avail := s.br.Buffered()
		buf, _ = s.br.Peek(avail)
		i := 0
		for i < len(buf) && buf[i] == 0 {
			i++
		}
		s.br.Discard(i)
		s.off += int64(i)
		if i < len(buf) {
			return nil
		}
	}
}

// cursor is a stream over the initrd itself that can be moved to any
// offset, because decompressors may read ahead of where their stream ends.
type cursor struct {
	stream
	ra    io.ReaderAt
	size  int64
	ioErr error // first error from ra that is not about its end
}

func newCursor(ra io.ReaderAt, size int64) *cursor {
	c := &cursor{ra: ra, size: size}
	c.br = bufio.NewReaderSize(nil, streamBuf)
	c.seek(0)
	return c
}

func (c *cursor) seek(off int64) {
	c.off = off
	c.eof = false
	c.br.Reset(&errRecorder{r: io.NewSectionReader(c.ra, off, c.size-off), err: &c.ioErr})
}

// readError wraps a failure to read the initrd itself.
func (c *cursor) readError(err error) error {
	if c.ioErr != nil {
		err = c.ioErr
	}
	return fmt.Errorf("read initrd at offset %d: %w", c.off, err)
}

// errRecorder remembers the first error, other than io.EOF, of r.
type errRecorder struct {
	r   io.Reader
	err *error
}

func (e *errRecorder) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && *e.err == nil {
		*e.err = err
	}
	return n, err
}

// decoder is a decompressor reading from the cursor. It remembers its
// first error (so that a cpio walk failing on a short read can tell a
// broken stream from a broken archive) and knows how many bytes of the
// initrd its stream took.
type decoder struct {
	r        io.Reader
	err      error
	done     bool // the stream ended: bufio would ask again, and some decoders would read on
	consumed func() (int64, error)
	close    func() error
}

func (d *decoder) Read(p []byte) (int, error) {
	if d.err != nil {
		return 0, d.err
	}
	if d.done {
		return 0, io.EOF
	}
	n, err := d.r.Read(p)
	switch {
	case err == io.EOF:
		d.done = true
	case err != nil:
		d.err = err
	}
	return n, err
}

func openDecoder(format string, c *cursor) (*decoder, error) {
	start := c.off
	read := func() int64 { return c.off - start }
	exact := func() (int64, error) { return read(), nil }
	noClose := func() error { return nil }
	switch format {
	case "gzip":
		// gzip reads exactly one member, and no further than it, from an
		// io.ByteReader.
		zr, err := gzip.NewReader(c)
		if err != nil {
			return nil, err
		}
		zr.Multistream(false)
		return &decoder{r: zr, consumed: exact, close: zr.Close}, nil
	case "xz":
		// One stream; the reader checks that nothing follows by reading
		// one more byte, which the stream does not own.
		// DictCap is a floor here: each block gets the dictionary its
		// header asks for, not 8 MiB.
		xr, err := xz.ReaderConfig{DictCap: lzma.MinDictCap, SingleStream: true}.NewReader(c)
		if err != nil {
			return nil, err
		}
		extra := &endMarker{r: xr, is: func(err error) bool { return err.Error() == "xz: unexpected data after stream" }, over: 1}
		used := func() (int64, error) {
			n := read() - extra.overRead()
			return n, checkXZFooter(c.ra, start, n)
		}
		return &decoder{r: extra, consumed: used, close: noClose}, nil
	case "lzma":
		lr, err := lzma.ReaderConfig{DictCap: maxWindow}.NewReader(c)
		if err != nil {
			return nil, err
		}
		return &decoder{r: lr, consumed: exact, close: noClose}, nil
	case "bzip2":
		// compress/bzip2 looks for a concatenated stream after the end
		// of one by reading two more bytes. Feed it two zero bytes past
		// the end of the initrd so that it always finds "no stream
		// follows" and never mistakes the end for a short read.
		in := &zeroTail{c: c, tail: 2}
		br := bzip2.NewReader(in)
		extra := &endMarker{r: br, is: func(err error) bool {
			var se bzip2.StructuralError
			return errors.As(err, &se) && string(se) == "bad magic value in continuation file"
		}, over: 2}
		used := func() (int64, error) {
			// The two bytes read after the end are the initrd's, or
			// the zeros given past its end.
			return read() + int64(in.given) - extra.overRead(), nil
		}
		return &decoder{r: extra, consumed: used, close: noClose}, nil
	case "zstd":
		fr := &zstdFrame{c: c}
		zr, err := zstd.NewReader(fr,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxWindow))
		if err != nil {
			return nil, err
		}
		return &decoder{r: zr, consumed: exact, close: func() error { zr.Close(); return nil }}, nil
	case "lz4":
		return &decoder{r: &lz4Legacy{c: c}, consumed: exact, close: noClose}, nil
	}
	return nil, fmt.Errorf("no decompressor for %s", format)
}

// checkXZFooter checks that the n-byte xz stream at start ends in a
// stream footer (CRC32, backward size, flags, "YZ"). The xz package reports
// a clean end for a stream cut just after its last block, before the index
// and the footer.
func checkXZFooter(ra io.ReaderAt, start, n int64) error {
	var f [12]byte
	if n < int64(len(f))+12 {
		return fmt.Errorf("xz: stream of %d bytes has no room for header and footer: %w", n, io.ErrUnexpectedEOF)
	}
	if _, err := ra.ReadAt(f[:], start+n-int64(len(f))); err != nil {
		return err
	}
	if f[10] != 'Y' || f[11] != 'Z' || crc32.ChecksumIEEE(f[4:10]) != binary.LittleEndian.Uint32(f[:4]) {
		return fmt.Errorf("xz: stream ends without its index and footer: %w", io.ErrUnexpectedEOF)
	}
	return nil
}

// endMarker turns the error a decompressor gives for "data follows my
// stream" into io.EOF, and remembers that it read over bytes past the end.
type endMarker struct {
	r     io.Reader
	is    func(error) bool
	over  int64
	ended bool
}

func (e *endMarker) Read(p []byte) (int, error) {
	n, err := e.r.Read(p)
	if err != nil && err != io.EOF && e.is(err) {
		e.ended = true
		err = io.EOF
	}
	return n, err
}

func (e *endMarker) overRead() int64 {
	if e.ended {
		return e.over
	}
	return 0
}

// zeroTail reads the cursor and then up to tail zero bytes beyond the end
// of the initrd.
type zeroTail struct {
	c     *cursor
	tail  int
	given int
}

func (z *zeroTail) ReadByte() (byte, error) {
	b, err := z.c.ReadByte()
	if err == io.EOF && z.given < z.tail {
		z.given++
		return 0, nil
	}
	return b, err
}

func (z *zeroTail) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	b, err := z.ReadByte()
	if err != nil {
		return 0, err
	}
	p[0] = b
	return 1, nil
}

// zstdFrame passes exactly one zstd frame from the cursor and then reports
// io.EOF, as lib/decompress_unzstd.c decodes one frame per piece. The
// decoder may read ahead as far as it likes without consuming the next
// piece.
type zstdFrame struct {
	c       *cursor
	pending []byte // header bytes read but not yet passed on
	left    int64  // bytes of the current block (or checksum) to pass on
	state   int
	last    bool
	sum     bool
	hdr     [18]byte
}

const (
	zstdFrameHeader = iota
	zstdBlockHeader
	zstdChecksum
	zstdDone
)

func (f *zstdFrame) Read(p []byte) (int, error) {
	for len(f.pending) == 0 && f.left == 0 {
		if err := f.next(); err != nil {
			return 0, err
		}
	}
	if len(f.pending) > 0 {
		n := copy(p, f.pending)
		f.pending = f.pending[n:]
		return n, nil
	}
	n, err := f.c.Read(p[:min(int64(len(p)), f.left)])
	f.left -= int64(n)
	if err == io.EOF {
		if f.left > 0 {
			return n, io.ErrUnexpectedEOF
		}
		err = nil
	}
	return n, err
}

// next reads the next header of the frame and decides how many bytes
// follow it.
func (f *zstdFrame) next() error {
	switch f.state {
	case zstdFrameHeader:
		h := f.hdr[:5]
		if err := f.readFull(h); err != nil {
			return err
		}
		if binary.LittleEndian.Uint32(h) != 0xFD2FB528 {
			return fmt.Errorf("zstd: bad frame magic % x", h[:4])
		}
		fhd := h[4]
		if fhd&0x08 != 0 {
			return fmt.Errorf("zstd: reserved bit set in frame header descriptor 0x%02x", fhd)
		}
		single := fhd&0x20 != 0
		f.sum = fhd&0x04 != 0
		n := 0
		if !single {
			n++ // window descriptor
		}
		n += []int{0, 1, 2, 4}[fhd&0x03] // dictionary ID
		switch fhd >> 6 {
		case 0:
			if single {
				n++
			}
		case 1:
			n += 2
		case 2:
			n += 4
		case 3:
			n += 8
		}
		rest := f.hdr[5 : 5+n]
		if err := f.readFull(rest); err != nil {
			return err
		}
		f.pending = f.hdr[:5+n]
		f.state = zstdBlockHeader
	case zstdBlockHeader:
		h := f.hdr[:3]
		if err := f.readFull(h); err != nil {
			return err
		}
		bh := uint32(h[0]) | uint32(h[1])<<8 | uint32(h[2])<<16
		f.last = bh&1 != 0
		size := int64(bh >> 3)
		switch (bh >> 1) & 3 {
		case 0, 2: // raw, compressed
			f.left = size
		case 1: // RLE: one byte repeated size times
			f.left = 1
		case 3:
			return fmt.Errorf("zstd: reserved block type")
		}
		f.pending = h
		if f.last {
			f.state = zstdChecksum
		}
	case zstdChecksum:
		if f.sum {
			f.left = 4
		}
		f.state = zstdDone
	case zstdDone:
		return io.EOF
	}
	return nil
}

func (f *zstdFrame) readFull(b []byte) error {
	_, err := io.ReadFull(f.c, b)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF
	}
	return err
}

// lz4Legacy decodes a legacy lz4 frame as lib/decompress_unlz4.c does: the
// magic, then chunks of a 32-bit little-endian length and that many bytes
// that decompress to at most 8 MiB; a repeated magic is skipped; the frame
// ends at the end of the data, at fewer than 4 bytes left, or at a zero
// length word (zero padding), which it leaves unread.
type lz4Legacy struct {
	c       *cursor
	started bool
	done    bool
	in      []byte
	out     []byte
	pos     int
	n       int
}

func (l *lz4Legacy) Read(p []byte) (int, error) {
	for l.pos == l.n {
		if l.done {
			return 0, io.EOF
		}
		if err := l.chunk(); err != nil {
			return 0, err
		}
	}
	n := copy(p, l.out[l.pos:l.n])
	l.pos += n
	return n, nil
}

func (l *lz4Legacy) chunk() error {
	word, err := l.c.br.Peek(4)
	if len(word) < 4 && err != nil && err != io.EOF {
		return err
	}
	if !l.started {
		if len(word) < 4 {
			l.c.eof = true
			return io.ErrUnexpectedEOF
		}
		if binary.LittleEndian.Uint32(word) != lz4LegacyMagic {
			return fmt.Errorf("lz4: not a legacy frame: magic % x, want 02 21 4c 18", word)
		}
		l.c.discard(4)
		l.started = true
		return nil
	}
	if len(word) < 4 {
		l.done = true // "empty or end-of-file"
		return nil
	}
	size := binary.LittleEndian.Uint32(word)
	switch size {
	case lz4LegacyMagic:
		l.c.discard(4)
		return nil
	case 0:
		l.done = true
		return nil
	}
	l.c.discard(4)
	if int64(size) > int64(lz4.CompressBlockBound(lz4ChunkOut)) {
		return fmt.Errorf("lz4: chunk of %d bytes is longer than a legacy chunk can be (%d)", size, lz4.CompressBlockBound(lz4ChunkOut))
	}
	if rest := l.c.size - l.c.off; int64(size) > rest {
		l.c.eof = true
		return fmt.Errorf("lz4: chunk of %d bytes, only %d left: %w", size, rest, io.ErrUnexpectedEOF)
	}
	if cap(l.in) < int(size) {
		l.in = make([]byte, size)
	}
	in := l.in[:size]
	if _, err := io.ReadFull(l.c, in); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return err
	}
	// Chunks are up to 8 MiB when decompressed, but small initrds have
	// small chunks: start with a small buffer and grow it if needed.
	if l.out == nil {
		l.out = make([]byte, 64<<10)
	}
	n, err := lz4.UncompressBlock(in, l.out)
	if err != nil && len(l.out) < lz4ChunkOut {
		l.out = make([]byte, lz4ChunkOut)
		n, err = lz4.UncompressBlock(in, l.out)
	}
	if err != nil {
		return fmt.Errorf("lz4: chunk at offset %d: %w", l.c.off-int64(size), err)
	}
	l.pos, l.n = 0, n
	return nil
}
