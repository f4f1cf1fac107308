package bootimage

// Test inputs, built at test time: no binary fixtures live in the tree.

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/klauspost/compress/zstd"
	"github.com/pierrec/lz4/v4"
	"github.com/u-root/u-root/pkg/boot/bzimage"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
	"github.com/ulikunitz/xz/lzma"
)

// fakeVersion is the version string fakeBzImage embeds.
const fakeVersion = "6.1.0-test (builder@example) #1 SMP PREEMPT_DYNAMIC"

// fakeBzImage builds a minimal x86-64 bzImage as Documentation/arch/x86/
// boot.rst describes it: a setup header (through u-root's LinuxHeader),
// (setup_sects+1)*512 bytes of real-mode part holding the version string,
// and syssize*16 bytes of protected-mode "code". mutate may change the
// header before the image is laid out.
func fakeBzImage(mutate func(h *bzimage.LinuxHeader)) []byte {
	return fakeBzImageWith(fakePayload, mutate)
}

// fakeBzImageWith is fakeBzImage with another compressed kernel; syssize
// grows to hold it.
func fakeBzImageWith(payload []byte, mutate func(h *bzimage.LinuxHeader)) []byte {
	var h bzimage.LinuxHeader
	h.SetupSects = 3
	h.Bootsectormagic = 0xAA55
	h.Jump = 0x66eb
	h.HeaderMagic = bzimage.HeaderMagic
	h.Protocolversion = 0x020F
	h.Kveraddr = 0x200 // version string at 0x400, inside the setup sectors
	h.Loadflags = 0x01 // LOADED_HIGH
	h.Code32Start = 0x100000
	h.InitrdAddrMax = 0x7fffffff
	h.Kernelalignment = 0x200000
	h.RelocatableKernel = 1
	h.MinAlignment = 21
	h.XLoadFlags = 0x7f // KERNEL_64, CAN_BE_LOADED_ABOVE_4G, EFI handovers, ...
	h.CmdLineSize = MaxCmdline - 1
	h.PayloadOffset = 0x40
	h.InitSize = 0x1000000
	h.Syssize = max(0x40, uint32(0x40+len(payload)+4+15)/16) // at least 1 KiB of protected-mode code
	h.PayloadSize = uint32(len(payload))
	if mutate != nil {
		mutate(&h)
	}
	hdr, err := h.MarshalBinary()
	if err != nil {
		panic(err)
	}
	setup := int(h.SetupSects)
	if setup == 0 {
		setup = 4
	}
	img := make([]byte, (setup+1)*512+int(h.Syssize)*16)
	copy(img, hdr)
	if v := 0x200 + int(h.Kveraddr); h.Kveraddr != 0 && v < len(img) {
		copy(img[v:], fakeVersion+"\x00")
	}
	for i := (setup + 1) * 512; i < len(img); i++ {
		img[i] = byte(i * 7)
	}
	if at := (setup+1)*512 + int(h.PayloadOffset); at+len(payload) <= len(img) {
		copy(img[at:], payload)
	}
	return img
}

// fakeELF is what fakeBzImage's payload unpacks to: the ELF magic and
// some bytes (UnpackKernel checks only the magic).
var fakeELF = append([]byte("\x7fELF\x02\x01\x01"), bytes.Repeat([]byte("vmlinux "), 40)...)

// fakePayload is fakeELF gzip-compressed, as arch/x86/boot/compressed
// leaves a gzip payload: the gzip trailer's ISIZE is the size field.
var fakePayload = func() []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	w.Write(fakeELF)
	w.Close()
	return b.Bytes()
}()

// sampleRecords is a small root file system.
func sampleRecords() []cpio.Record {
	return []cpio.Record{
		cpio.Directory("etc", 0o755),
		cpio.StaticFile("etc/fastreboot-release", "v1\n", 0o644),
		cpio.Symlink("init", "bin/init"),
		cpio.StaticFile("bin/init", "#!/bin/sh\necho hello\n", 0o755),
	}
}

// newcArchive writes records as a newc archive (with u-root's writer),
// ending in a trailer unless noTrailer.
func newcArchive(t testing.TB, recs []cpio.Record, noTrailer bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	if err := cpio.WriteRecords(w, recs); err != nil {
		t.Fatal(err)
	}
	if !noTrailer {
		if err := cpio.WriteTrailer(w); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

// sampleNewc is newcArchive(sampleRecords()).
func sampleNewc(t testing.TB) []byte { return newcArchive(t, sampleRecords(), false) }

// crcEntry is one entry of a hand-written crc (070702) archive.
type crcEntry struct {
	name string
	mode uint32
	data string
	// badSum, if set, replaces the correct checksum.
	badSum uint32
}

// crcArchive writes a crc-format archive (u-root writes only newc): the
// header's check field is the sum of the data bytes of regular files.
func crcArchive(entries ...crcEntry) []byte {
	return handArchive("070702", append(entries, crcEntry{name: "TRAILER!!!"})...)
}

// handArchive writes entries as cpio records with the given magic, and no
// trailer unless the entries hold one.
func handArchive(magic string, entries ...crcEntry) []byte {
	var buf bytes.Buffer
	for i, e := range entries {
		var sum uint32
		for _, b := range []byte(e.data) {
			sum += uint32(b)
		}
		if e.badSum != 0 {
			sum = e.badSum
		}
		fmt.Fprintf(&buf, "%s%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X%08X",
			magic, i+1, e.mode, 0, 0, 1, 0, len(e.data), 0, 0, 0, 0, len(e.name)+1, sum)
		buf.WriteString(e.name + "\x00")
		pad4(&buf)
		buf.WriteString(e.data)
		pad4(&buf)
	}
	return buf.Bytes()
}

func sampleCRC() []byte {
	return crcArchive(
		crcEntry{name: "etc", mode: 0o040755},
		crcEntry{name: "etc/hostname", mode: 0o100644, data: "fastreboot\n"},
	)
}

func pad4(buf *bytes.Buffer) {
	for buf.Len()%4 != 0 {
		buf.WriteByte(0)
	}
}

// concat joins pieces, padding each to 4 bytes as Stage does.
func concat(pieces ...[]byte) []byte {
	var buf bytes.Buffer
	for _, p := range pieces {
		buf.Write(p)
		pad4(&buf)
	}
	return buf.Bytes()
}

// formats are the compressions compress knows, in the order tests use.
var formats = []string{"gzip", "xz", "lzma", "zstd", "lz4", "bzip2"}

// compress returns data compressed as format, in the framing the kernel
// expects (one gzip member, one xz stream, one zstd frame, a legacy lz4
// frame).
func compress(t testing.TB, format string, data []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := compressor(t, format, &buf)
	if _, err := w.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// compressor returns a writer compressing into w. bzip2 has no writer in
// Go: it is buffered and run through the bzip2 program, or, for the sample
// archive, taken from bzip2SampleHex.
func compressor(t testing.TB, format string, w io.Writer) io.WriteCloser {
	t.Helper()
	switch format {
	case "gzip":
		return gzip.NewWriter(w)
	case "xz":
		xw, err := xz.WriterConfig{CheckSum: xz.CRC32, DictCap: 1 << 20}.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return xw
	case "lzma":
		lw, err := lzma.WriterConfig{DictCap: 1 << 20}.NewWriter(w)
		if err != nil {
			t.Fatal(err)
		}
		return lw
	case "zstd":
		zw, err := zstd.NewWriter(w, zstd.WithEncoderConcurrency(1))
		if err != nil {
			t.Fatal(err)
		}
		return zw
	case "lz4":
		lw := lz4.NewWriter(w)
		if err := lw.Apply(lz4.LegacyOption(true)); err != nil {
			t.Fatal(err)
		}
		return lw
	case "bzip2":
		return &bzip2Writer{t: t, w: w}
	}
	t.Fatalf("unknown format %q", format)
	return nil
}

// bzip2SampleHex is `bzip2 -9` of sampleNewc (TestBzip2Fixture checks
// that it still is; regenerate with the hex line that test prints).
const bzip2SampleHex = "425a683931415926535925a64c9c00003fdf8044507802eee0372c14083b659d" +
	"00200092113530990680001a68d0c825094f299a83d4061a11ea0340fa32520d" +
	"f551541953620672f2d59d65034a856f8e69a1044277d975d20c2f7cf283e110" +
	"a842449471f9509913565c68d83b59508338112dfd300a0db22529a8e9866785" +
	"b7b35e0307c1c2e50251e76f218e2e24a12c0083247f2df09052071502eafc5d" +
	"c914e1424096993270"

type bzip2Writer struct {
	t   testing.TB
	w   io.Writer
	buf bytes.Buffer
}

func (b *bzip2Writer) Write(p []byte) (int, error) { return b.buf.Write(p) }

func (b *bzip2Writer) Close() error {
	b.t.Helper()
	if bytes.Equal(b.buf.Bytes(), sampleNewc(b.t)) {
		raw, err := hex.DecodeString(bzip2SampleHex)
		if err != nil {
			b.t.Fatal(err)
		}
		_, err = b.w.Write(raw)
		return err
	}
	out, err := runBzip2(b.buf.Bytes())
	if err != nil {
		b.t.Skipf("bzip2 input other than the sample needs the bzip2 program: %v", err)
	}
	_, err = b.w.Write(out)
	return err
}

// writeFile writes data to dir/name and returns the path.
func writeFile(t testing.TB, dir, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// zeroReaderAt reads as endless zeros.
type zeroReaderAt struct{}

func (zeroReaderAt) ReadAt(p []byte, off int64) (int, error) {
	clear(p)
	return len(p), nil
}

// failingReaderAt returns err for reads at or beyond failAt.
type failingReaderAt struct {
	r      io.ReaderAt
	failAt int64
	err    error
}

func (f failingReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off+int64(len(p)) <= f.failAt {
		return f.r.ReadAt(p, off)
	}
	if off >= f.failAt {
		return 0, f.err
	}
	n, err := f.r.ReadAt(p[:f.failAt-off], off)
	if err != nil {
		return n, err
	}
	return n, f.err
}

// runBzip2 compresses data with the bzip2 program.
func runBzip2(data []byte) ([]byte, error) {
	path, err := exec.LookPath("bzip2")
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(path, "-9c")
	cmd.Stdin = bytes.NewReader(data)
	return cmd.Output()
}
