package fastreboot

import (
	"fmt"
	"io"

	"github.com/u-root/u-root/pkg/cpio"
)

// CrashInitPath is where the minimal crash initramfs puts the program the
// two-stage crash kernel runs as PID 1: the kernel runs /init of an
// initramfs.
const CrashInitPath = "init"

// CrashInitDirs are the directories the minimal crash initramfs creates:
// the mount points of proc, sysfs, devtmpfs and pstore, and the state
// directory's parent (the rootfs is writable; these only save mkdir calls
// and make the tree what the crash stage expects).
var CrashInitDirs = []string{"dev", "proc", "sys", "run", "tmp", "var"}

// WriteCrashInitPiece writes the minimal crash initramfs piece to w as one
// uncompressed newc archive: CrashInitDirs, dev/console (character device
// 5:1, so that the kernel opens the console as PID 1's stdin, stdout and
// stderr before devtmpfs is mounted), and exe as CrashInitPath (mode 0755),
// its size bytes streamed once from the ReaderAt, then the trailer. The
// archive's length is a multiple of 4. It returns the bytes written.
//
// The two-stage crash image built with BuildOptions.CrashInit is this piece
// and the handoff piece: the crash kernel runs exe (the fastreboot binary)
// as PID 1, which recovers and kexecs into production from the carried
// cache.
func WriteCrashInitPiece(w io.Writer, exe io.ReaderAt, size int64) (int64, error) {
	if exe == nil || size <= 0 {
		return 0, fmt.Errorf("crash init piece: no program to run as /%s (%d bytes)", CrashInitPath, size)
	}
	if size > 1<<32-1 {
		return 0, fmt.Errorf("crash init piece: /%s has %d bytes, more than newc's 4 GiB limit", CrashInitPath, size)
	}
	cw := &countWriter{w: w}
	rw := cpio.Newc.Writer(cw)
	// Inode numbers of their own (the handoff piece numbers from 1):
	// the kernel's unpacker links regular files of equal inode numbers
	// across the concatenated archives when their link count is above 1.
	ino := uint64(1 << 20)
	var recs []cpio.Record
	for _, d := range CrashInitDirs {
		r := cpio.Directory(d, 0o755)
		r.Ino, r.NLink = ino, 2
		recs = append(recs, r)
		ino++
	}
	con := cpio.CharDev("dev/console", 0o600, 5, 1)
	con.Ino, con.NLink = ino, 1
	recs = append(recs, con)
	recs = append(recs, cpio.Record{
		// A SectionReader: the writer closes a ReaderAt that is an
		// io.Closer, and exe is the caller's.
		ReaderAt: io.NewSectionReader(exe, 0, size),
		Info:     cpio.Info{Ino: ino + 1, Name: CrashInitPath, Mode: cpio.S_IFREG | 0o755, FileSize: uint64(size), NLink: 1},
	})
	for _, r := range recs {
		if err := rw.WriteRecord(r); err != nil {
			return cw.n, fmt.Errorf("crash init piece: %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.n, fmt.Errorf("crash init piece: trailer: %w", err)
	}
	return cw.n, nil
}
