package harness

import (
	"bufio"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path"
	"sort"

	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
)

// Compression is how an initramfs piece is compressed. The Debian kernel
// decompresses all of them (CONFIG_RD_*).
type Compression string

// Compressions the piece builders write.
const (
	None Compression = ""
	Gzip Compression = "gzip"
	Xz   Compression = "xz"
	Zstd Compression = "zstd"
)

// Ext returns the file name extension for c, including the dot, or "".
func (c Compression) Ext() string {
	switch c {
	case Gzip:
		return ".gz"
	case Xz:
		return ".xz"
	case Zstd:
		return ".zst"
	}
	return ""
}

// compressor wraps w so that what is written to the result reaches w
// compressed with c. Close flushes the stream but does not close w.
func compressor(w io.Writer, c Compression) (io.WriteCloser, error) {
	switch c {
	case None:
		return nopCloser{w}, nil
	case Gzip:
		return gzip.NewWriterLevel(w, gzip.BestCompression)
	case Xz:
		// The kernel's XZ decoder checks CRC32 (not the default CRC64) and
		// handles only LZMA2: see Documentation/staging/xz.rst.
		return xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(w)
	case Zstd:
		// One frame, a window the kernel's streaming decoder can allocate.
		return zstd.NewWriter(w,
			zstd.WithEncoderLevel(zstd.SpeedBestCompression),
			zstd.WithWindowSize(1<<23),
			zstd.WithEncoderConcurrency(1))
	}
	return nil, fmt.Errorf("unknown compression %q", c)
}

type nopCloser struct{ io.Writer }

func (nopCloser) Close() error { return nil }

// File is one regular file to put into a piece or a disk. Exactly one of
// Data and Src is used: Data when Src is empty.
type File struct {
	// Path inside the archive or file system, e.g. "etc/fastreboot-release".
	Path string
	// Data is the content.
	Data []byte
	// Src is a host file to copy the content from.
	Src string
	// Mode holds the permission bits; 0 means 0o644.
	Mode os.FileMode
}

func (f File) perm() uint64 {
	if f.Mode == 0 {
		return 0o644
	}
	return uint64(f.Mode.Perm())
}

// WriteNewc writes files as a newc cpio archive to w, each parent directory
// first (mode 0755: the kernel creates no missing parents), records
// reproducible (mtime 0, uid/gid 0, inodes numbered in order), then the
// trailer. Files are sorted by path, so equal inputs give equal bytes.
func WriteNewc(w io.Writer, files []File) error {
	sorted := append([]File(nil), files...)
	sort.SliceStable(sorted, func(i, j int) bool { return cpio.Normalize(sorted[i].Path) < cpio.Normalize(sorted[j].Path) })

	rw := cpio.Newc.Writer(w)
	dirs := map[string]bool{".": true, "/": true}
	var ino uint64
	write := func(r cpio.Record) error {
		ino++
		r.Ino = ino
		r.NLink = 1
		r = cpio.MakeReproducible(r)
		if err := rw.WriteRecord(r); err != nil {
			return fmt.Errorf("cpio record %s: %w", r.Name, err)
		}
		return nil
	}
	var mkdirs func(d string) error
	mkdirs = func(d string) error {
		if dirs[d] {
			return nil
		}
		if err := mkdirs(path.Dir(d)); err != nil {
			return err
		}
		dirs[d] = true
		return write(cpio.Directory(d, 0o755))
	}

	for _, f := range sorted {
		name := cpio.Normalize(f.Path)
		if err := mkdirs(path.Dir(name)); err != nil {
			return err
		}
		rec, closeFn, err := f.record(name)
		if err != nil {
			return err
		}
		err = write(rec)
		if closeFn != nil {
			closeFn()
		}
		if err != nil {
			return err
		}
		dirs[name] = true
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return fmt.Errorf("cpio trailer: %w", err)
	}
	return nil
}

func (f File) record(name string) (cpio.Record, func(), error) {
	if f.Src == "" {
		return cpio.StaticRecord(f.Data, cpio.Info{Name: name, Mode: cpio.S_IFREG | f.perm()}), nil, nil
	}
	fh, err := os.Open(f.Src)
	if err != nil {
		return cpio.Record{}, nil, err
	}
	fi, err := fh.Stat()
	if err != nil {
		fh.Close()
		return cpio.Record{}, nil, err
	}
	perm := f.perm()
	if f.Mode == 0 {
		perm = uint64(fi.Mode().Perm())
	}
	// The newc writer closes the ReaderAt when it is an io.Closer; hide it.
	rec := cpio.Record{
		ReaderAt: io.NewSectionReader(fh, 0, fi.Size()),
		Info:     cpio.Info{Name: name, Mode: cpio.S_IFREG | perm, FileSize: uint64(fi.Size())},
	}
	return rec, func() { fh.Close() }, nil
}

// WritePiece writes files as a newc archive compressed with c to the file
// dst (replaced atomically).
func WritePiece(dst string, c Compression, files []File) error {
	return writeAtomic(dst, func(w io.Writer) error {
		cw, err := compressor(w, c)
		if err != nil {
			return err
		}
		if err := WriteNewc(cw, files); err != nil {
			return err
		}
		return cw.Close()
	})
}

// CompressFile compresses src with c into dst (replaced atomically).
func CompressFile(dst, src string, c Compression) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	return writeAtomic(dst, func(w io.Writer) error {
		cw, err := compressor(w, c)
		if err != nil {
			return err
		}
		if _, err := io.Copy(cw, bufio.NewReaderSize(in, 1<<20)); err != nil {
			return fmt.Errorf("compress %s: %w", src, err)
		}
		return cw.Close()
	})
}

// writeAtomic writes dst (mode 0644) through a temp file in the same
// directory and renames it into place once fill succeeded.
func writeAtomic(dst string, fill func(io.Writer) error) error {
	return atomicfile.WriteFrom(dst, 0o644, fill)
}

// SiteReleasePath is where the site piece puts the release string.
const SiteReleasePath = "etc/fastreboot-release"

// BuildSite writes the "site" piece to dst: an uncompressed newc archive
// holding /etc/fastreboot-release with release (e.g. "v1") and a newline,
// plus any extra files.
func BuildSite(dst, release string, extra ...File) error {
	files := append([]File{{Path: SiteReleasePath, Data: []byte(release + "\n")}}, extra...)
	return WritePiece(dst, None, files)
}

// Concat writes the pieces, in order, into dst as one initrd, padding each
// piece with zeros to a multiple of 4 bytes: the kernel skips zero padding
// between concatenated archives (init/initramfs.c), and a compressed stream
// must start 4-byte aligned. It returns the total size.
func Concat(dst string, pieces ...string) (int64, error) {
	var total int64
	err := writeAtomic(dst, func(w io.Writer) error {
		var err error
		total, err = ConcatTo(w, pieces...)
		return err
	})
	return total, err
}

// ConcatTo is Concat writing to w.
func ConcatTo(w io.Writer, pieces ...string) (int64, error) {
	var total int64
	for _, p := range pieces {
		f, err := os.Open(p)
		if err != nil {
			return total, err
		}
		n, err := io.Copy(w, f)
		f.Close()
		total += n
		if err != nil {
			return total, fmt.Errorf("concat %s: %w", p, err)
		}
		if pad := (4 - total%4) % 4; pad != 0 {
			if _, err := w.Write(make([]byte, pad)); err != nil {
				return total, err
			}
			total += pad
		}
	}
	return total, nil
}

// SHA256Hex returns the lowercase hex SHA-256 of b.
func SHA256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
