package bootimage

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrNotRegularFile: a module's source (or a manifest) is not a regular
// file: a character or block device, a FIFO, a socket or a directory. Such
// a file has no size to check against the manifest's: /dev/zero would fill
// RAM, a FIFO would block until someone writes to it.
var ErrNotRegularFile = errors.New("bootimage: not a regular file")

// OpenFile opens the file at path for reading a boot module or manifest
// from it: open(2) with O_NONBLOCK, so that a FIFO (which would block the
// open until a writer appears) is opened at once, then fstat(2) of what
// was opened (no race with a rename). Anything but a regular file is
// refused with an error that names the path and what it is ("is a
// character device") and wraps ErrNotRegularFile. It returns the open file
// and its size; the caller reads no more than that size (O_NONBLOCK does
// not change reads of a regular file).
func OpenFile(path string) (*os.File, int64, error) {
	return openRegular(path, 0)
}

// OpenFileNoFollow is OpenFile without following a symbolic link in the
// last element of path (O_NOFOLLOW): for files this program wrote itself
// and reads back from a directory others might write to, such as the
// handoff's module files. A symbolic link there is refused like any other
// file that is not regular: an error that names the path, says "is a
// symbolic link" and wraps ErrNotRegularFile.
func OpenFileNoFollow(path string) (*os.File, int64, error) {
	return openRegular(path, oNoFollow)
}

func openRegular(path string, flags int) (*os.File, int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|flags, 0)
	if err != nil {
		// O_NOFOLLOW fails a symbolic link with ELOOP.
		if fi, lerr := os.Lstat(path); flags&oNoFollow != 0 && errors.Is(err, syscall.ELOOP) && lerr == nil && fi.Mode()&fs.ModeSymlink != 0 {
			return nil, 0, fmt.Errorf("%s: is %s: %w", path, fileKind(fi.Mode()), ErrNotRegularFile)
		}
		return nil, 0, err // *PathError names the file
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return nil, 0, fmt.Errorf("%s: is %s: %w", path, fileKind(fi.Mode()), ErrNotRegularFile)
	}
	return f, fi.Size(), nil
}

// fileKind names the type of a file that is not a regular one.
func fileKind(m fs.FileMode) string {
	switch {
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	case m&fs.ModeNamedPipe != 0:
		return "a FIFO"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	}
	return fmt.Sprintf("not a regular file (mode %v)", m)
}

// sizedReader reads exactly size bytes from r: a file that grew after it
// was opened is not read past its size, and one that shrank is an error.
type sizedReader struct {
	r    io.Reader
	path string
	left int64
	size int64
}

func (s *sizedReader) Read(p []byte) (int, error) {
	if s.left <= 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > s.left {
		p = p[:s.left]
	}
	n, err := s.r.Read(p)
	s.left -= int64(n)
	if err == io.EOF && s.left > 0 {
		return n, fmt.Errorf("%s: ended after %d of its %d bytes (changed while read): %w", s.path, s.size-s.left, s.size, io.ErrUnexpectedEOF)
	}
	return n, err
}
