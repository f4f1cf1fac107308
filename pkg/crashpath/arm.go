package crashpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// Target names the image a crash image is built of: a manifest and where
// its modules not cached are read, or (Manifest nil) the image the running
// generation runs (Config.Current), served from the cache alone.
type Target struct {
	Manifest *bootimage.Manifest
	// Source reads the modules not cached; nil: none (they fail with
	// modcache.ErrNotCached).
	Source modcache.Source
	// Label names the manifest in messages (its file, say); "" means
	// image "<name>".
	Label string
	// Origin is the manifest's file and signed bytes, which the crash
	// image's handoff carries (fastreboot.BuildOptions.Origin); nil: none.
	Origin *fastreboot.ManifestOrigin
}

// ArmOptions say how to arm.
type ArmOptions struct {
	Target
	// Mode is the recovery shape; "" takes the mode the handoff names,
	// else two-stage.
	Mode crashhandler.Mode
	// Auto arms only if the handoff names a crash mode (the previous
	// generation was armed); otherwise Arm does nothing and says why.
	Auto bool
	// Append are extra words for the crash kernel's command line only.
	Append []string
	// PanicTimeout is the two-stage crash kernel's panic=N (0: default).
	PanicTimeout int
	// NoFaults leaves the fault-routing sysctls alone.
	NoFaults bool
	// AllowNoRearm arms even when the generation booted after a crash
	// could not re-arm (crashhandler.ErrNoRearm); the report warns.
	AllowNoRearm bool
	// Load is the arming system call (crashhandler.LoadSegments or
	// LoadFile); "" takes segments when the Machine's loader can call
	// kexec_load (the kernel's can), else file.
	Load crashhandler.LoadMethod
	// Initrd is what the crash image's initrd holds; "" takes, in
	// two-stage mode, the choice this generation last armed with or its
	// handoff names (fastreboot.HandoffCrash.Initrd), else the mode's default
	// (DefaultInitrd: minimal in two-stage mode, image in direct).
	// InitrdMinimal needs two-stage mode.
	Initrd Initrd
}

// ArmReport says what Arm did.
type ArmReport struct {
	// Armed is false only for an Auto arm with nothing to re-arm.
	Armed bool                `json:"armed"`
	Why   string              `json:"why,omitempty"`
	State *crashhandler.State `json:"state,omitempty"`
	// Image is the build of the crash image (its initrd carries the
	// modules and a handoff with reason crash).
	Image *fastreboot.StageReport `json:"image,omitempty"`
	// MemoryMapFrom is "handoff" or "firmware".
	MemoryMapFrom string `json:"memory_map_from,omitempty"`
	// Initrd is what the crash image's initrd holds.
	Initrd Initrd        `json:"initrd,omitempty"`
	Took   time.Duration `json:"took_ns"`
	// Decision is what a crash boots (rollback.State.Decide), when the
	// generation keeps a boot assessment and the running image was armed:
	// the same image (crash), last-known-good or the fallback (rollback,
	// Image then names it).
	Decision *rollback.Decision `json:"decision,omitempty"`
	// Warnings say what the armed path cannot do: problems the arm chose
	// to accept (AllowNoRearm), or no evidence of a crash of this
	// generation (no pstore backend).
	Warnings []string `json:"warnings,omitempty"`
}

// EstimateOptions name the image to estimate: a manifest, or none for the
// armed image (its recorded sizing), else the image this generation runs.
type EstimateOptions struct {
	Target
	// Mode is the recovery shape; "" takes the armed mode, else the one
	// the handoff names, else two-stage. A mode other than the armed one
	// builds the running image.
	Mode crashhandler.Mode
	// Load is the arming system call to estimate for, as in ArmOptions.
	Load crashhandler.LoadMethod
	// Initrd is the crash image's initrd to estimate for, as in
	// ArmOptions (a built image only: the armed image's estimate is what
	// it was armed with).
	Initrd Initrd
}

// EstimateReport is the reservation an image needs and the one there is
// (see crashhandler.Estimate).
type EstimateReport struct {
	crashhandler.Estimate
	// From is "armed" (the sizing recorded when the image was armed) or
	// "built" (the crash image built now, as Arm would, and not loaded).
	From string `json:"from"`
	// Image is the build of the crash image (From "built").
	Image *fastreboot.StageReport `json:"image,omitempty"`
	// Initrd is what the built crash image's initrd holds (From "built").
	Initrd Initrd `json:"initrd,omitempty"`
}

// Arm builds the crash image from the cache (the target's initrd pieces, or
// a minimal initramfs, plus a handoff with reason crash, the next
// generation, the recorded memory map and the carried modules) and arms it
// with crashhandler.Arm, which checks the reservation and the next
// generation's crashkernel= first. Nothing is armed if any step fails.
func (p *Path) Arm(ctx context.Context, o ArmOptions) (*ArmReport, error) {
	t0 := time.Now()
	mode := o.Mode
	if mode == "" {
		mode = p.handoffMode()
	}
	if o.Auto && mode == "" {
		return &ArmReport{Why: "the handoff names no crash mode: the previous generation was not armed"}, nil
	}
	if mode == "" {
		mode = crashhandler.ModeTwoStage
	}
	load := p.loadMethod(o.Load)
	initrd := o.Initrd
	if initrd == "" && mode == crashhandler.ModeTwoStage {
		// The previous generation's choice (a re-arm after a crash).
		initrd = p.armedInitrd()
	}
	defer p.lock()()
	target, reason, rb, d := p.crashTarget(o.Target)
	if d != nil && d.Action == rollback.ActionFirmware {
		return p.armFirmware(o, d, t0)
	}
	b, err := p.buildImage(ctx, target, mode, load, initrd, reason, rb)
	if err != nil {
		return nil, fmt.Errorf("crash arm: %w", err)
	}
	defer b.img.Close()
	copts := p.crashOptions(mode)
	copts.Cmdline = crashhandler.CmdlineOptions{MemoryMap: b.mm, ExtraWords: o.Append, PanicTimeout: o.PanicTimeout}
	copts.Faults.Disable = o.NoFaults
	copts.AllowNoRearm = o.AllowNoRearm
	copts.Load = load.method
	st, err := crashhandler.Arm(b.image(), copts)
	rep := &ArmReport{Armed: err == nil, State: st, Image: &b.img.Report, MemoryMapFrom: b.from, Initrd: b.initrd, Took: time.Since(t0), Decision: d}
	if err != nil {
		if errors.Is(err, crashhandler.ErrNoRearm) {
			return rep, fmt.Errorf("crash arm %s: %w (or arm anyway with --allow-no-rearm)", b.label, err)
		}
		return rep, fmt.Errorf("crash arm: %w", err)
	}
	if st != nil {
		rep.Warnings = st.Warnings
	}
	p.mu.Lock()
	p.initrd = b.initrd
	p.mu.Unlock()
	// The crash kernel keeps the pstore region of b.cmdline: in direct
	// mode it is the next production kernel, in two-stage mode it hands
	// the region's words on (ProductionCmdline keeps them).
	rep.Warnings = append(rep.Warnings, evidenceWarnings(p.cfg.Root)...)
	if _, werr := p.evidenceCmdline(b.cmdline, b.mm); werr != nil {
		rep.Warnings = append(rep.Warnings, "the crash image gets no pstore region: "+werr.Error())
	}
	for _, w := range rep.Warnings {
		p.log.Warn(w)
	}
	p.log.Info("crash path armed", "mode", mode, "load", st.Load, "load_fallback", st.LoadFallback, "image_bytes", st.ImageBytes, "reservation", st.ReservationBytes, "took", rep.Took)
	return rep, nil
}

// evidenceWarnings says what evidence a crash of the running generation
// would leave: none in direct mode without a pstore backend, or without
// crash_kexec_post_notifiers (the panic jumps before the log is dumped).
func evidenceWarnings(root string) []string {
	backend, err := crashhandler.PstoreBackend(root)
	switch {
	case err != nil:
		return []string{"evidence of a crash before the next fast reboot: unknown (" + err.Error() + "); two-stage reads /proc/vmcore"}
	case backend == "":
		return []string{"evidence of a crash before the next fast reboot: none in direct mode (no pstore backend in this generation); two-stage reads /proc/vmcore"}
	case !crashhandler.PostNotifiers(root):
		return []string{"evidence of a crash before the next fast reboot: none in direct mode (pstore backend " + backend +
			" registered, but crash_kexec_post_notifiers is off: the panic jumps to the crash image before the log is dumped); two-stage reads /proc/vmcore"}
	}
	return nil
}

// Estimate reports, like kdumpctl estimate, the crashkernel= an image
// needs (crashhandler.RequiredReservation with its breakdown), the current
// reservation and whether the image fits, and whether the generation booted
// after a crash could re-arm. Without a target manifest or initrd choice it
// reports the armed image from its recorded sizing; a manifest (or the
// running image, when nothing is armed or an initrd is named) is built
// exactly as Arm builds it, and nothing is loaded.
func (p *Path) Estimate(ctx context.Context, o EstimateOptions) (*EstimateReport, error) {
	if o.Manifest == nil && o.Initrd == "" {
		est, err := crashhandler.EstimateArmed(p.crashOptions(""))
		switch {
		case err == nil && (o.Mode == "" || o.Mode == est.Mode):
			return &EstimateReport{Estimate: *est, From: "armed"}, nil
		case err != nil && !errors.Is(err, crashhandler.ErrNotArmed):
			return nil, fmt.Errorf("crash estimate: %w", err)
		}
	}
	mode := o.Mode
	if mode == "" {
		mode = p.handoffMode()
	}
	if mode == "" {
		mode = crashhandler.ModeTwoStage
	}
	load := p.loadMethod(o.Load)
	defer p.lock()()
	target, reason, rb, d := p.crashTarget(o.Target)
	if d != nil && d.Action == rollback.ActionFirmware {
		return nil, fmt.Errorf("crash estimate: %s: %w", d.Why, ErrFirmwareOnly)
	}
	b, err := p.buildImage(ctx, target, mode, load, o.Initrd, reason, rb)
	if err != nil {
		return nil, fmt.Errorf("crash estimate: %w", err)
	}
	defer b.img.Close()
	copts := p.crashOptions(mode)
	copts.Load = load.method
	copts.Cmdline = crashhandler.CmdlineOptions{MemoryMap: b.mm}
	est, err := crashhandler.EstimateImage(b.image(), copts)
	if err != nil {
		return nil, fmt.Errorf("crash estimate %s: %w", b.label, err)
	}
	return &EstimateReport{Estimate: *est, From: "built", Image: &b.img.Report, Initrd: b.initrd}, nil
}

// build is a crash image built from the cache as Arm arms it.
type build struct {
	img *fastreboot.Image
	m   *bootimage.Manifest
	// cmdline is the production command line completed for the next
	// generation (ProductionManifest); the crash command line derives
	// from it.
	cmdline string
	// label names the manifest in messages.
	label string
	mm    memmap.Map
	from  string
	// initrd is what the image's initrd holds.
	initrd Initrd
}

func (b *build) image() crashhandler.Image {
	img := crashhandler.Image{
		Kernel: b.img.Kernel, Initrd: b.img.Initrd, Cmdline: b.cmdline, Manifest: b.m,
		InitrdUnpackedBytes: b.img.UnpackedBytes, Segments: b.img.Segments,
	}
	if b.initrd == InitrdMinimal {
		// The sizing of a minimal crash initramfs: production's initrd
		// is what the crash kernel reloads, and of the rootfs only the
		// crash init piece stays (the carried modules move into the
		// cache, which the reload releases but the kernel).
		img.ReloadInitrdBytes = b.img.ReloadInitrdBytes
		img.InitrdUnpackedBytes = b.img.Report.PiecesBytes
	}
	return img
}

// buildImage builds the crash image of a target, served from the cache:
// the manifest's initrd pieces (or the minimal initramfs) plus a handoff
// with reason crash, the next generation, the recorded memory map, the
// crash mode and the carried modules; with load.prepare, also prepared for
// kexec_load. The caller holds the build lock (an Evict must not drop the
// modules until the image is loaded) and closes b.img.
func (p *Path) buildImage(ctx context.Context, t Target, mode crashhandler.Mode, load loadMethod, initrd Initrd, reason fastreboot.Reason, rb *rollback.State) (*build, error) {
	if p.cfg.Machine == nil {
		return nil, errors.New("no module cache to build the crash image from (Config.Cache)")
	}
	initrd, err := ParseInitrd(string(initrd))
	if err != nil {
		return nil, err
	}
	if initrd == "" {
		initrd = DefaultInitrd(mode)
	}
	if initrd == InitrdMinimal && mode != crashhandler.ModeTwoStage {
		return nil, fmt.Errorf("crash initrd %s: only for %s mode (a %s crash kernel is production and runs its initrd)",
			initrd, crashhandler.ModeTwoStage, mode)
	}
	m, src := t.Manifest, t.Source
	if m == nil {
		if m = p.current(); m == nil {
			return nil, errors.New("this generation does not know its manifest (cold boot): give the manifest")
		}
	}
	if src == nil {
		src = cacheOnly{}
	}
	b := &build{m: m, label: t.Label, initrd: initrd}
	if b.label == "" {
		b.label = fmt.Sprintf("image %q", m.Name)
	}
	if b.mm, b.from, err = p.MemoryMap(); err != nil {
		return nil, fmt.Errorf("recorded memory map: %w", err)
	}
	// The crash handoff names this crash (reason crash, the generation);
	// an older crash's evidence would only be mistaken for it.
	crash := &fastreboot.HandoffCrash{Mode: mode, Initrd: string(initrd)}
	// The crash image is the production image: its command line is the
	// one a Stage would load (the running crashkernel= when the manifest
	// has none; the memory map words a restricted generation adds are
	// replaced by CrashCmdline).
	b.cmdline = p.ProductionManifest(m).Cmdline
	bo := fastreboot.BuildOptions{
		Reason: reason, Generation: p.state.Generation, Crash: crash, MemoryMap: b.mm, Segments: load.prepare,
		Origin: t.Origin, Rollback: rb,
	}
	if initrd == InitrdMinimal {
		exe, err := p.crashInit()
		if err != nil {
			return nil, err
		}
		defer exe.Close()
		fi, err := exe.Stat()
		if err != nil {
			return nil, fmt.Errorf("crash init program: %w", err)
		}
		bo.CrashInit = io.NewSectionReader(exe, 0, fi.Size())
	}
	// Like a segments Stage, the Machine waits for a background
	// derivation of the decompressed kernel instead of decompressing it a
	// second time alongside it.
	if b.img, err = p.cfg.Machine.BuildImage(ctx, m, src, bo); err != nil {
		return nil, err
	}
	return b, nil
}

// DefaultFirmwarePanic is the kernel.panic a firmware decision sets when
// the kernel would otherwise wait forever after a panic.
const DefaultFirmwarePanic = 10

// armFirmware carries out a firmware decision (a crash loop of the last
// good image): no crash image stays loaded, and a panic reboots through the
// firmware after kernel.panic seconds (set to o.PanicTimeout, else
// DefaultFirmwarePanic, when it is 0), whose boot loader picks the image.
// The report says so; Armed is false.
func (p *Path) armFirmware(o ArmOptions, d *rollback.Decision, t0 time.Time) (*ArmReport, error) {
	rep := &ArmReport{Decision: d}
	// No crash image, but faults still panic (as an armed crash path
	// routes them), and the panic goes through the firmware.
	copts := p.crashOptions("")
	copts.Faults.Disable = o.NoFaults
	if _, err := crashhandler.RouteToFirmware(copts); err != nil {
		return rep, fmt.Errorf("crash arm: %s: %w", d.Why, err)
	}
	secs := o.PanicTimeout
	if secs <= 0 {
		secs = DefaultFirmwarePanic
	}
	val, _, err := crashhandler.EnsurePanicReboot(p.cfg.Root, secs)
	if err != nil {
		return rep, fmt.Errorf("crash arm: %s: %w", d.Why, err)
	}
	rep.Why = fmt.Sprintf("%s: no crash image armed; a panic reboots through the firmware (kernel.panic=%s)", d.Why, val)
	rep.Took = time.Since(t0)
	p.log.Warn("crash path: firmware reboot on panic", "why", d.Why, "kernel.panic", val)
	return rep, nil
}

// crashTarget is what Arm builds for target t: when t is the running image
// (no manifest) and the generation keeps a boot assessment, what
// rollback.State.Decide says a crash now boots (the image, the handoff's
// reason, the state with the decision pending, the decision); otherwise t,
// reason crash and the state as it is.
func (p *Path) crashTarget(t Target) (Target, fastreboot.Reason, *rollback.State, *rollback.Decision) {
	if p.cfg.Rollback == nil {
		return t, fastreboot.ReasonCrash, nil, nil
	}
	rs := p.cfg.Rollback()
	if rs == nil {
		return t, fastreboot.ReasonCrash, nil, nil
	}
	if t.Manifest != nil {
		// A manifest given by the caller is armed as asked; its handoff
		// still carries the assessment.
		s := rs.Clone()
		return t, fastreboot.ReasonCrash, &s, nil
	}
	d := rs.Decide(p.state.Generation, p.cfg.Now())
	armed := rs.Armed(d)
	reason := fastreboot.ReasonCrash
	if d.Action == rollback.ActionRollback {
		m := d.Image.Manifest
		// Its origin (file, signed bytes) goes with it: the generation
		// it boots verifies its own image under a trust root.
		t = Target{Manifest: &m, Label: "last-known-good " + d.Image.Label(), Origin: fastreboot.ImageOrigin(d.Image)}
		reason = fastreboot.ReasonRollback
	}
	p.log.Info("crash path decision", "action", d.Action, "why", d.Why)
	return t, reason, &armed, &d
}

// crashInit opens the program a minimal crash initramfs runs as /init:
// Config.CrashInit, else the running binary (Root/proc/self/exe).
func (p *Path) crashInit() (*os.File, error) {
	path := p.cfg.CrashInit
	if path == "" {
		path = filepath.Join(p.cfg.Root, "proc/self/exe")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crash init program (the fastreboot binary): %w", err)
	}
	return f, nil
}

// loadMethod is how Arm loads the crash image: the method it asks
// crashhandler.Arm for, and whether the image is prepared for kexec_load.
type loadMethod struct {
	method  crashhandler.LoadMethod
	prepare bool
}

// loadMethod picks the crash image's load method: the one asked for, else
// segments (no digest pass and no decompression at panic time) when the
// Machine's loader can call kexec_load (the kernel's can), and file
// otherwise. The image is prepared for kexec_load only when lockdown allows
// it; otherwise crashhandler.Arm falls back to file and records why. A
// two-stage crash kernel still reloads production with the file method
// (Recover): deriving the decompressed kernel inside the crash kernel would
// cost more than the file method's jump.
func (p *Path) loadMethod(asked crashhandler.LoadMethod) loadMethod {
	method := asked
	if method == "" {
		method = crashhandler.LoadFile
		_, canLoad := p.cfg.MachineOptions.Loader.(fastreboot.CrashSegmentsLoader)
		if p.cfg.MachineOptions.Loader == nil || canLoad {
			method = crashhandler.LoadSegments
		}
	}
	return loadMethod{method: method, prepare: method == crashhandler.LoadSegments && crashhandler.KexecLoadForbidden(p.cfg.Root) == nil}
}
