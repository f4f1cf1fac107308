package bootimage

import (
	"bufio"
	"compress/bzip2"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/zstd"
	"github.com/therootcompany/xz"
	"github.com/ulikunitz/xz/lzma"
)

// ErrUnpackLimit: compressed data unpacks to more than its bound: a kernel
// payload to more than its size field or init_size, an initrd piece to
// more than InitrdLimits allow. It is wrapped together with ErrNotBzImage
// or ErrBadInitrd.
var ErrUnpackLimit = errors.New("bootimage: unpacks beyond its limit")

// KernelPayload is the compressed kernel inside a bzImage: the ELF
// vmlinux (and, for a relocatable kernel, its relocation table) that the
// kernel's decompressor unpacks at boot.
type KernelPayload struct {
	// Format is the compressor: gzip, xz, lzma, zstd, bzip2, lz4 or lzo
	// (from the payload's magic, as lib/decompress.c finds it).
	Format string
	// Offset and Length place the payload in the bzImage file:
	// payload_offset counts from the protected-mode code, which starts
	// at (setup_sects+1)*512.
	Offset, Length int64
	// UnpackedBytes is the size of the decompressed kernel as the
	// payload's last four bytes record it (arch/x86/boot/compressed/
	// Makefile appends it to every format but gzip, whose ISIZE field is
	// the same number).
	UnpackedBytes int64
	// InitSize is the setup header's init_size: the memory the kernel
	// needs from its load address until it has decompressed itself. The
	// decompressed kernel is written into that memory at boot, so it can
	// never be larger.
	InitSize int64
}

// FindKernelPayload locates the compressed kernel in the bzImage r (size
// bytes): the header must pass InspectKernel, the payload must have a
// known magic, and the unpacked size its last four bytes record must not
// exceed init_size. It reads the header and eight bytes of the payload.
// Failures wrap ErrNotBzImage (and ErrUnpackLimit for the size).
func FindKernelPayload(r io.ReaderAt, size int64) (KernelPayload, error) {
	info, err := InspectKernel(r, size)
	if err != nil {
		return KernelPayload{}, err
	}
	h, err := ReadSetupHeader(r)
	if err != nil {
		return KernelPayload{}, err
	}
	p := KernelPayload{
		Offset:   info.SetupBytes + int64(h.PayloadOffset),
		Length:   int64(h.PayloadSize),
		InitSize: int64(h.InitSize),
	}
	if p.Length < 8 {
		return p, fmt.Errorf("%w: compressed kernel of %d bytes (payload_length): too short to hold one", ErrNotBzImage, p.Length)
	}
	var head [8]byte
	if _, err := r.ReadAt(head[:], p.Offset); err != nil {
		return p, fmt.Errorf("read the compressed kernel at offset %d: %w", p.Offset, err)
	}
	p.Format = compressionFormat(head[:])
	if p.Format == "" {
		return p, fmt.Errorf("%w: compressed kernel at offset %d: unknown magic % x", ErrNotBzImage, p.Offset, head)
	}
	var tail [4]byte
	if _, err := r.ReadAt(tail[:], p.Offset+p.Length-4); err != nil {
		return p, fmt.Errorf("read the compressed kernel's size field: %w", err)
	}
	p.UnpackedBytes = int64(binary.LittleEndian.Uint32(tail[:]))
	if p.UnpackedBytes > p.InitSize {
		return p, fmt.Errorf("%w: %w: the %s compressed kernel (%d bytes) says it unpacks to %d bytes, more than init_size (%d)",
			ErrNotBzImage, ErrUnpackLimit, p.Format, p.Length, p.UnpackedBytes, p.InitSize)
	}
	return p, nil
}

// UnpackKernel decompresses the kernel inside the bzImage r (size bytes)
// into w, with the decompressors the initrd check uses (and, for xz,
// which kernels compress with the x86 BCJ filter, the xz-embedded port
// u-root's bzimage package uses). It never writes more than the payload's
// recorded size, which FindKernelPayload bounds by init_size: a forged
// payload that would unpack to gigabytes stops there, with at most the
// decompressor's window in memory besides what w keeps. The output must
// be exactly the recorded size and start with the ELF magic; every
// checksum the format carries is verified (xz's check, gzip's CRC-32,
// zstd's content checksum). Failures wrap ErrNotBzImage, and
// ErrUnpackLimit when the payload unpacks to more than its bound; lzo
// payloads are refused (no Go decompressor).
func UnpackKernel(r io.ReaderAt, size int64, w io.Writer) (KernelPayload, error) {
	p, err := FindKernelPayload(r, size)
	if err != nil {
		return p, err
	}
	in := p.Length
	if p.Format != "gzip" {
		in -= 4 // the size field is not part of the stream
	}
	sec := io.NewSectionReader(r, p.Offset, in)
	dec, done, err := kernelDecoder(p.Format, sec)
	if err != nil {
		return p, payloadError(p, err)
	}
	defer done()
	bw := &boundedWriter{w: w, left: p.UnpackedBytes}
	n, err := io.Copy(bw, dec)
	if bw.over {
		return p, fmt.Errorf("%w: %w: the %s compressed kernel (%d bytes at offset %d) unpacks to more than the %d bytes it records (init_size %d); stopped there",
			ErrNotBzImage, ErrUnpackLimit, p.Format, p.Length, p.Offset, p.UnpackedBytes, p.InitSize)
	}
	if err != nil {
		return p, payloadError(p, err)
	}
	if n != p.UnpackedBytes {
		return p, payloadError(p, fmt.Errorf("unpacks to %d bytes, its size field says %d", n, p.UnpackedBytes))
	}
	if bw.head != [4]byte{0x7f, 'E', 'L', 'F'} {
		return p, payloadError(p, fmt.Errorf("unpacks to % x..., not an ELF", bw.head))
	}
	return p, nil
}

// CheckKernelPayload is CheckKernel plus the whole compressed kernel:
// UnpackKernel with the output discarded, so that a kernel whose payload
// is corrupt is refused before it is loaded rather than failing after
// the jump. An lzo payload, which no Go decompressor reads, is checked by
// its header only. It costs one decompression of the kernel (under a
// second for a distribution kernel on current hardware).
func CheckKernelPayload(r io.ReaderAt, size int64) error {
	p, err := FindKernelPayload(r, size)
	if err != nil || p.Format == "lzo" {
		return err
	}
	_, err = UnpackKernel(r, size, io.Discard)
	return err
}

func payloadError(p KernelPayload, err error) error {
	return fmt.Errorf("%w: the %s compressed kernel (%d bytes at offset %d) is corrupt: %v", ErrNotBzImage, p.Format, p.Length, p.Offset, err)
}

// kernelDecoder returns a reader of the decompressed kernel in in, and
// the function that releases it.
func kernelDecoder(format string, in *io.SectionReader) (io.Reader, func(), error) {
	none := func() {}
	br := bufio.NewReaderSize(in, streamBuf)
	switch format {
	case "gzip":
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, none, err
		}
		zr.Multistream(false)
		return zr, none, nil
	case "xz":
		// github.com/ulikunitz/xz reads LZMA2 only; kernels are
		// compressed with the x86 BCJ filter in front of it.
		xr, err := xz.NewReader(br, xz.DefaultDictMax)
		return xr, none, err
	case "lzma":
		lr, err := lzma.ReaderConfig{DictCap: maxWindow}.NewReader(br)
		return lr, none, err
	case "bzip2":
		return bzip2.NewReader(br), none, nil
	case "zstd":
		zr, err := zstd.NewReader(br,
			zstd.WithDecoderConcurrency(1),
			zstd.WithDecoderLowmem(true),
			zstd.WithDecoderMaxWindow(maxWindow))
		if err != nil {
			return nil, none, err
		}
		return zr, zr.Close, nil
	case "lz4":
		// The kernel's lz4 payload is a legacy frame (lz4 -l), as an
		// initrd piece.
		return &lz4Legacy{c: newCursor(in, in.Size())}, none, nil
	}
	return nil, none, fmt.Errorf("no decompressor for %s", format)
}

// boundedWriter passes at most left bytes to w and remembers the first
// four; a write beyond left fails and sets over.
type boundedWriter struct {
	w    io.Writer
	left int64
	n    int64
	head [4]byte
	over bool
}

var errOverLimit = errors.New("over the limit")

func (b *boundedWriter) Write(p []byte) (int, error) {
	if int64(len(p)) > b.left {
		b.over = true
		return 0, errOverLimit
	}
	if b.n < 4 {
		copy(b.head[b.n:], p)
	}
	n, err := b.w.Write(p)
	b.n += int64(n)
	b.left -= int64(n)
	return n, err
}
