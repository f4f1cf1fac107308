package testimage

import (
	"bytes"
	"compress/gzip"
	"debug/elf"
	"encoding/binary"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/klauspost/compress/zstd"
	"github.com/u-root/u-root/pkg/cpio"
	"github.com/ulikunitz/xz"
)

func TestKernelLayout(t *testing.T) {
	k := Kernel(KernelOptions{Version: "6.1.0-test", PayloadBytes: 10000})
	le := binary.LittleEndian
	if string(k[OffHeaderMagic:OffHeaderMagic+4]) != "HdrS" || le.Uint16(k[OffBootFlag:]) != 0xaa55 {
		t.Fatalf("no boot sector / HdrS magic")
	}
	if v := le.Uint16(k[OffVersion:]); v != 0x020f {
		t.Errorf("protocol %#x", v)
	}
	if x := le.Uint16(k[OffXLoadflags:]); x != XLFKernel64|XLFCanBeLoadedAbove4G || k[OffRelocatable] != 1 || k[OffLoadflags]&LoadedHigh == 0 {
		t.Errorf("flags: xloadflags %#x relocatable %d loadflags %#x", x, k[OffRelocatable], k[OffLoadflags])
	}
	setup := (int(k[OffSetupSects]) + 1) * 512
	if sys := int(le.Uint32(k[OffSyssize:])) * 16; setup+sys != len(k) {
		t.Errorf("setup %d + syssize*16 %d != image length %d", setup, sys, len(k))
	}
	ver := k[0x200+int(le.Uint16(k[OffKernelVer:])):]
	ver = ver[:bytes.IndexByte(ver, 0)]
	if want := "6.1.0-test (testimage@fastreboot) #1 SMP"; string(ver) != want {
		t.Errorf("version string %q, want %q", ver, want)
	}
	off := setup + int(le.Uint32(k[OffPayloadOff:]))
	payload := k[off : off+int(le.Uint32(k[OffPayloadLen:]))]
	zr, err := gzip.NewReader(bytes.NewReader(payload))
	if err != nil {
		t.Fatal(err)
	}
	e, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	if got := le.Uint32(payload[len(payload)-4:]); int(got) != len(e) {
		t.Errorf("payload size suffix %d, ELF is %d bytes", got, len(e))
	}
	f, err := elf.NewFile(bytes.NewReader(e))
	if err != nil {
		t.Fatalf("payload is not an ELF: %v", err)
	}
	if f.Machine != elf.EM_X86_64 || len(f.Progs) != 1 {
		t.Errorf("ELF machine %v, %d program headers", f.Machine, len(f.Progs))
	}
	k2 := Kernel(KernelOptions{Not64Bit: true, NotRelocatable: true, Protocol: 0x0208})
	if k2[OffXLoadflags] != 0 || k2[OffRelocatable] != 0 || k2[OffVersion] != 0x08 {
		t.Errorf("options not applied: xloadflags %#x relocatable %d", k2[OffXLoadflags], k2[OffRelocatable])
	}
}

func TestCpioAndCompressions(t *testing.T) {
	files := []File{{Name: "etc/a/b", Data: []byte("bee")}, {Name: "init", Data: []byte("x"), Mode: 0o755}}
	raw := Cpio(files...)
	unz := map[string]func([]byte) ([]byte, error){
		"none": func(b []byte) ([]byte, error) { return b, nil },
		"gzip": func(b []byte) ([]byte, error) {
			r, err := gzip.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		},
		"xz": func(b []byte) ([]byte, error) {
			r, err := xz.NewReader(bytes.NewReader(b))
			if err != nil {
				return nil, err
			}
			return io.ReadAll(r)
		},
		"zstd": func(b []byte) ([]byte, error) {
			d, err := zstd.NewReader(nil)
			if err != nil {
				return nil, err
			}
			defer d.Close()
			return d.DecodeAll(b, nil)
		},
	}
	comp := map[string]func([]byte) []byte{"none": func(b []byte) []byte { return b }, "gzip": Gzip, "xz": Xz, "zstd": Zstd}
	for name, c := range comp {
		got, err := unz[name](c(raw))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !bytes.Equal(got, raw) {
			t.Fatalf("%s: round trip changed the archive", name)
		}
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(raw)))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	if diff := cmp.Diff([]string{"etc", "etc/a", "etc/a/b", "init"}, names); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	if tail := raw[len(raw)-16:]; !bytes.Contains(tail, []byte(cpio.Trailer+"\x00")) || len(raw)%4 != 0 {
		t.Errorf("archive does not end with %s", cpio.Trailer)
	}
}

func TestImageManifest(t *testing.T) {
	im := Default()
	m, p, err := im.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if p == "" || len(m.Modules) != 4 || m.Modules[0].Role != "kernel" || m.Modules[1].SHA256 != Digest(im.Initrds[0].Data) {
		t.Errorf("manifest %+v", m)
	}
}
