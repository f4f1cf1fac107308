package bootimage

import (
	"bufio"
	"fmt"
	"io"
)

// streamBuf is the buffer of each stream: the initrd, and the
// decompressed data of the piece being walked.
const streamBuf = 64 << 10

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
