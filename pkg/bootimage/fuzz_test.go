package bootimage

import (
	"bytes"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// Whatever Parse accepts, Marshal writes back and Parse reads the same.
func FuzzParse(f *testing.F) {
	f.Add([]byte(validJSON))
	f.Add([]byte(`{"version": 2}`))
	f.Add([]byte(`{"version": 1, "cmdline": "", "modules": [{"name": "k", "role": "kernel", "size": 1, "sha256": "` + digestA + `"}]}`))
	f.Add([]byte(`{"version": 1, "modules": [{"name": "k", "role": "kernel", "size": -1}]}`))
	f.Add([]byte("{\n  \"version\": 1,\n  \"modules\": [\n"))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		m, err := Parse(bytes.NewReader(data), "fuzz.json")
		if err != nil {
			if !errors.Is(err, ErrInvalid) && !errors.Is(err, ErrSchema) && !errors.Is(err, ErrCmdlineTooLong) {
				t.Fatalf("Parse error wraps no sentinel: %v", err)
			}
			if !strings.HasPrefix(err.Error(), "fuzz.json: ") {
				t.Fatalf("Parse error does not name the input: %v", err)
			}
			return
		}
		out, err := m.Marshal()
		if err != nil {
			t.Fatalf("Marshal of a parsed manifest: %v", err)
		}
		m2, err := Parse(bytes.NewReader(out), "again.json")
		if err != nil {
			t.Fatalf("Parse(Marshal(m)): %v\n%s", err, out)
		}
		if diff := cmp.Diff(m, m2); diff != "" {
			t.Fatalf("round trip (-first +second):\n%s", diff)
		}
	})
}

// CheckInitrd never panics, fails only with ErrBadInitrd, and what it
// accepts is pieces in order with nothing but zeros between them.
func FuzzCheckInitrd(f *testing.F) {
	newc := sampleNewc(f)
	f.Add(newc)
	f.Add(sampleCRC())
	for _, format := range formats {
		c := compress(f, format, newc)
		f.Add(c)
		f.Add(c[:len(c)/2])
	}
	f.Add(concat(newc, compress(f, "gzip", sampleCRC()), compress(f, "zstd", newc), compress(f, "lz4", newc)))
	f.Add(newcArchive(f, sampleRecords(), true))
	f.Add([]byte("070707"))
	f.Add(make([]byte, 64))
	f.Fuzz(func(t *testing.T, data []byte) {
		pieces, err := scanInitrd(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrBadInitrd) {
				t.Fatalf("error is not ErrBadInitrd: %v", err)
			}
			return
		}
		if len(pieces) == 0 {
			t.Fatal("accepted with no pieces")
		}
		var end int64
		for _, p := range pieces {
			if p.Offset < end || p.Length <= 0 || p.Offset+p.Length > int64(len(data)) || p.Archives < 1 {
				t.Fatalf("bad piece %+v after offset %d in %d bytes", p, end, len(data))
			}
			if gap := data[end:p.Offset]; bytes.Count(gap, []byte{0}) != len(gap) {
				t.Fatalf("non-zero bytes between pieces before %+v", p)
			}
			end = p.Offset + p.Length
		}
		if rest := data[end:]; bytes.Count(rest, []byte{0}) != len(rest) {
			// Only a legacy lz4 frame may leave up to 3 bytes it does
			// not own at the very end.
			if last := pieces[len(pieces)-1]; last.Format != "lz4" || len(rest) > 3 {
				t.Fatalf("non-zero bytes after the last piece %+v", last)
			}
		}
	})
}

// CheckKernel never panics and fails only with ErrNotBzImage; what it
// accepts is as long as its header says.
func FuzzCheckKernel(f *testing.F) {
	f.Add(fakeBzImage(nil))
	f.Add(fakeBzImage(func(h *bzimage.LinuxHeader) { h.SetupSects = 0 }))
	f.Add(fakeBzImage(func(h *bzimage.LinuxHeader) { h.XLoadFlags = 0 }))
	f.Add(fakeBzImage(func(h *bzimage.LinuxHeader) { h.Kveraddr = 0xffff }))
	f.Add(fakeBzImage(nil)[:1500])
	f.Add([]byte("MZ"))
	f.Fuzz(func(t *testing.T, data []byte) {
		info, err := InspectKernel(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrNotBzImage) {
				t.Fatalf("error is not ErrNotBzImage: %v", err)
			}
			return
		}
		if info.ImageBytes > int64(len(data)) || info.Protocol < minProtocol {
			t.Fatalf("accepted %d bytes with %+v", len(data), info)
		}
	})
}

// UnpackKernel never panics, fails only with ErrNotBzImage, and never
// writes more than the payload's size field, which never exceeds
// init_size; what it accepts is an ELF of exactly that size. Inputs whose
// size field is above 1 MiB are left out to keep each run short.
func FuzzUnpackKernel(f *testing.F) {
	elf := append(append([]byte(nil), fakeELF...), make([]byte, 3000)...)
	for _, format := range []string{"gzip", "xz", "lzma", "zstd", "lz4"} {
		f.Add(fakeBzImageWith(kernelPayload(f, format, elf, -1), nil))
	}
	f.Add(fakeBzImageWith(kernelPayload(f, "zstd", elf, 100), nil))
	f.Add(fakeBzImageWith(kernelPayload(f, "gzip", make([]byte, 64<<10), 4096), withInitSize(4096)))
	f.Fuzz(func(t *testing.T, data []byte) {
		p, err := FindKernelPayload(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			if !errors.Is(err, ErrNotBzImage) {
				t.Fatalf("FindKernelPayload error is not ErrNotBzImage: %v", err)
			}
			return
		}
		if p.UnpackedBytes > p.InitSize {
			t.Fatalf("accepted a size field above init_size: %+v", p)
		}
		if p.UnpackedBytes > 1<<20 {
			return
		}
		var w countWriter
		p, err = UnpackKernel(bytes.NewReader(data), int64(len(data)), &w)
		if w.n > p.UnpackedBytes {
			t.Fatalf("wrote %d bytes, more than the size field's %d", w.n, p.UnpackedBytes)
		}
		if err != nil {
			if !errors.Is(err, ErrNotBzImage) {
				t.Fatalf("UnpackKernel error is not ErrNotBzImage: %v", err)
			}
			return
		}
		if w.n != p.UnpackedBytes {
			t.Fatalf("accepted %d bytes unpacked, size field %d", w.n, p.UnpackedBytes)
		}
	})
}

// FuzzCleanCmdline cleans an arbitrary /proc/cmdline: what it keeps are
// words of the input, never the boot loader's or the crash path's, and
// splitting is stable across a join.
func FuzzCleanCmdline(f *testing.F) {
	f.Add("BOOT_IMAGE=/vmlinuz-6.1.0-28-amd64 root=UUID=1234 ro quiet crashkernel=384M")
	f.Add(`elfcorehdr=0x7f000000 console=ttyS0 ` + CrashMarker + ` reset_devices irqpoll -- init arg  "two  words"`)
	f.Add(`dyndbg="file foo.c +p" initrd=\initrd.img -- --`)
	f.Add("a\"b c\t\n--")
	f.Fuzz(func(t *testing.T, s string) {
		in, _ := SplitCmdline(s)
		words := map[string]bool{}
		for _, w := range in {
			words[w] = true
		}
		out := CleanCmdline(s)
		kept, initArgs := SplitCmdline(out)
		for _, w := range kept {
			if !words[w] {
				t.Errorf("CleanCmdline(%q) = %q: word %q is not one of the input's", s, out, w)
			}
			if w == CrashMarker {
				t.Errorf("CleanCmdline(%q) = %q keeps the crash marker", s, out)
			}
			if _, drop := droppedKeys[cmdlineKey(w)]; drop {
				t.Errorf("CleanCmdline(%q) = %q keeps %q", s, out, w)
			}
		}
		if _, want := SplitCmdline(s); initArgs != want {
			t.Errorf("CleanCmdline(%q) = %q: init arguments %q, want %q", s, out, initArgs, want)
		}
		p1, i1 := SplitCmdline(JoinCmdline(in, initArgs))
		if !slices.Equal(p1, in) || i1 != initArgs {
			t.Errorf("SplitCmdline(JoinCmdline(SplitCmdline(%q))) = %q %q, want %q %q", s, p1, i1, in, initArgs)
		}
	})
}
