package crashhandler

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// Debian bookworm 6.1.0-56-amd64: its bzImage and the 22 MB image whose
// crash kernel memory was measured (docs/kernel-facts.md, Crash kernel
// memory).
const (
	debianKernelBytes   = 8247232
	debianInitSize      = 0x3f98000
	debianKernelAlign   = 0x200000
	findingsInitrdBytes = 14 << 20
)

func TestRequiredReservationMatchesFindings(t *testing.T) {
	img := ImageSize{KernelBytes: debianKernelBytes, InitrdBytes: findingsInitrdBytes, KernelInitSize: debianInitSize, KernelAlign: debianKernelAlign}

	two := RequiredReservation(img, ModeTwoStage)
	// Measured: 192M ran out of memory loading the image from the crash
	// kernel; 512M worked.
	if two.Total <= 192<<20 || two.Total > 512<<20 {
		t.Errorf("two-stage Total = %s, want in (192 MiB, 512 MiB]", mib(two.Total))
	}
	direct := RequiredReservation(img, ModeDirect)
	// Measured: direct ran with crashkernel=128M.
	if direct.Total > 128<<20 || direct.Total < img.KernelInitSize+img.InitrdBytes {
		t.Errorf("direct Total = %s, want between the image and 128 MiB", mib(direct.Total))
	}
	want := map[Mode]Sizing{
		ModeTwoStage: {Mode: ModeTwoStage, Load: 82 << 20, Runtime: 106 << 20, Reload: two.Reload, Total: 320 << 20},
		ModeDirect:   {Mode: ModeDirect, Load: 82 << 20, Total: 112 << 20},
	}
	if d := cmp.Diff(want[ModeTwoStage], two); d != "" {
		t.Errorf("two-stage (-want +got):\n%s", d)
	}
	if d := cmp.Diff(want[ModeDirect], direct); d != "" {
		t.Errorf("direct (-want +got):\n%s", d)
	}
	if got, want := two.Advice(), "add crashkernel=320M to the kernel command line (or raise the existing crashkernel=) and reboot"; got != want {
		t.Errorf("Advice = %q, want %q", got, want)
	}
	if RequiredReservation(img, "").Mode != ModeTwoStage {
		t.Error("empty mode is not two-stage")
	}
}

func TestRequiredReservationGrowsWithImage(t *testing.T) {
	base := ImageSize{KernelBytes: 8 << 20, InitrdBytes: 10 << 20, KernelInitSize: 40 << 20, KernelAlign: 2 << 20}
	bigger := base
	bigger.InitrdBytes = 200 << 20
	known := base
	known.InitrdUnpackedBytes = 10 << 20 // uncompressed initrd: less than the estimate
	for _, m := range []Mode{ModeTwoStage, ModeDirect} {
		if a, b := RequiredReservation(base, m).Total, RequiredReservation(bigger, m).Total; b <= a {
			t.Errorf("%s: bigger initrd needs %s <= %s", m, mib(b), mib(a))
		}
	}
	if a, b := RequiredReservation(base, ModeTwoStage).Total, RequiredReservation(known, ModeTwoStage).Total; b > a {
		t.Errorf("known unpacked size needs %s > estimated %s", mib(b), mib(a))
	}
}

// A two-stage crash kernel brings every CPU up: each one past the first
// costs PerCPUBudget of runtime; a direct one boots with them anyway.
func TestRequiredReservationPerCPU(t *testing.T) {
	one := ImageSize{KernelBytes: 8 << 20, InitrdBytes: 10 << 20, KernelInitSize: 40 << 20, KernelAlign: 2 << 20}
	many := one
	many.CPUs = 64
	zero := RequiredReservation(one, ModeTwoStage)
	one.CPUs = 1
	if got := RequiredReservation(one, ModeTwoStage); got != zero {
		t.Errorf("CPUs 1 = %+v, want the same as CPUs 0: %+v", got, zero)
	}
	if got, want := RequiredReservation(many, ModeTwoStage).Runtime-zero.Runtime, int64(63*PerCPUBudget); got != want {
		t.Errorf("64 CPUs add %s of runtime, want %s", mib(got), mib(want))
	}
	slots := many
	slots.PossibleCPUs = 256
	if got, want := RequiredReservation(slots, ModeTwoStage).Runtime-zero.Runtime, int64(63*PerCPUBudget+192*PossibleCPUBudget); got != want {
		t.Errorf("64 CPUs and 192 hot-plug slots add %s of runtime, want %s", mib(got), mib(want))
	}
	if a, b := RequiredReservation(one, ModeDirect), RequiredReservation(slots, ModeDirect); a != b {
		t.Errorf("direct sizing depends on CPUs: %+v vs %+v", a, b)
	}
}

// fakeBzImage returns a setup header like Debian's 6.1 bzImage.
// Setup header offsets (Documentation/arch/x86/boot.rst).
const (
	hdrBootFlag    = 0x1fe
	hdrMagic       = 0x202
	hdrVersion     = 0x206
	hdrAlignment   = 0x230
	hdrXLoadflags  = 0x236
	hdrCmdlineSize = 0x238
	hdrInitSize    = 0x260
)

func fakeBzImage() []byte {
	b := make([]byte, 0x300)
	b[0x1f1] = 39
	binary.LittleEndian.PutUint16(b[hdrBootFlag:], 0xaa55)
	copy(b[hdrMagic:], "HdrS")
	binary.LittleEndian.PutUint16(b[hdrVersion:], 0x020f)
	binary.LittleEndian.PutUint32(b[hdrAlignment:], debianKernelAlign)
	binary.LittleEndian.PutUint16(b[hdrXLoadflags:], 0x7f)
	binary.LittleEndian.PutUint32(b[hdrCmdlineSize:], 0x7ff)
	binary.LittleEndian.PutUint32(b[hdrInitSize:], debianInitSize)
	return b
}

func TestReadKernelHeader(t *testing.T) {
	h, err := ReadKernelHeader(bytes.NewReader(fakeBzImage()))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(KernelHeader{Version: 0x20f, InitSize: debianInitSize, Alignment: debianKernelAlign, CmdlineSize: 0x7ff}, h); d != "" {
		t.Errorf("header (-want +got):\n%s", d)
	}
	if got := maxCrashCmdline(h); got != 2016 {
		t.Errorf("maxCrashCmdline = %d, want 2016", got)
	}
	mut := func(off int, v uint16) []byte {
		b := fakeBzImage()
		binary.LittleEndian.PutUint16(b[off:], v)
		return b
	}
	for name, b := range map[string][]byte{
		"truncated":      fakeBzImage()[:0x200],
		"no HdrS":        mut(hdrMagic, 0),
		"no boot flag":   mut(hdrBootFlag, 0),
		"protocol 2.10":  mut(hdrVersion, 0x020a),
		"32-bit only":    mut(hdrXLoadflags, 0x7e),
		"zero init_size": func() []byte { b := fakeBzImage(); binary.LittleEndian.PutUint32(b[hdrInitSize:], 0); return b }(),
		"ELF vmlinux":    append([]byte("\x7fELF"), make([]byte, 0x300)...),
	} {
		if _, err := ReadKernelHeader(bytes.NewReader(b)); !errors.Is(err, ErrInvalidImage) {
			t.Errorf("%s: error = %v, want ErrInvalidImage", name, err)
		}
	}
}

// TestRequiredReservationMinimal: the minimal crash initramfs is sized from
// what TestCrashMinimalInitrd measured: the test image (kernel 8222656
// bytes, crash init piece 8676516, production initrd 27253192, 4 CPUs and
// 12 hot-plug slots) needs crashkernel=240M in two-stage mode with either
// crash load method when the crash kernel reloads production with
// kexec_load (240M recovered), and 272M when lockdown leaves it
// kexec_file_load (256M ran out of memory, 272M recovered). Total is the
// larger of the load and the peak.
func TestRequiredReservationMinimal(t *testing.T) {
	img := ImageSize{
		KernelBytes: 8222656, InitrdBytes: 26416672, KernelInitSize: debianInitSize, KernelAlign: debianKernelAlign,
		InitrdUnpackedBytes: 8676516, CPUs: 4, PossibleCPUs: 16, ReloadInitrdBytes: 27253192,
	}
	withFile := img
	withFile.ReloadWithFile = true
	file := RequiredReservation(img, ModeTwoStage)
	for _, tc := range []struct {
		name string
		s    Sizing
		want int64
	}{
		{"file, reload with kexec_load", file, 240 << 20},
		{"segments, reload with kexec_load", SegmentsSizing(95019008, img, ModeTwoStage), 240 << 20},
		{"file, reload with kexec_file_load", RequiredReservation(withFile, ModeTwoStage), 272 << 20},
		{"segments, reload with kexec_file_load", SegmentsSizing(95019008, withFile, ModeTwoStage), 272 << 20},
	} {
		s := tc.s
		if !s.Minimal || s.Total != tc.want || s.Total < s.Runtime+s.Reload || s.Total < s.Load {
			t.Errorf("%s: sizing %+v: want minimal, %s and at least max(load, runtime+reload)", tc.name, s, mib(tc.want))
		}
		if b := s.Breakdown(); !strings.Contains(b, "the larger of") {
			t.Errorf("%s: breakdown %q", tc.name, b)
		}
	}
	full := img
	full.ReloadInitrdBytes, full.InitrdUnpackedBytes = 0, 0
	if f := RequiredReservation(full, ModeTwoStage); f.Minimal || f.Total <= file.Total {
		t.Errorf("the image's own initrd: %+v, want more than the minimal %+v", f, file)
	}
	// A big reservation's load alone decides.
	big := SegmentsSizing(400<<20, img, ModeTwoStage)
	if big.Total != roundUp((400<<20)*64/63, ReservationAlign) {
		t.Errorf("segments of 400 MiB: total %s", mib(big.Total))
	}
}
