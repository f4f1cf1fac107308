package crashpath_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// TestCrashArmInheritsCrashkernel: the user's case. The system was cold
// booted with crashkernel= and the manifest has none; the crash image
// carries the running crashkernel= into the generation after the crash,
// in both modes, and a two-stage crash kernel's Recover restages
// production with it.
func TestCrashArmInheritsCrashkernel(t *testing.T) {
	ctx := context.Background()
	for _, mode := range []crashhandler.Mode{crashhandler.ModeTwoStage, crashhandler.ModeDirect} {
		t.Run(string(mode), func(t *testing.T) {
			im, _ := testimage.Update()
			_, mp := im.WriteTemp(t)
			root := crashRoot(t, 384<<20) // proc/cmdline: console=ttyS0 crashkernel=384M
			l := &flagLoader{}
			p := newPath(t, root, l)
			rep, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: mode})
			if err != nil {
				t.Fatalf("Arm: %v", err)
			}
			if w := rearmWarnings(rep.Warnings); len(w) != 0 {
				t.Errorf("re-arm warnings %q", w)
			}
			next := crashhandler.NextCmdline(l.cmdline, mode, rep.State.MemoryMap)
			ck, err := crashhandler.ParseCrashkernel(next, rep.State.MemoryMap.RAMBytes())
			if err != nil || ck.Size != 384<<20 {
				t.Errorf("the generation after a crash boots %q: crashkernel %+v, %v; want 384M", next, ck, err)
			}
			if mode == crashhandler.ModeDirect {
				return
			}

			// The crash kernel: the crash image's handoff unpacked, its
			// own command line (the kernel prepends elfcorehdr=), no
			// vmcore (the evidence is missing; Recover carries on).
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
			if !strings.Contains(rr.Cmdline, "crashkernel=384M") || prod.cmdline != rr.Cmdline || !strings.Contains(rr.Cmdline, "memmap=exactmap") {
				t.Errorf("production restaged with %q (loaded %q), want crashkernel=384M and the memory map", rr.Cmdline, prod.cmdline)
			}
		})
	}
}

// TestCrashArmNoRearm: a crash path whose next generation could not re-arm
// is refused with the manifest named, nothing loaded and no sysctl
// changed; AllowNoRearm arms it with a warning.
func TestCrashArmNoRearm(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name     string
		running  string
		manifest string
		mode     crashhandler.Mode
		text     []string
	}{
		{
			// The reservation does not come from this command line
			// (e.g. a boot loader entry edited since), so there is
			// nothing to inherit.
			name: "no crashkernel= anywhere", running: "console=ttyS0", manifest: "console=ttyS0 quiet",
			text: []string{"no crashkernel=", "add crashkernel=384M", "--allow-no-rearm"},
		},
		{
			name: "the manifest's own too small", running: "console=ttyS0 crashkernel=384M", manifest: "console=ttyS0 crashkernel=16M",
			text: []string{"crashkernel=16M", "less than", "crashkernel=384M"},
		},
		{
			name: "direct: the manifest's own too small", running: "console=ttyS0 crashkernel=384M", manifest: "crashkernel=1M",
			mode: crashhandler.ModeDirect, text: []string{"crashkernel=1M", "less than"},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im, _ := testimage.Update()
			im.Cmdline = tc.manifest
			_, mp := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			withCmdline(t, root, tc.running)
			l := &flagLoader{}
			p := newPath(t, root, l)
			_, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: tc.mode})
			if !errors.Is(err, crashhandler.ErrNoRearm) || !strings.Contains(err.Error(), mp) {
				t.Fatalf("Arm = %v, want ErrNoRearm naming %s", err, mp)
			}
			for _, s := range tc.text {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if l.calls != 0 || sysctl(t, root, crashhandler.SysctlPanicOnOops) != "0" {
				t.Errorf("refused arm: %d loads, panic_on_oops %s", l.calls, sysctl(t, root, crashhandler.SysctlPanicOnOops))
			}
			if st, _ := p.Status(); st.State != nil {
				t.Errorf("a state was recorded after a refused arm: %+v", st.State)
			}

			rep, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: tc.mode, AllowNoRearm: true})
			if err != nil {
				t.Fatalf("Arm AllowNoRearm: %v", err)
			}
			if w := rearmWarnings(rep.Warnings); !rep.Armed || len(w) != 1 || l.calls != 1 {
				t.Errorf("armed %v with warnings %q after %d loads", rep.Armed, rep.Warnings, l.calls)
			}
		})
	}
}

// TestCrashArmNoReservationMessage: a cold boot without crashkernel= at
// all fails on the reservation, and says which crashkernel= to add.
func TestCrashArmNoReservationMessage(t *testing.T) {
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	root := crashRoot(t, 0)
	withCmdline(t, root, "console=ttyS0")
	l := &flagLoader{}
	p := newPath(t, root, l)
	_, err := p.Arm(context.Background(), crashpath.ArmOptions{Target: target(t, mp)})
	if !errors.Is(err, crashhandler.ErrNoReservation) || errors.Is(err, crashhandler.ErrNoRearm) {
		t.Fatalf("Arm = %v, want ErrNoReservation only", err)
	}
	for _, s := range []string{"no crashkernel= reservation", "kexec_crash_size is 0", "add crashkernel="} {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not say %q", err, s)
		}
	}
	if l.calls != 0 {
		t.Errorf("%d loads", l.calls)
	}
}

// TestCrashEstimate: the estimate of a manifest builds the crash image as
// Arm does and loads nothing; once armed, the estimate without a manifest
// is the armed image's.
func TestCrashEstimate(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	root := crashRoot(t, 32<<20)
	l := &flagLoader{}
	p := newPath(t, root, l)

	if _, err := p.Estimate(ctx, crashpath.EstimateOptions{}); err == nil || !strings.Contains(err.Error(), "give the manifest") {
		t.Errorf("estimate with nothing armed on a cold boot = %v, want a request for the manifest", err)
	}
	est, err := p.Estimate(ctx, crashpath.EstimateOptions{Target: target(t, mp)})
	if err != nil {
		t.Fatal(err)
	}
	if est.From != "built" || est.Mode != crashhandler.ModeTwoStage || est.Fits || est.Sizing.Total <= 32<<20 ||
		est.Crashkernel != "crashkernel="+itoa(est.Sizing.Total>>20)+"M" || est.Image == nil || est.Image.Reason != fastreboot.ReasonCrash {
		t.Errorf("estimate of the manifest: %+v", est)
	}
	if len(est.Problems) != 1 || !strings.Contains(est.Problems[0], "reservation is 32 MiB") {
		t.Errorf("problems %q, want the reservation's", est.Problems)
	}
	if l.calls != 0 || sysctl(t, root, crashhandler.SysctlPanicOnOops) != "0" {
		t.Errorf("the estimate armed something: %d loads", l.calls)
	}

	// Enough room: arm, then estimate the armed image.
	if err := os.WriteFile(filepath.Join(root, "sys/kernel/kexec_crash_size"), []byte(itoa(384<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	armed, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp)})
	if err != nil {
		t.Fatal(err)
	}
	est, err = p.Estimate(ctx, crashpath.EstimateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if est.From != "armed" || est.Sizing != armed.State.Sizing || !est.Fits || len(est.Problems) != 0 || est.NextCrashkernel.Size != 384<<20 {
		t.Errorf("estimate of the armed image: %+v", est)
	}
	// Another mode than the armed one builds the running image, which a
	// cold boot does not know.
	if _, err := p.Estimate(ctx, crashpath.EstimateOptions{Mode: crashhandler.ModeDirect}); err == nil {
		t.Error("estimate of another mode on a cold boot without a manifest succeeded")
	}
	est, err = p.Estimate(ctx, crashpath.EstimateOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect})
	if err != nil || est.Mode != crashhandler.ModeDirect || est.Sizing.Total >= armed.State.Sizing.Total || !est.Fits {
		t.Errorf("direct estimate %+v, %v; want a smaller reservation that fits", est, err)
	}
}

// TestKeptRegionInherited: the system was cold booted with a kept region
// (memmap=64M!0x40000000) that the manifest does not name. Every image
// staged keeps it (ProductionManifest), and the crash image too, in both
// modes, so that the generation after a crash keeps it; in direct mode
// the word follows the memory map's memmap=exactmap, which would erase it.
func TestKeptRegionInherited(t *testing.T) {
	ctx := context.Background()
	const kept = "memmap=64M!0x40000000"
	for _, mode := range []crashhandler.Mode{crashhandler.ModeTwoStage, crashhandler.ModeDirect} {
		t.Run(string(mode), func(t *testing.T) {
			im, _ := testimage.Update()
			m, mp := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			withCmdline(t, root, "console=ttyS0 crashkernel=384M "+kept)
			l := &flagLoader{}
			p := newPath(t, root, l)
			if pm := p.ProductionManifest(m); !strings.Contains(pm.Cmdline, kept) {
				t.Errorf("production manifest's command line %q lacks %s", pm.Cmdline, kept)
			}
			own := *m
			own.Cmdline += " memmap=32M!0x80000000"
			if pm := p.ProductionManifest(&own); strings.Contains(pm.Cmdline, kept) {
				t.Errorf("a manifest with its own region got the running one too: %q", pm.Cmdline)
			}
			rep, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp), Mode: mode})
			if err != nil {
				t.Fatalf("Arm: %v", err)
			}
			next := crashhandler.NextCmdline(l.cmdline, mode, rep.State.MemoryMap)
			for name, line := range map[string]string{"crash": l.cmdline, "next": next} {
				i := strings.Index(line, kept)
				if i < 0 || i < strings.Index(line, "memmap=exactmap") || (mode == crashhandler.ModeDirect && !strings.Contains(line, "memmap=exactmap")) {
					t.Errorf("%s command line %q: want %s, after memmap=exactmap when there is one (always in direct mode)", name, line, kept)
				}
			}
		})
	}
}
