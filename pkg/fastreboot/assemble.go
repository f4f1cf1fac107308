package fastreboot

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// Piece is one part of the initrd: its bytes and their length.
// *modcache.Entry is one.
type Piece interface {
	io.ReaderAt
	Size() int64
}

// fileBacked is a Piece whose bytes are its file from offset 0, like
// *modcache.Entry (File returns the sealed memfd). Such pieces are copied
// with copy_file_range, inside the kernel.
type fileBacked interface {
	File() *os.File
}

// copyMethod selects how pieces are copied; copyAuto in production, the
// others for the benchmark.
type copyMethod int

const (
	// copyAuto uses copy_file_range for file-backed pieces and falls back to
	// pread/pwrite.
	copyAuto copyMethod = iota
	// copyPread always uses pread/pwrite through a user-space buffer.
	copyPread
)

// copyBufSize is the user-space buffer of the pread/pwrite path: large
// enough that syscall overhead vanishes, small enough to stay in L2.
const copyBufSize = 256 << 10

// assembler appends pieces to the initrd file at increasing offsets with
// positional writes, so the file offset is never used. Each byte of a piece
// is copied once: file to file in the kernel (copy_file_range), or pread
// into one reused buffer and pwrite from it.
type assembler struct {
	dst    *os.File
	off    int64
	method copyMethod
	buf    []byte

	// Bytes copied by copy_file_range and through the user-space buffer,
	// and zero bytes of padding.
	kernelCopied, userCopied, padding int64
}

// appendPiece copies p to the end of the image and pads the image to a
// multiple of 4 bytes, as the kernel's initramfs unpacker expects between
// concatenated archives. name is used in errors.
func (a *assembler) appendPiece(name string, p Piece) error {
	n := p.Size()
	if a.method == copyAuto {
		if fb, ok := p.(fileBacked); ok && fb.File() != nil {
			c, err := kexecsys.CopyFileRange(a.dst, a.off, fb.File(), n)
			switch {
			case err == nil:
				a.off += c
				a.kernelCopied += c
				return a.pad4()
			case !errors.Is(err, kexecsys.ErrNotSupported):
				return fmt.Errorf("initrd piece %s: %w", name, err)
			}
		}
	}
	if a.buf == nil {
		a.buf = make([]byte, copyBufSize)
	}
	c, err := io.CopyBuffer(io.NewOffsetWriter(a.dst, a.off), io.NewSectionReader(p, 0, n), a.buf)
	a.off += c
	a.userCopied += c
	if err != nil {
		return fmt.Errorf("initrd piece %s: copy to %s: %w", name, a.dst.Name(), err)
	}
	if c != n {
		return fmt.Errorf("initrd piece %s: read %d of %d bytes", name, c, n)
	}
	return a.pad4()
}

// pad4 writes zero bytes up to the next multiple of 4.
func (a *assembler) pad4() error {
	pad := (4 - a.off%4) % 4
	if pad == 0 {
		return nil
	}
	var zero [3]byte
	if _, err := a.dst.WriteAt(zero[:pad], a.off); err != nil {
		return fmt.Errorf("initrd padding: %w", err)
	}
	a.off += pad
	a.padding += pad
	return nil
}

// Write appends p to the image; the handoff piece is written through it.
func (a *assembler) Write(p []byte) (int, error) {
	n, err := a.dst.WriteAt(p, a.off)
	a.off += int64(n)
	return n, err
}
