package bootimage

import (
	"bytes"
	"compress/bzip2"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"
)

// layout builds an initrd piece by piece and remembers what scanInitrd
// should find.
type layout struct {
	buf  bytes.Buffer
	want []initrdPiece
}

// add appends a piece: raw cpio data, compressed as format unless format
// is "cpio".
func (l *layout) add(t *testing.T, format string, raw []byte, archives, entries int) *layout {
	t.Helper()
	data := raw
	if format != "cpio" {
		data = compress(t, format, raw)
	}
	l.want = append(l.want, initrdPiece{
		Offset: int64(l.buf.Len()), Length: int64(len(data)), Format: format,
		Unpacked: int64(len(raw)), Archives: archives, Entries: entries,
	})
	l.buf.Write(data)
	return l
}

func (l *layout) zeros(n int) *layout { l.buf.Write(make([]byte, n)); return l }
func (l *layout) pad() *layout        { pad4(&l.buf); return l }

func TestCheckInitrdValid(t *testing.T) {
	newc := sampleNewc(t)
	crc := sampleCRC()
	microcode := newcArchive(t, []cpio.Record{
		cpio.Directory("kernel", 0o755),
		cpio.Directory("kernel/x86", 0o755),
		cpio.Directory("kernel/x86/microcode", 0o755),
		cpio.StaticFile("kernel/x86/microcode/GenuineIntel.bin", strings.Repeat("\x01", 1000), 0o644),
	}, false)

	tests := []struct {
		name  string
		build func(l *layout)
	}{
		{"newc", func(l *layout) { l.add(t, "cpio", newc, 1, 4) }},
		{"crc", func(l *layout) { l.add(t, "cpio", crc, 1, 2) }},
		{"gzip", func(l *layout) { l.add(t, "gzip", newc, 1, 4) }},
		{"xz", func(l *layout) { l.add(t, "xz", newc, 1, 4) }},
		{"lzma", func(l *layout) { l.add(t, "lzma", newc, 1, 4) }},
		{"zstd", func(l *layout) { l.add(t, "zstd", newc, 1, 4) }},
		{"lz4 legacy", func(l *layout) { l.add(t, "lz4", newc, 1, 4) }},
		{"bzip2", func(l *layout) { l.add(t, "bzip2", newc, 1, 4) }},
		{"crc in zstd", func(l *layout) { l.add(t, "zstd", crc, 1, 2) }},
		{"every format, padded to 4 bytes, lz4 last", func(l *layout) {
			l.add(t, "cpio", newc, 1, 4).pad()
			for _, f := range []string{"gzip", "xz", "lzma", "zstd", "bzip2"} {
				l.add(t, f, newc, 1, 4).pad()
			}
			l.add(t, "cpio", crc, 1, 2).pad()
			l.add(t, "lz4", newc, 1, 4).pad()
		}},
		{"compressed pieces back to back at odd offsets", func(l *layout) {
			l.add(t, "gzip", newc, 1, 4).add(t, "zstd", newc, 1, 4).add(t, "xz", newc, 1, 4).add(t, "bzip2", newc, 1, 4).add(t, "gzip", newc, 1, 4)
		}},
		{"lz4 ended by a zero word", func(l *layout) {
			l.add(t, "lz4", newc, 1, 4).zeros(4).pad().add(t, "cpio", newc, 1, 4)
		}},
		{"two archives in one stream", func(l *layout) {
			l.add(t, "gzip", append(append([]byte{}, newc...), newc...), 2, 8)
		}},
		{"zero padding inside the stream", func(l *layout) {
			raw := append(append(append([]byte{}, newc...), make([]byte, 12)...), crc...)
			l.add(t, "zstd", raw, 2, 6)
		}},
		{"leading and trailing zeros", func(l *layout) {
			l.zeros(512).add(t, "cpio", newc, 1, 4).zeros(512)
		}},
		{"early microcode then compressed rootfs", func(l *layout) {
			l.add(t, "cpio", microcode, 1, 4).add(t, "zstd", newc, 1, 4)
		}},
		{"empty archive", func(l *layout) { l.add(t, "cpio", newcArchive(t, nil, false), 1, 0) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var l layout
			tt.build(&l)
			data := l.buf.Bytes()
			got, err := scanInitrd(bytes.NewReader(data), int64(len(data)))
			if err != nil {
				t.Fatalf("scanInitrd: %v", err)
			}
			if diff := cmp.Diff(l.want, got); diff != "" {
				t.Errorf("pieces (-want +got):\n%s", diff)
			}
			if err := CheckInitrd(bytes.NewReader(data), int64(len(data))); err != nil {
				t.Errorf("CheckInitrd: %v", err)
			}
		})
	}
}

func TestCheckInitrdBad(t *testing.T) {
	newc := sampleNewc(t)
	gz := compress(t, "gzip", newc)
	flip := func(b []byte, i int) []byte {
		c := append([]byte{}, b...)
		c[i] ^= 0xff
		return c
	}
	noTrailer := newcArchive(t, sampleRecords(), true)
	odc := append([]byte("070707"), newc[6:]...)
	badHex := append([]byte{}, newc...)
	copy(badHex[6:], "xyz")
	// A name size past PATH_MAX: field 11 of the first header.
	longName := append([]byte{}, newc...)
	copy(longName[6+8*11:], "00002000")
	// A name size one short, so the NUL is not where it should be.
	unterminated := append([]byte{}, newc...)
	copy(unterminated[6+8*11:], "00000003") // "etc\0" is 4
	// A gzip piece of a length that is not a multiple of 4 (zeros after
	// the trailer are fine inside the stream).
	var oddGzip []byte
	for k := 0; len(oddGzip)%4 == 0; k++ {
		oddGzip = compress(t, "gzip", append(append([]byte{}, newc...), make([]byte, k)...))
	}

	tests := []struct {
		name string
		data []byte
		want []string // substrings of the message
	}{
		{"empty", nil, []string{"empty"}},
		{"only zeros", make([]byte, 4096), []string{"no cpio archive"}},
		{"zip file", []byte("PK\x03\x04\x14\x00\x00\x00"), []string{"offset 0", "bad magic 50 4b 03 04"}},
		{"junk after a piece", concat(newc, []byte("junkjunk")), []string{fmt.Sprintf("offset %d", len(newc)), "bad magic 6a 75 6e 6b"}},
		{"old odc cpio", odc, []string{"offset 0", "070707"}},
		{"newc without trailer", noTrailer, []string{"truncated", "TRAILER!!!"}},
		{"newc cut inside a file", newc[:200], []string{"truncated"}},
		{"bad hex in header", badHex, []string{"offset 0", "not hex"}},
		{"name longer than PATH_MAX", longName, []string{"offset 0", "name size 8192"}},
		{"name not NUL-terminated", unterminated, []string{"not NUL-terminated"}},
		{"crc checksum wrong", crcArchive(crcEntry{name: "f", mode: 0o100644, data: "abc", badSum: 1}), []string{"bad data checksum", `"f"`}},
		{"gzip data corrupt", flip(gz, len(gz)/2), []string{"gzip piece at offset 0", "corrupt"}},
		{"gzip crc wrong", flip(gz, len(gz)-6), []string{"gzip piece at offset 0", "corrupt"}},
		{"gzip holding an archive without trailer", compress(t, "gzip", noTrailer), []string{"gzip piece at offset 0", "decompressed", "truncated"}},
		{"gzip holding junk after the trailer", compress(t, "gzip", append(append([]byte{}, newc...), "junk"...)), []string{"junk after a cpio archive", fmt.Sprintf("offset %d", len(newc))}},
		{"gzip holding no archive", compress(t, "gzip", make([]byte, 100)), []string{"no cpio archive"}},
		{"gzip holding zeros then an unaligned archive", compress(t, "gzip", append(append(append([]byte{}, newc...), 0), newc...)), []string{"broken padding"}},
		{"cpio at an unaligned offset", append(append([]byte{}, oddGzip...), newc...), []string{fmt.Sprintf("offset %d", len(oddGzip)), "multiple of 4"}},
		{"unaligned data after an archive", append(append(append([]byte{}, newc...), 0), gz...), []string{"broken padding"}},
		{"lzo", []byte("\x89LZO\x00\r\n\x1a\n"), []string{"lzo"}},
		{"lz4 followed directly by another piece", append(append([]byte{}, compress(t, "lz4", newc)...), gz...), []string{"lz4 piece at offset 0"}},
		{"zstd magic cut to two bytes", []byte{0x28, 0xb5, 0, 0, 0, 0, 0, 0}, []string{"zstd piece at offset 0", "bad frame magic"}},
		{"lzma dictionary too large", []byte{0x5d, 0, 0, 0, 0xf0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, []string{"lzma piece at offset 0", "dictionary"}},
		// The kernel reads the name only of regular files and of entries
		// without data, and handles symlinks apart: such a "TRAILER!!!"
		// does not end the archive.
		{"trailer with data", handArchive("070701", crcEntry{name: "TRAILER!!!", data: "x"}), []string{"truncated"}},
		{"trailer as symlink", handArchive("070701", crcEntry{name: "TRAILER!!!", mode: 0o120777}), []string{"truncated"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckInitrd(bytes.NewReader(tt.data), int64(len(tt.data)))
			if !errors.Is(err, ErrBadInitrd) {
				t.Fatalf("CheckInitrd = %v, want an error wrapping ErrBadInitrd", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckInitrd = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// Every compressed piece cut anywhere is refused, and cut in the middle
// it is reported as truncated.
func TestCheckInitrdTruncatedStreams(t *testing.T) {
	newc := sampleNewc(t)
	for _, format := range formats {
		t.Run(format, func(t *testing.T) {
			full := compress(t, format, newc)
			for n := 1; n < len(full); n++ {
				err := CheckInitrd(bytes.NewReader(full[:n]), int64(n))
				if !errors.Is(err, ErrBadInitrd) {
					t.Fatalf("cut to %d of %d bytes: CheckInitrd = %v, want ErrBadInitrd", n, len(full), err)
				}
				if n == len(full)/2 || n == len(full)-1 {
					for _, w := range []string{format + " piece at offset 0", "truncated"} {
						if !strings.Contains(err.Error(), w) {
							t.Errorf("cut to %d of %d bytes: CheckInitrd = %q, want %q in it", n, len(full), err, w)
						}
					}
				}
			}
		})
	}
}

func TestCheckInitrdReadError(t *testing.T) {
	newc := sampleNewc(t)
	data := concat(newc, compress(t, "zstd", newc))
	errDisk := errors.New("disk on fire")
	for _, at := range []int64{0, int64(len(newc)) / 2, int64(len(newc)) + 10} {
		err := CheckInitrd(failingReaderAt{r: bytes.NewReader(data), failAt: at, err: errDisk}, int64(len(data)))
		if !errors.Is(err, errDisk) {
			t.Errorf("read failing at %d: CheckInitrd = %v, want the read error", at, err)
		}
		if errors.Is(err, ErrBadInitrd) {
			t.Errorf("read failing at %d: CheckInitrd = %v, a read error is not a bad initrd", at, err)
		}
	}
}

// A piece whose content is far larger than what the check may allocate:
// the data is decompressed and skipped as a stream (without a ratio
// limit, which these zeros would pass).
func TestCheckInitrdStreams(t *testing.T) {
	const fileSize = 64 << 20
	const maxAlloc = 32 << 20
	for _, format := range []string{"gzip", "zstd", "lz4"} {
		t.Run(format, func(t *testing.T) {
			var buf bytes.Buffer
			w := compressor(t, format, &buf)
			cw := cpio.Newc.Writer(w)
			big := cpio.Record{
				ReaderAt: io.NewSectionReader(zeroReaderAt{}, 0, fileSize),
				Info:     cpio.Info{Name: "big", Mode: cpio.S_IFREG | 0o644, FileSize: fileSize},
			}
			if err := cpio.WriteRecords(cw, []cpio.Record{big}); err != nil {
				t.Fatal(err)
			}
			if err := cpio.WriteTrailer(cw); err != nil {
				t.Fatal(err)
			}
			if err := w.Close(); err != nil {
				t.Fatal(err)
			}
			data := buf.Bytes()

			runtime.GC()
			var before, after runtime.MemStats
			runtime.ReadMemStats(&before)
			// Zeros unpack far beyond the default ratio: no ratio limit
			// here (TestInitrdLimits tests it).
			pieces, err := scanInitrdLimits(bytes.NewReader(data), int64(len(data)), InitrdLimits{MaxRatio: -1}.withDefaults())
			runtime.ReadMemStats(&after)
			if err != nil {
				t.Fatal(err)
			}
			if got := pieces[0].Unpacked; got < fileSize {
				t.Errorf("unpacked %d bytes, want more than %d", got, fileSize)
			}
			if alloc := after.TotalAlloc - before.TotalAlloc; alloc > maxAlloc {
				t.Errorf("checking a %d-byte %s piece holding %d bytes allocated %d bytes, want at most %d", len(data), format, fileSize, alloc, maxAlloc)
			}
		})
	}
}

// bzip2SampleHex decodes to the sample archive, and is what bzip2 makes of
// it (when the program is here to ask).
func TestBzip2Fixture(t *testing.T) {
	raw, err := hex.DecodeString(bzip2SampleHex)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(bzip2.NewReader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, sampleNewc(t)) {
		t.Fatal("bzip2SampleHex does not decompress to sampleNewc: regenerate it")
	}
	out, err := runBzip2(sampleNewc(t))
	if err != nil {
		t.Skipf("bzip2 program not available to recheck the fixture: %v", err)
	}
	if !bytes.Equal(out, raw) {
		t.Errorf("bzip2 -9 of sampleNewc is now\n%x\nupdate bzip2SampleHex", out)
	}
}

// Initrds made by the usual programs (cpio, gzip, xz, zstd, lz4, bzip2)
// pass. Each program missing here skips its part.
func TestCheckInitrdSystemTools(t *testing.T) {
	cpioProg, err := exec.LookPath("cpio")
	if err != nil {
		t.Skip("needs the cpio program: ", err)
	}
	tree := t.TempDir()
	writeFile(t, tree, "etc/fastreboot-release", []byte("v2\n"))
	writeFile(t, tree, "bin/hello", bytes.Repeat([]byte("hello, world\n"), 5000))
	if err := os.Symlink("bin/hello", filepath.Join(tree, "init")); err != nil {
		t.Fatal(err)
	}
	archive := func(format string) []byte {
		cmd := exec.Command(cpioProg, "--quiet", "-o", "-H", format)
		cmd.Dir = tree
		cmd.Stdin = strings.NewReader("etc\netc/fastreboot-release\nbin\nbin/hello\ninit\n")
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("cpio -H %s: %v", format, err)
		}
		return out
	}
	newc, crc := archive("newc"), archive("crc")
	if err := CheckInitrd(bytes.NewReader(crc), int64(len(crc))); err != nil {
		t.Errorf("cpio -H crc: %v", err)
	}

	programs := []struct {
		format string
		args   []string
	}{
		{"gzip", []string{"gzip", "-9c"}},
		{"xz", []string{"xz", "--check=crc32", "--lzma2=dict=1MiB", "-c"}},
		{"zstd", []string{"zstd", "-q", "-19", "-c"}},
		{"bzip2", []string{"bzip2", "-c"}},
		{"lzma", []string{"xz", "--format=lzma", "-c"}},
		{"lz4", []string{"lz4", "-l", "-q", "-c"}},
	}
	var l layout
	l.add(t, "cpio", newc, 1, 5).pad()
	// cpio pads its output to 512-byte blocks: the piece ends after the
	// trailer; the zeros after it are padding between pieces.
	end := int64(bytes.Index(newc, []byte("TRAILER!!!\x00")) + 11)
	l.want[0].Length, l.want[0].Unpacked = (end+3)&^3, (end+3)&^3
	for _, p := range programs {
		path, err := exec.LookPath(p.args[0])
		if err != nil {
			t.Logf("skipping %s: %v", p.format, err)
			continue
		}
		cmd := exec.Command(path, p.args[1:]...)
		cmd.Stdin = bytes.NewReader(newc)
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("%s: %v", strings.Join(p.args, " "), err)
		}
		if err := CheckInitrd(bytes.NewReader(out), int64(len(out))); err != nil {
			t.Errorf("%s alone: %v", strings.Join(p.args, " "), err)
		}
		l.want = append(l.want, initrdPiece{Offset: int64(l.buf.Len()), Length: int64(len(out)), Format: p.format, Unpacked: int64(len(newc)), Archives: 1, Entries: 5})
		l.buf.Write(out)
		l.pad()
	}
	data := l.buf.Bytes()
	got, err := scanInitrd(bytes.NewReader(data), int64(len(data)))
	if err != nil {
		t.Fatalf("all pieces: %v", err)
	}
	if diff := cmp.Diff(l.want, got); diff != "" {
		t.Errorf("pieces (-want +got):\n%s", diff)
	}
}

// Initrds on this machine: the u-root base image the QEMU tests build, and
// the distribution's own.
func TestCheckInitrdReal(t *testing.T) {
	var paths []string
	if home, err := os.UserHomeDir(); err == nil {
		for _, pat := range []string{"*.cpio", "*.cpio.gz", "*.cpio.xz", "*.cpio.zst", "*.cpio.lz4"} {
			m, _ := filepath.Glob(filepath.Join(home, ".cache/fastreboot/base", pat))
			paths = append(paths, m...)
		}
	}
	m, _ := filepath.Glob("/boot/initrd.img-*")
	paths = dedupePaths(append(paths, m...))
	if len(paths) == 0 {
		t.Skip("no real initrd here: none in ~/.cache/fastreboot/base/ (the QEMU tests build one) nor /boot/initrd.img-*")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Skipf("cannot read %s: %v", p, err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			pieces, err := scanInitrd(f, fi.Size())
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			for _, pc := range pieces {
				t.Logf("%s: %s piece at %d, %d bytes, %d unpacked, %d entries", p, pc.Format, pc.Offset, pc.Length, pc.Unpacked, pc.Entries)
			}
		})
	}
}
