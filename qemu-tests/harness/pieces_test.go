package harness

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

// readPiece decompresses a piece and returns its regular files and symlinks
// by name; directories map to "<dir>".
func readPiece(t *testing.T, p string, c Compression) map[string]string {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var r io.Reader = f
	switch c {
	case Gzip:
		if r, err = gzip.NewReader(f); err != nil {
			t.Fatal(err)
		}
	case Xz:
		if r, err = xz.NewReader(f); err != nil {
			t.Fatal(err)
		}
	case Zstd:
		d, err := zstd.NewReader(f)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		r = d
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return readNewc(t, b)
}

func readNewc(t *testing.T, b []byte) map[string]string {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("read cpio: %v", err)
	}
	files := map[string]string{}
	for _, r := range recs {
		if r.Mode&cpio.S_IFMT == cpio.S_IFDIR {
			files[r.Name] = "<dir>"
			continue
		}
		c, err := io.ReadAll(io.NewSectionReader(r, 0, int64(r.FileSize)))
		if err != nil {
			t.Fatal(err)
		}
		files[r.Name] = string(c)
	}
	return files
}

func TestWriteNewc(t *testing.T) {
	src := filepath.Join(t.TempDir(), "src")
	writeFile(t, src, "from the host")
	files := []File{
		{Path: "/etc/fastreboot/b", Data: []byte("b")},
		{Path: "etc/a", Src: src},
		{Path: "top", Data: nil},
	}
	var one, two bytes.Buffer
	if err := WriteNewc(&one, files); err != nil {
		t.Fatal(err)
	}
	if err := WriteNewc(&two, files); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(one.Bytes(), two.Bytes()) {
		t.Error("WriteNewc is not reproducible")
	}
	want := map[string]string{
		"etc": "<dir>", "etc/fastreboot": "<dir>",
		"etc/a": "from the host", "etc/fastreboot/b": "b", "top": "",
	}
	if diff := cmp.Diff(want, readNewc(t, one.Bytes())); diff != "" {
		t.Errorf("archive mismatch (-want +got):\n%s", diff)
	}
	// Parents come before children: the kernel makes no missing directories.
	recs, _ := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(one.Bytes())))
	var order []string
	for _, r := range recs {
		order = append(order, r.Name)
	}
	if diff := cmp.Diff([]string{"etc", "etc/a", "etc/fastreboot", "etc/fastreboot/b", "top"}, order); diff != "" {
		t.Errorf("record order (-want +got):\n%s", diff)
	}
}

func TestBuildSite(t *testing.T) {
	p := filepath.Join(t.TempDir(), "site.cpio")
	if err := BuildSite(p, "v2", File{Path: "etc/extra", Data: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	files := readPiece(t, p, None)
	if got := files[SiteReleasePath]; got != "v2\n" {
		t.Errorf("%s = %q, want %q", SiteReleasePath, got, "v2\n")
	}
	if files["etc/extra"] != "x" {
		t.Errorf("extra file missing: %v", files)
	}
}

func TestConcat(t *testing.T) {
	dir := t.TempDir()
	var paths []string
	for i, content := range []string{"abcde", "1234", "xy"} {
		p := filepath.Join(dir, string(rune('a'+i)))
		writeFile(t, p, content)
		paths = append(paths, p)
	}
	dst := filepath.Join(dir, "out")
	n, err := Concat(dst, paths...)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := os.ReadFile(dst)
	want := "abcde\x00\x00\x00" + "1234" + "xy\x00\x00"
	if string(got) != want || n != int64(len(want)) {
		t.Errorf("Concat = %q (%d), want %q (%d)", got, n, want, len(want))
	}
	if _, err := Concat(dst, filepath.Join(dir, "missing")); err == nil {
		t.Error("Concat of a missing piece succeeded")
	}
}

// Concatenated pieces, one of them compressed, still read as archives in
// order: the layout the kernel unpacks.
func TestConcatPiecesReadBack(t *testing.T) {
	dir := t.TempDir()
	a := filepath.Join(dir, "a.cpio.zst")
	b := filepath.Join(dir, "b.cpio")
	if err := WritePiece(a, Zstd, []File{{Path: "x", Data: []byte("1")}}); err != nil {
		t.Fatal(err)
	}
	if err := BuildSite(b, "v1"); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "initrd")
	n, err := Concat(out, a, b)
	if err != nil {
		t.Fatal(err)
	}
	if n%4 != 0 {
		t.Errorf("concatenation size %d not a multiple of 4", n)
	}
	fa, _ := os.Stat(a)
	whole, _ := os.ReadFile(out)
	second := whole[(fa.Size()+3)&^3:]
	if got := readNewc(t, second)[SiteReleasePath]; got != "v1\n" {
		t.Errorf("second piece release = %q, want v1", got)
	}
}

func TestCompressionExt(t *testing.T) {
	for c, want := range map[Compression]string{None: "", Gzip: ".gz", Xz: ".xz", Zstd: ".zst"} {
		if got := c.Ext(); got != want {
			t.Errorf("%q.Ext() = %q, want %q", c, got, want)
		}
	}
	if _, err := compressor(io.Discard, "lzop"); err == nil {
		t.Error("compressor accepted an unknown compression")
	}
}
