package bootimage

import (
	"bytes"
	"errors"
	"go/build"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/boot/bzimage"
)

func TestInspectKernel(t *testing.T) {
	img := fakeBzImage(nil)
	got, err := InspectKernel(bytes.NewReader(img), int64(len(img)))
	if err != nil {
		t.Fatal(err)
	}
	want := &KernelInfo{
		Protocol:    0x020F,
		Version:     fakeVersion,
		SetupBytes:  4 * 512,
		ImageBytes:  4*512 + 0x40*16,
		CmdlineSize: MaxCmdline - 1,
		InitSize:    0x1000000,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("InspectKernel (-want +got):\n%s", diff)
	}
}

func TestCheckKernel(t *testing.T) {
	type mut = func(h *bzimage.LinuxHeader)
	tests := []struct {
		name   string
		image  []byte
		wantOK bool
		want   []string
	}{
		{name: "valid", image: fakeBzImage(nil), wantOK: true},
		{name: "setup_sects 0 means 4", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.SetupSects = 0 }), wantOK: true},
		{name: "signed: longer than the header says", image: append(fakeBzImage(nil), make([]byte, 700)...), wantOK: true},
		{name: "no version string", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.Kveraddr = 0 }), wantOK: true},
		{name: "too short", image: fakeBzImage(nil)[:1000], want: []string{"1000 bytes"}},
		{name: "empty", image: nil, want: []string{"0 bytes"}},
		{name: "truncated", image: func() []byte { b := fakeBzImage(nil); return b[:len(b)-1] }(), want: []string{"truncated", "3071 bytes", "3072"}},
		{name: "no HdrS", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.HeaderMagic = [4]byte{'E', 'L', 'F', 0} }), want: []string{`"HdrS"`, "0x202"}},
		{name: "no boot flag", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.Bootsectormagic = 0 }), want: []string{"0xaa55", "0x1fe"}},
		{name: "protocol 2.11", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.Protocolversion = 0x020B }), want: []string{"protocol 2.11", "2.12"}},
		{name: "zImage", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.Loadflags = 0 }), want: []string{"LOADED_HIGH"}},
		{name: "32-bit only", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.XLoadFlags &^= 1 }), want: []string{"XLF_KERNEL_64", "64-bit entry"}},
		{name: "not above 4G", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.XLoadFlags &^= 2 }), want: []string{"XLF_CAN_BE_LOADED_ABOVE_4G"}},
		{name: "not relocatable", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.RelocatableKernel = 0 }), want: []string{"relocatable"}},
		{name: "no code", image: fakeBzImage(func(h *bzimage.LinuxHeader) { h.Syssize = 0 }), want: []string{"syssize is 0"}},
		{name: "payload past the code", image: fakeBzImage(mut(func(h *bzimage.LinuxHeader) { h.PayloadSize = 0x10000 })), want: []string{"payload"}},
		{name: "zeros", image: make([]byte, 8192), want: []string{`"HdrS"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckKernel(bytes.NewReader(tt.image), int64(len(tt.image)))
			if tt.wantOK {
				if err != nil {
					t.Fatalf("CheckKernel = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNotBzImage) {
				t.Fatalf("CheckKernel = %v, want an error wrapping ErrNotBzImage", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("CheckKernel = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

func TestCheckKernelReadError(t *testing.T) {
	img := fakeBzImage(nil)
	errDisk := errors.New("disk on fire")
	err := CheckKernel(failingReaderAt{r: bytes.NewReader(img), failAt: 100, err: errDisk}, int64(len(img)))
	if !errors.Is(err, errDisk) || errors.Is(err, ErrNotBzImage) {
		t.Errorf("CheckKernel = %v, want the read error and not ErrNotBzImage", err)
	}
	// A reader shorter than the size claimed is a truncated kernel.
	err = CheckKernel(bytes.NewReader(img[:600]), int64(len(img)))
	if !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("CheckKernel of a short reader = %v, want ErrNotBzImage saying truncated", err)
	}
}

// realKernels lists bzImages on this machine: the Debian kernel the QEMU
// tests cache, and the x86-64 test kernels in u-root's module source.
func realKernels(t *testing.T) []string {
	var paths []string
	if home, err := os.UserHomeDir(); err == nil {
		m, _ := filepath.Glob(filepath.Join(home, ".cache/fastreboot/kernel/*/boot/vmlinuz-*"))
		paths = append(paths, m...)
	}
	modcache := os.Getenv("GOMODCACHE")
	if modcache == "" {
		modcache = filepath.Join(build.Default.GOPATH, "pkg/mod")
	}
	m, _ := filepath.Glob(filepath.Join(modcache, "github.com/u-root/u-root@v0.16.0/pkg/boot/bzimage/testdata/bzImage-linux5.10-x86_64-*"))
	return dedupePaths(append(paths, m...))
}

// dedupePaths drops paths that are symlinks to others in the list.
func dedupePaths(paths []string) []string {
	seen := map[string]bool{}
	var out []string
	for _, p := range paths {
		real, err := filepath.EvalSymlinks(p)
		if err != nil || seen[real] {
			continue
		}
		seen[real] = true
		out = append(out, p)
	}
	return out
}

func TestCheckKernelReal(t *testing.T) {
	paths := realKernels(t)
	if len(paths) == 0 {
		t.Skip("no real kernel here: none in ~/.cache/fastreboot/kernel/*/boot/ (the QEMU tests download Debian's) nor in u-root's module testdata")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			f, err := os.Open(p)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			fi, err := f.Stat()
			if err != nil {
				t.Fatal(err)
			}
			info, err := InspectKernel(f, fi.Size())
			if err != nil {
				t.Fatalf("%s: %v", p, err)
			}
			if info.Protocol < minProtocol || info.Version == "" || info.ImageBytes > fi.Size() || info.CmdlineSize < 255 {
				t.Errorf("%s: implausible header: %+v", p, info)
			}
			t.Logf("%s: protocol %s, %q, init_size %d", p, protocolString(info.Protocol), info.Version, info.InitSize)
		})
	}
}

func TestReadSetupHeader(t *testing.T) {
	k := fakeBzImage(nil)
	h, err := ReadSetupHeader(bytes.NewReader(k))
	if err != nil {
		t.Fatal(err)
	}
	if h.Protocolversion != 0x020F || h.Kernelalignment != 0x200000 || h.InitSize != 0x1000000 || h.CmdLineSize != MaxCmdline-1 {
		t.Errorf("header %+v", h)
	}
	// Only the magic and the boot flag are checked: a kernel InspectKernel
	// refuses (not relocatable) still has a header.
	nr := fakeBzImage(func(h *bzimage.LinuxHeader) { h.RelocatableKernel = 0 })
	if _, err := ReadSetupHeader(bytes.NewReader(nr)); err != nil {
		t.Errorf("not relocatable: %v", err)
	}
	if _, err := InspectKernel(bytes.NewReader(nr), int64(len(nr))); !errors.Is(err, ErrNotBzImage) {
		t.Errorf("InspectKernel, not relocatable: %v, want ErrNotBzImage", err)
	}
	for name, b := range map[string][]byte{
		"truncated":    k[:0x200],
		"no HdrS":      fakeBzImage(func(h *bzimage.LinuxHeader) { h.HeaderMagic = [4]byte{} }),
		"no boot flag": fakeBzImage(func(h *bzimage.LinuxHeader) { h.Bootsectormagic = 0 }),
	} {
		if _, err := ReadSetupHeader(bytes.NewReader(b)); !errors.Is(err, ErrNotBzImage) {
			t.Errorf("%s: error = %v, want ErrNotBzImage", name, err)
		}
	}
}
