package fastreboot

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/internal/testimage"
)

// filePiece is a sealed memfd-backed piece, like a *modcache.Entry.
type filePiece struct {
	f    *os.File
	size int64
}

func (p filePiece) ReadAt(b []byte, off int64) (int, error) { return p.f.ReadAt(b, off) }
func (p filePiece) Size() int64                             { return p.size }
func (p filePiece) File() *os.File                          { return p.f }

func newFilePiece(tb testing.TB, data []byte, size int64) filePiece {
	tb.Helper()
	f, err := kexecsys.NewImageFile("test-piece")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	if _, err := f.WriteAt(data, 0); err != nil {
		tb.Fatal(err)
	}
	if err := kexecsys.SealImage(f); err != nil {
		tb.Fatal(err)
	}
	return filePiece{f, size}
}

// bytesPiece is a piece without a file.
type bytesPiece struct{ *bytes.Reader }

func TestAssemblePadsEachPiece(t *testing.T) {
	sizes := []int{1, 2, 3, 4, 5, 4097, 70000}
	var want []byte
	var datas [][]byte
	for i, n := range sizes {
		d := testimage.Bytes(n, uint64(i+1))
		datas = append(datas, d)
		want = append(want, d...)
		for len(want)%4 != 0 {
			want = append(want, 0)
		}
	}
	for _, tc := range []struct {
		name         string
		method       copyMethod
		files        bool
		wantInKernel bool
	}{
		{"file pieces, auto", copyAuto, true, true},
		{"file pieces, pread", copyPread, true, false},
		{"byte pieces, auto", copyAuto, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst, err := kexecsys.NewImageFile("test-initrd")
			if err != nil {
				t.Fatal(err)
			}
			defer dst.Close()
			a := &assembler{dst: dst, method: tc.method}
			for i, d := range datas {
				var p Piece = bytesPiece{bytes.NewReader(d)}
				if tc.files {
					p = newFilePiece(t, d, int64(len(d)))
				}
				if err := a.appendPiece(fmt.Sprint("piece", i), p); err != nil {
					t.Fatal(err)
				}
			}
			got, err := readWhole(dst)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, want) || a.off != int64(len(want)) {
				t.Fatalf("assembled %d bytes (offset %d), want %d; equal=%v", len(got), a.off, len(want), bytes.Equal(got, want))
			}
			var data int64
			for _, d := range datas {
				data += int64(len(d))
			}
			if a.kernelCopied+a.userCopied != data || a.padding != int64(len(want))-data {
				t.Errorf("copied %d+%d, padding %d; want %d bytes and %d padding", a.kernelCopied, a.userCopied, a.padding, data, int64(len(want))-data)
			}
			if tc.wantInKernel && a.kernelCopied == 0 {
				t.Logf("copy_file_range unavailable between memfds here; fell back to pread/pwrite")
			}
			if !tc.wantInKernel && a.kernelCopied != 0 {
				t.Errorf("%d bytes copied in the kernel, want none", a.kernelCopied)
			}
		})
	}
}

func TestAssembleShortPiece(t *testing.T) {
	// The piece claims 2000 bytes, its file holds 1000: the copy must fail
	// naming the piece, whichever path copied.
	d := testimage.Bytes(1000, 7)
	for _, method := range []copyMethod{copyAuto, copyPread} {
		dst, err := kexecsys.NewImageFile("test-initrd")
		if err != nil {
			t.Fatal(err)
		}
		defer dst.Close()
		a := &assembler{dst: dst, method: method}
		err = a.appendPiece("short.cpio", newFilePiece(t, d, 2000))
		if err == nil || !strings.Contains(err.Error(), "short.cpio") ||
			!(strings.Contains(err.Error(), "source ended after 1000 of 2000") || strings.Contains(err.Error(), "read 1000 of 2000")) {
			t.Errorf("method %d: err = %v, want a short read naming short.cpio", method, err)
		}
	}
}

// BenchmarkAssembleInitrd copies three pieces totalling 48 MiB from sealed
// memfds into a new memfd, as Stage does, and compares with a plain
// memory copy of the same bytes in the same run.
func BenchmarkAssembleInitrd(b *testing.B) {
	sizes := []int{32 << 20, 12 << 20, 4<<20 - 3}
	var total int64
	var datas [][]byte
	var pieces []Piece
	for i, n := range sizes {
		d := testimage.Bytes(n, uint64(i+11))
		datas = append(datas, d)
		pieces = append(pieces, newFilePiece(b, d, int64(n)))
		total += int64(n)
	}
	assemble := func(b *testing.B, method copyMethod) {
		b.SetBytes(total)
		for b.Loop() {
			dst, err := kexecsys.NewImageFile("bench-initrd")
			if err != nil {
				b.Fatal(err)
			}
			a := &assembler{dst: dst, method: method}
			for i, p := range pieces {
				if err := a.appendPiece(fmt.Sprint(i), p); err != nil {
					b.Fatal(err)
				}
			}
			if method == copyAuto && a.kernelCopied == 0 {
				b.Skip("copy_file_range not usable between memfds on this kernel")
			}
			dst.Close()
		}
	}
	b.Run("copy_file_range", func(b *testing.B) { assemble(b, copyAuto) })
	b.Run("pread_pwrite", func(b *testing.B) { assemble(b, copyPread) })
	b.Run("memcpy_fresh_buffer", func(b *testing.B) {
		// The baseline: one user-space copy into new memory, which like a
		// new memfd must be faulted in.
		b.SetBytes(total)
		for b.Loop() {
			dst := make([]byte, 0, total+12)
			for _, d := range datas {
				dst = append(dst, d...)
				for len(dst)%4 != 0 {
					dst = append(dst, 0)
				}
			}
			io.Discard.Write(dst[:1])
		}
	})
	b.Run("memcpy_reused_buffer", func(b *testing.B) {
		b.SetBytes(total)
		dst := make([]byte, total+12)
		for b.Loop() {
			off := 0
			for _, d := range datas {
				off += copy(dst[off:], d)
				off = (off + 3) &^ 3
			}
		}
	})
}
