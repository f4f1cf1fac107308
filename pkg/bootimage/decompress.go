package bootimage

import (
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

// What the kernel's lib/decompress*.c accept, and the limits this check
// adds so that hostile input cannot make it allocate without bound.
const (
	// lib/decompress_unlz4.c: legacy frames hold chunks that decompress
	// to at most 8 MiB each.
	lz4LegacyMagic = 0x184C2102
	lz4ChunkOut    = 8 << 20
	// lib/decompress_unzstd.c refuses windows above 1<<ZSTD_WINDOWLOG_MAX
	// (128 MiB); the same bound is used for the lzma dictionary.
	maxWindow = 128 << 20
)

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
