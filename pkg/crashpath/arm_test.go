package crashpath_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// newPath returns the crash path of a generation on root, with a new cache
// and l as its loader.
func newPath(t *testing.T, root string, l *flagLoader) *crashpath.Path {
	t.Helper()
	return newPathConfig(t, crashpath.Config{Root: root}, l)
}

// newPathConfig returns the crash path of cfg with a new cache, l as its
// loader and, unless cfg names one, a new state directory.
func newPathConfig(t *testing.T, cfg crashpath.Config, l *flagLoader) *crashpath.Path {
	t.Helper()
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	t.Cleanup(func() { cache.Close() })
	if cfg.StateDir == "" {
		cfg.StateDir = t.TempDir()
	}
	cfg.Cache = cache
	cfg.MachineOptions = fastreboot.Options{Loader: l, Probe: func() error { return errors.New("probe must not run in tests") }}
	return crashpath.New(cfg)
}

// target is the manifest file p with its modules read from its directory.
func target(t *testing.T, p string) crashpath.Target {
	t.Helper()
	m, err := bootimage.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return crashpath.Target{Manifest: m, Source: modcache.DirSource(filepath.Dir(p)), Label: p}
}

func sysctl(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// flagLoader records the flags, command line and initrd of the last load.
type flagLoader struct {
	err     error
	calls   int
	flags   int
	cmdline string
	initrd  []byte
}

func (l *flagLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.calls++
	if l.err != nil {
		return l.err
	}
	l.flags, l.cmdline = flags, cmdline
	if initrd != nil {
		b, err := os.ReadFile(initrd.Name())
		if err != nil {
			st, _ := initrd.Stat()
			b = make([]byte, st.Size())
			initrd.ReadAt(b, 0)
		}
		l.initrd = b
	}
	return nil
}

// TestCrashArmRefused: every refused arm says why and leaves nothing armed
// and no sysctl changed.
func TestCrashArmRefused(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	corrupt := filepath.Join(filepath.Dir(mp), "site.cpio")
	for _, tc := range []struct {
		name    string
		reserve int64
		loadErr error
		prep    func()
		want    error
		text    string
	}{
		{name: "no reservation", reserve: 0, want: crashhandler.ErrNoReservation, text: "crashkernel="},
		{name: "too small", reserve: 16 << 20, want: crashhandler.ErrReservationTooSmall, text: "crashkernel="},
		{name: "no privilege", reserve: 384 << 20, loadErr: syscall.EPERM, want: crashhandler.ErrNotPermitted, text: "CAP_SYS_BOOT"},
		{name: "corrupt module", reserve: 384 << 20, prep: func() {
			b, _ := os.ReadFile(corrupt)
			b[len(b)-1] ^= 0xff
			os.WriteFile(corrupt, b, 0o644)
		}, text: "site.cpio"},
		{name: "missing module", reserve: 384 << 20, prep: func() { os.Remove(corrupt) }, text: "site.cpio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prep != nil {
				tc.prep()
			}
			root := crashRoot(t, tc.reserve)
			l := &flagLoader{err: tc.loadErr}
			p := newPath(t, root, l)
			_, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp)})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("CrashArm = %v, want an error wrapping %v and naming %q", err, tc.want, tc.text)
			}
			if tc.loadErr == nil && l.calls != 0 {
				t.Errorf("kexec_file_load called %d times for a refused image", l.calls)
			}
			if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
				t.Errorf("panic_on_oops = %s after a refused arm, want 0", got)
			}
			if st, _ := p.Status(); st.State != nil {
				t.Errorf("a state was recorded after a refused arm: %+v", st.State)
			}
		})
	}
}

// TestCrashArmAuto: --auto arms only when the handoff names a crash mode.
func TestCrashArmAuto(t *testing.T) {
	root := crashRoot(t, 384<<20)
	l := &flagLoader{}
	p := newPath(t, root, l)
	rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Auto: true})
	if err != nil || rep.Armed || rep.Why == "" || l.calls != 0 {
		t.Errorf("auto arm without a handoff = %+v, %v; want nothing armed, a reason", rep, err)
	}
}

// TestCrashArmLoadMethod: under lockdown a segments arm is armed with
// kexec_file_load and says why (nothing is decompressed for it); without
// --load, direct mode takes the file method when the loader cannot call
// kexec_load.
func TestCrashArmLoadMethod(t *testing.T) {
	tests := []struct {
		name         string
		load         crashhandler.LoadMethod
		lockdown     bool
		wantFallback string
	}{
		{name: "segments under lockdown", load: crashhandler.LoadSegments, lockdown: true, wantFallback: "lockdown"},
		{name: "default with a loader without kexec_load", load: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im, _ := testimage.Update()
			_, mp := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			if tt.lockdown {
				d := filepath.Join(root, "sys/kernel/security")
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "lockdown"), []byte("none [integrity] confidentiality\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			l := &flagLoader{}
			p := newPath(t, root, l)
			rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect, Load: tt.load})
			if err != nil {
				t.Fatal(err)
			}
			st := rep.State
			if st.Load != crashhandler.LoadFile || l.calls != 1 || l.flags != 2 || !strings.Contains(st.LoadFallback, tt.wantFallback) || (tt.wantFallback == "") != (st.LoadFallback == "") {
				t.Errorf("load %q fallback %q, kexec_file_load calls %d flags %#x; want file, fallback naming %q", st.Load, st.LoadFallback, l.calls, l.flags, tt.wantFallback)
			}
			if rep.Image.Segments != nil {
				t.Errorf("the image was prepared for kexec_load: %+v", rep.Image.Segments)
			}
		})
	}
}

// TestCrashArm arms the crash path from a manifest: the crash image is the
// manifest's kernel with its initrd pieces and a handoff (reason crash, the
// next generation, the recorded memory map, the carried modules), loaded
// with KEXEC_FILE_ON_CRASH; disarming unloads it and restores the sysctls.
func TestCrashArm(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, mp := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	l := &flagLoader{}
	p := newPath(t, root, l)

	rep, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if !rep.Armed || rep.State.Mode != crashhandler.ModeDirect || rep.MemoryMapFrom != "firmware" {
		t.Errorf("Arm report: %+v", rep)
	}
	if l.flags != 2 /* KEXEC_FILE_ON_CRASH */ {
		t.Errorf("kexec_file_load flags %#x, want ON_CRASH", l.flags)
	}
	if !strings.Contains(l.cmdline, "fastreboot.crash=direct") || !strings.Contains(l.cmdline, "memmap=exactmap") {
		t.Errorf("crash cmdline %q lacks the direct marker or the memory map", l.cmdline)
	}
	if rep.Image.Reason != fastreboot.ReasonCrash || rep.Image.Generation != 2 || rep.Image.CarriedModules != len(m.Modules) {
		t.Errorf("crash image: reason %s generation %d carried %d, want crash 2 %d", rep.Image.Reason, rep.Image.Generation, rep.Image.CarriedModules, len(m.Modules))
	}
	h := handoffOf(t, l.initrd, rep.Image)
	if h.Crash == nil || h.Crash.Mode != crashhandler.ModeDirect || len(h.MemoryMap) == 0 {
		t.Errorf("crash handoff: crash %+v, memory map %v; want the crash mode and the memory map", h.Crash, h.MemoryMap)
	}
	if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "1" {
		t.Errorf("panic_on_oops = %s after arming, want 1", got)
	}

	st, err := p.Status()
	if err != nil || st.Mode != crashhandler.ModeDirect || st.MemoryMapRAM == 0 {
		t.Errorf("Status = %+v, %v", st, err)
	}
	if _, err := p.Disarm(ctx); err != nil {
		t.Fatalf("Disarm: %v", err)
	}
	if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
		t.Errorf("panic_on_oops = %s after disarming, want 0 restored", got)
	}
}

// TestCrashArmMinimalInitrd: InitrdMinimal arms a crash image whose initrd
// is the crash init piece (the given program as /init) and the handoff
// piece, sized smaller than the image's initrd; the handoff names the
// choice, and a two-stage crash kernel's Recover restages production with
// production's own initrd and a handoff that still names it (so the re-arm
// after the crash builds the minimal initramfs again). Direct mode refuses
// it with nothing loaded.
func TestCrashArmMinimalInitrd(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	prog := bytes.Repeat([]byte("static fastreboot binary "), 4000)
	l := &flagLoader{}
	p := newPathConfig(t, crashpath.Config{Root: root, CrashInit: writeExe(t, prog)}, l)

	if _, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect, Initrd: crashpath.InitrdMinimal}); err == nil ||
		!strings.Contains(err.Error(), "only for two-stage") || l.calls != 0 {
		t.Errorf("direct with the minimal initrd: %v, %d loads; want refused, nothing loaded", err, l.calls)
	}
	if _, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Initrd: "tiny"}); err == nil || !strings.Contains(err.Error(), `"tiny"`) {
		t.Errorf("initrd tiny: %v, want an error naming it", err)
	}

	image, err := p.Estimate(ctx, crashpath.EstimateOptions{Target: target(t, mp), Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdImage})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdMinimal})
	if err != nil {
		t.Fatalf("Arm InitrdMinimal: %v", err)
	}
	if rep.Initrd != crashpath.InitrdMinimal {
		t.Errorf("report initrd %q", rep.Initrd)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(l.initrd[:rep.Image.PiecesBytes])))
	if err != nil {
		t.Fatal(err)
	}
	var gotInit bool
	for _, r := range recs {
		if r.Name == fastreboot.CrashInitPath {
			b := make([]byte, r.FileSize)
			r.ReadAt(b, 0)
			gotInit = bytes.Equal(b, prog) && r.Mode == cpio.S_IFREG|0o755
		}
	}
	if !gotInit {
		t.Errorf("the crash initrd's first piece has no /init with the program: %v", recs)
	}
	if h := handoffOf(t, l.initrd, rep.Image); h.Crash == nil || h.Crash.Initrd != "minimal" || len(h.Carried) != len(h.Manifest.Modules) {
		t.Errorf("crash handoff: crash %+v, carried %d of %d modules", h.Crash, len(h.Carried), len(h.Manifest.Modules))
	}
	// The reload is production's image whatever the crash initrd holds;
	// the minimal initramfs's sizing counts it once less (kexec_load
	// reads the cache's copy in place, where kexec_file_load reads it
	// into kernel buffers first).
	page := func(n int64) int64 { return (n + 4095) &^ 4095 }
	if s, once := rep.State.Sizing, page(int64(len(im.Kernel.Data)))+page(image.Image.InitrdBytes); s.Reload != image.Sizing.Reload-once || s.Reload <= once {
		t.Errorf("minimal sizing %+v, image %+v: want the image's reload less the kernel and production's initrd (%d)", s, image.Sizing, once)
	}

	// The crash kernel: the handoff unpacked, Recover restages production.
	crash := crashRoot(t, 0)
	withCmdline(t, crash, "elfcorehdr=0x7f000000 "+l.cmdline)
	unpackHandoff(t, l.initrd, rep.Image, crash)
	prod := &flagLoader{}
	rr, err := crashpath.Recover(ctx, crashpath.Config{Root: crash, StateDir: t.TempDir(), MachineOptions: fastreboot.Options{
		Loader: prod, Probe: func() error { return errors.New("probe must not run in tests") },
	}}, crashpath.RecoverOptions{})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if !bytes.HasPrefix(prod.initrd, im.Initrds[0].Data) {
		t.Error("production was restaged without its own initrd pieces")
	}
	h := handoffOf(t, prod.initrd, rr.Staged)
	if h.Crash == nil || crashpath.Initrd(h.Crash.Initrd) != crashpath.InitrdMinimal {
		t.Errorf("production's handoff names crash %+v, want initrd minimal", h.Crash)
	}
	// This loader has no kexec_load: production is reloaded with
	// kexec_file_load, and the report says so.
	if rr.Staged.Load != fastreboot.LoadFile || !strings.Contains(rr.Staged.LoadFallback, "SegmentsLoader") ||
		!slices.ContainsFunc(rr.Warnings, func(w string) bool { return strings.HasPrefix(w, "production reloaded with kexec_file_load: ") }) {
		t.Errorf("reload without kexec_load: load %s, fallback %q, warnings %q; want kexec_file_load and a warning saying why",
			rr.Staged.Load, rr.Staged.LoadFallback, rr.Warnings)
	}

	// With kexec_load, production's compressed kernel is loaded as it
	// is: nothing decompressed, no kexec_file_load.
	if runtime.GOOS != "linux" || runtime.GOARCH != "amd64" {
		t.Skipf("the segments load method is x86-64 Linux only (%s/%s): the kexec_load reload is not tested", runtime.GOOS, runtime.GOARCH)
	}
	crash = crashRoot(t, 0)
	withCmdline(t, crash, "elfcorehdr=0x7f000000 "+l.cmdline)
	for rel, s := range map[string]string{
		"proc/iomem":                  "00100000-7ffdefff : System RAM\n",
		"sys/kernel/boot_params/data": string(make([]byte, 4096)),
	} {
		if err := os.MkdirAll(filepath.Join(crash, filepath.Dir(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(crash, rel), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	unpackHandoff(t, l.initrd, rep.Image, crash)
	seg := &segLoader{}
	rr, err = crashpath.Recover(ctx, crashpath.Config{Root: crash, StateDir: t.TempDir(), MachineOptions: fastreboot.Options{
		Loader: seg, Probe: func() error { return errors.New("probe must not run in tests") },
	}}, crashpath.RecoverOptions{})
	if err != nil {
		t.Fatalf("Recover with kexec_load: %v", err)
	}
	if s := rr.Staged.Segments; seg.loads != 1 || seg.calls != 0 || rr.Staged.Load != fastreboot.LoadSegments || s == nil || !s.Compressed || s.Decompressed || rr.Staged.LoadFallback != "" {
		t.Errorf("reload with kexec_load: %d kexec_loads, %d kexec_file_loads, load %s, segments %+v, fallback %q; want one kexec_load of the compressed kernel",
			seg.loads, seg.calls, rr.Staged.Load, s, rr.Staged.LoadFallback)
	}
	// The arming process could not locate the decompressed kernel in
	// physical memory (this fake root has no /proc/self/pagemap): the
	// crash stage says why it loaded the compressed kernel, and
	// production's handoff carries that with the evidence.
	if ev := rr.Evidence; ev.ProductionKernel != "compressed" || !strings.Contains(ev.ProductionKernelWhy, "does not locate production's decompressed kernel") {
		t.Errorf("evidence: production kernel %q (%q), want compressed, saying the handoff locates no ELF", ev.ProductionKernel, ev.ProductionKernelWhy)
	}
	if h := handoffOf(t, seg.initrd, rr.Staged); h.Crash == nil || h.Crash.Evidence == nil || h.Crash.Evidence.ProductionKernel != "compressed" || h.Crash.KernelELFPages != nil {
		t.Errorf("production's handoff crash %+v, want the evidence saying compressed and no page record", h.Crash)
	}
}

// segLoader is a flagLoader that also has kexec_load.
type segLoader struct {
	flagLoader
	loads int
}

func (l *segLoader) SegmentsLoad(entry uint64, segs []fastreboot.Segment) error {
	l.loads++
	for _, sg := range segs {
		if sg.Name == "initrd" {
			l.initrd = bytes.Clone(sg.Buf)
		}
	}
	return nil
}

// TestCrashInitrdDefault: an arm that names no crash initrd gets the
// minimal one in two-stage mode (also when it names no mode) and
// production's in direct mode, while a re-arm (Auto, or any arm without
// an Initrd in two-stage mode) keeps the choice the handoff records.
// Whatever was chosen is what the crash image's handoff names.
func TestCrashInitrdDefault(t *testing.T) {
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	for _, tc := range []struct {
		name string
		// handoffMode and handoffInitrd are what the previous
		// generation's handoff records ("": no handoff / not recorded).
		handoffMode   crashhandler.Mode
		handoffInitrd crashpath.Initrd
		opts          crashpath.ArmOptions
		want          crashpath.Initrd
	}{
		{name: "two-stage", opts: crashpath.ArmOptions{Mode: crashhandler.ModeTwoStage}, want: crashpath.InitrdMinimal},
		{name: "no mode: two-stage", want: crashpath.InitrdMinimal},
		{name: "direct", opts: crashpath.ArmOptions{Mode: crashhandler.ModeDirect}, want: crashpath.InitrdImage},
		{name: "two-stage, image named", opts: crashpath.ArmOptions{Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdImage}, want: crashpath.InitrdImage},
		{name: "auto keeps the handoff's image", handoffMode: crashhandler.ModeTwoStage, handoffInitrd: crashpath.InitrdImage,
			opts: crashpath.ArmOptions{Auto: true}, want: crashpath.InitrdImage},
		{name: "auto keeps the handoff's minimal", handoffMode: crashhandler.ModeTwoStage, handoffInitrd: crashpath.InitrdMinimal,
			opts: crashpath.ArmOptions{Auto: true}, want: crashpath.InitrdMinimal},
		{name: "auto, handoff names no initrd: the mode's default", handoffMode: crashhandler.ModeTwoStage,
			opts: crashpath.ArmOptions{Auto: true}, want: crashpath.InitrdMinimal},
		{name: "auto in direct mode", handoffMode: crashhandler.ModeDirect, handoffInitrd: crashpath.InitrdImage,
			opts: crashpath.ArmOptions{Auto: true}, want: crashpath.InitrdImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := crashRoot(t, 384<<20)
			if tc.handoffMode != "" {
				h := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: *im.Manifest(),
					Crash: &fastreboot.HandoffCrash{Mode: tc.handoffMode, Initrd: string(tc.handoffInitrd)}}
				b, err := json.Marshal(h)
				if err != nil {
					t.Fatal(err)
				}
				writeRootFile(t, root, fastreboot.HandoffFile, string(b))
			}
			l := &flagLoader{}
			p := newPath(t, root, l)
			opts := tc.opts
			opts.Target = target(t, mp)
			rep, err := p.Arm(context.Background(), opts)
			if err != nil || !rep.Armed {
				t.Fatalf("Arm(%+v) = %+v, %v; want armed", opts, rep, err)
			}
			h := handoffOf(t, l.initrd, rep.Image)
			var named crashpath.Initrd
			if h.Crash != nil {
				named = crashpath.Initrd(h.Crash.Initrd)
			}
			if rep.Initrd != tc.want || named != tc.want {
				t.Errorf("crash initrd: report %q, crash handoff %q; want %q", rep.Initrd, named, tc.want)
			}
		})
	}
}
