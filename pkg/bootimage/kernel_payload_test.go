package bootimage

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// kernelPayload compresses elf as arch/x86/boot/compressed does: the
// stream, then (for every format but gzip, whose ISIZE is the same
// number) the unpacked size as a 32-bit little-endian word, unless size
// forges another.
func kernelPayload(t testing.TB, format string, elf []byte, size int64) []byte {
	t.Helper()
	b := compress(t, format, elf)
	if size < 0 {
		size = int64(len(elf))
	}
	if format == "gzip" {
		binary.LittleEndian.PutUint32(b[len(b)-4:], uint32(size))
		return b
	}
	return binary.LittleEndian.AppendUint32(b, uint32(size))
}

// bigELF is an ELF-looking kernel of n bytes that compresses poorly, so
// that a byte flipped in the middle of its compressed form lands in data.
func bigELF(n int) []byte {
	b := make([]byte, n)
	copy(b, fakeELF)
	x := uint32(0x2545f491)
	for i := len(fakeELF); i < n; i++ {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func withInitSize(size uint32) func(h *bzimage.LinuxHeader) {
	return func(h *bzimage.LinuxHeader) { h.InitSize = size }
}

// TestUnpackKernel: every format a kernel can be compressed with unpacks
// to its ELF, bounded by its size field.
func TestUnpackKernel(t *testing.T) {
	elf := bigELF(20000)
	for _, format := range []string{"gzip", "xz", "lzma", "zstd", "lz4"} {
		t.Run(format, func(t *testing.T) {
			k := fakeBzImageWith(kernelPayload(t, format, elf, -1), nil)
			var out bytes.Buffer
			p, err := UnpackKernel(bytes.NewReader(k), int64(len(k)), &out)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(out.Bytes(), elf) || p.Format != format || p.UnpackedBytes != int64(len(elf)) || p.InitSize != 0x1000000 {
				t.Errorf("unpacked %d bytes (equal %v), payload %+v", out.Len(), bytes.Equal(out.Bytes(), elf), p)
			}
			if err := CheckKernelPayload(bytes.NewReader(k), int64(len(k))); err != nil {
				t.Errorf("CheckKernelPayload = %v", err)
			}
		})
	}
}

// TestCheckKernelPayloadCorrupt: a kernel whose compressed payload has
// bytes flipped in its middle passes the header check (CheckKernel) but
// not CheckKernelPayload, which CheckModule runs: the error names the
// format and says corrupt.
func TestCheckKernelPayloadCorrupt(t *testing.T) {
	elf := bigELF(20000)
	for _, format := range []string{"gzip", "xz", "zstd"} {
		t.Run(format, func(t *testing.T) {
			payload := kernelPayload(t, format, elf, -1)
			for i := len(payload)/2 - 8; i < len(payload)/2+8; i++ {
				payload[i] ^= 0x5a
			}
			k := fakeBzImageWith(payload, nil)
			if err := CheckKernel(bytes.NewReader(k), int64(len(k))); err != nil {
				t.Fatalf("the header check fails already: %v", err)
			}
			m := Module{Name: "vmlinuz", Role: RoleKernel, Size: int64(len(k))}
			err := CheckModule(m, bytes.NewReader(k))
			if !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), format+" compressed kernel") || !strings.Contains(err.Error(), "corrupt") || !strings.Contains(err.Error(), `"vmlinuz"`) {
				t.Errorf("CheckModule = %v, want ErrNotBzImage naming vmlinuz and saying the %s payload is corrupt", err, format)
			}
		})
	}
	t.Run("not an ELF", func(t *testing.T) {
		k := fakeBzImageWith(kernelPayload(t, "gzip", []byte("no elf here"), -1), nil)
		if err := CheckKernelPayload(bytes.NewReader(k), int64(len(k))); !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), "not an ELF") {
			t.Errorf("CheckKernelPayload = %v, want not an ELF", err)
		}
	})
	t.Run("size field lies low", func(t *testing.T) {
		k := fakeBzImageWith(kernelPayload(t, "xz", elf, 1000), nil)
		if err := CheckKernelPayload(bytes.NewReader(k), int64(len(k))); !errors.Is(err, ErrUnpackLimit) {
			t.Errorf("CheckKernelPayload = %v, want ErrUnpackLimit", err)
		}
	})
}

// countWriter counts what it is given.
type countWriter struct{ n int64 }

func (c *countWriter) Write(p []byte) (int, error) { c.n += int64(len(p)); return len(p), nil }

// TestUnpackKernelBombs: a payload of zeros that unpacks to 32 MiB, in a
// bzImage whose init_size and size field say 4 MiB, is stopped at 4 MiB
// by every decompressor; a size field above init_size is refused before
// anything is decompressed.
func TestUnpackKernelBombs(t *testing.T) {
	const unpacked, bound = 32 << 20, 4 << 20
	zeros := make([]byte, unpacked)
	copy(zeros, fakeELF)
	for _, format := range []string{"gzip", "xz", "zstd", "lz4"} {
		t.Run(format, func(t *testing.T) {
			payload := kernelPayload(t, format, zeros, bound)
			k := fakeBzImageWith(payload, withInitSize(bound))
			var w countWriter
			_, err := UnpackKernel(bytes.NewReader(k), int64(len(k)), &w)
			if !errors.Is(err, ErrUnpackLimit) || !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), "unpacks to more than the 4194304 bytes") {
				t.Errorf("UnpackKernel = %v, want ErrUnpackLimit", err)
			}
			if w.n > bound {
				t.Errorf("%d bytes written, more than the bound %d", w.n, bound)
			}
			t.Logf("%s: %d bytes of payload, stopped after %d bytes: %v", format, len(payload), w.n, err)
		})
	}
	t.Run("size field above init_size", func(t *testing.T) {
		k := fakeBzImageWith(kernelPayload(t, "zstd", fakeELF, 1<<30), withInitSize(bound))
		var w countWriter
		_, err := UnpackKernel(bytes.NewReader(k), int64(len(k)), &w)
		if !errors.Is(err, ErrUnpackLimit) || !strings.Contains(err.Error(), "unpacks to 1073741824 bytes, more than init_size (4194304)") || w.n != 0 {
			t.Errorf("UnpackKernel = %v after %d bytes, want ErrUnpackLimit before any", err, w.n)
		}
	})
	t.Run("lzo", func(t *testing.T) {
		k := fakeBzImageWith(append([]byte{0x89, 0x4c, 0x5a, 0x4f, 0, 0x0d, 0x0a, 0x1a, 0x0a}, make([]byte, 40)...), nil)
		if _, err := UnpackKernel(bytes.NewReader(k), int64(len(k)), io.Discard); err == nil || !strings.Contains(err.Error(), "no decompressor for lzo") {
			t.Errorf("UnpackKernel of lzo = %v", err)
		}
		if err := CheckKernelPayload(bytes.NewReader(k), int64(len(k))); err != nil {
			t.Errorf("CheckKernelPayload of lzo = %v, want the header check only", err)
		}
	})
}

// TestUnpackKernelReal unpacks u-root's test kernels, one per compressor
// the kernel's build offers (Debian's, in the QEMU tests' cache, is left
// to them: it takes seconds), within init_size; lzo is checked by its
// header only.
func TestUnpackKernelReal(t *testing.T) {
	var n int
	for _, p := range realKernels(t) {
		if !strings.Contains(filepath.Base(p), "bzImage-linux5.10") {
			continue
		}
		n++
		t.Run(filepath.Base(p), func(t *testing.T) {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			var w countWriter
			kp, err := UnpackKernel(bytes.NewReader(b), int64(len(b)), &w)
			if kp.Format == "lzo" {
				if err == nil || CheckKernelPayload(bytes.NewReader(b), int64(len(b))) != nil {
					t.Errorf("lzo: UnpackKernel = %v, want no decompressor; CheckKernelPayload must pass", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if w.n != kp.UnpackedBytes || kp.UnpackedBytes > kp.InitSize || !strings.HasSuffix(p, kp.Format) && !strings.HasSuffix(p, "bzip2") {
				t.Errorf("unpacked %d bytes; payload %+v", w.n, kp)
			}
			t.Logf("%s: %s, %d bytes unpacked to %d, init_size %d", filepath.Base(p), kp.Format, kp.Length, kp.UnpackedBytes, kp.InitSize)
		})
	}
	if n == 0 {
		t.Skip("u-root's test kernels are not in the module cache")
	}
}
