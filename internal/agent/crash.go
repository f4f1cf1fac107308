package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// Keys of Handoff.Extra written by the crash path. Every handoff carries
// the memory map recorded while healthy and the armed crash mode, so each
// later generation can repeat the map and re-arm; the last crash's evidence
// is carried along too.
const (
	ExtraMemoryMap     = "memory_map"
	ExtraCrashMode     = "crash_mode"
	ExtraCrashEvidence = "crash_evidence"
	// ExtraCrashInitrd is the crash image's initrd choice (CrashInitrd),
	// so that a re-arm after a crash (crash arm --auto) builds the same.
	ExtraCrashInitrd = "crash_initrd"
)

// CrashEvidenceDir is where the evidence of the last crash is kept, under
// the state directory.
const CrashEvidenceDir = "crash"

// ErrNotCrashKernel: Recover ran in a kernel that was not started by the
// crash path (its command line has no fastreboot.crash= marker).
var ErrNotCrashKernel = errors.New("not a crash kernel (no fastreboot.crash= on the command line)")

// CrashInitrd is what the initrd of a two-stage crash image holds.
type CrashInitrd string

// The crash image's initrd choices.
const (
	// CrashInitrdImage: the production image's initrd pieces and the
	// handoff piece; the crash kernel runs production's init, which must
	// run `fastreboot crash recover` (direct mode's only choice: its crash
	// kernel is production).
	CrashInitrdImage CrashInitrd = "image"
	// CrashInitrdMinimal: only a piece whose /init is the fastreboot
	// binary itself (fastreboot.WriteCrashInitPiece) and the handoff
	// piece with the carried modules: the crash kernel runs fastreboot as
	// PID 1, which recovers and kexecs into production (two-stage mode's
	// default: it needs no cooperation from production's init and a
	// smaller reservation). Two-stage only: a direct crash kernel is
	// production and needs its initrd.
	CrashInitrdMinimal CrashInitrd = "minimal"
)

// DefaultCrashInitrd is the crash initrd a request that names none gets in
// mode: CrashInitrdMinimal in two-stage mode, CrashInitrdImage otherwise
// (a direct crash kernel is production and runs production's initrd).
func DefaultCrashInitrd(mode crashhandler.Mode) CrashInitrd {
	if mode == crashhandler.ModeTwoStage {
		return CrashInitrdMinimal
	}
	return CrashInitrdImage
}

// ParseCrashInitrd parses a --initrd value; "" stays "", the mode's
// default (DefaultCrashInitrd).
func ParseCrashInitrd(s string) (CrashInitrd, error) {
	switch c := CrashInitrd(s); c {
	case "", CrashInitrdImage, CrashInitrdMinimal:
		return c, nil
	}
	return "", fmt.Errorf("crash initrd %q: want %s or %s", s, CrashInitrdMinimal, CrashInitrdImage)
}

// CrashArmRequest says what to arm: a manifest file (or inline), or
// nothing for the image this generation runs, served from the cache.
type CrashArmRequest struct {
	Manifest string              `json:"manifest,omitempty"`
	Inline   *bootimage.Manifest `json:"inline,omitempty"`
	// Mode is the recovery shape; "" takes the mode the handoff names,
	// else two-stage.
	Mode crashhandler.Mode `json:"mode,omitempty"`
	// Auto arms only if the handoff names a crash mode (the previous
	// generation was armed); otherwise it does nothing and says so.
	Auto bool `json:"auto,omitempty"`
	// Append are extra words for the crash kernel's command line only.
	Append []string `json:"append,omitempty"`
	// PanicTimeout is the two-stage crash kernel's panic=N (0: default).
	PanicTimeout int `json:"panic_timeout,omitempty"`
	// NoFaults leaves the fault-routing sysctls alone.
	NoFaults bool `json:"no_faults,omitempty"`
	// AllowNoRearm arms even when the generation booted after a crash
	// could not re-arm (crashhandler.ErrNoRearm); the report warns.
	AllowNoRearm bool `json:"allow_no_rearm,omitempty"`
	// Load is the arming system call (crashhandler.LoadSegments or
	// LoadFile); "" takes segments where the loader can (see
	// crashLoadMethod).
	Load crashhandler.LoadMethod `json:"load,omitempty"`
	// Initrd is what the crash image's initrd holds; "" takes, in
	// two-stage mode, the choice this generation last armed with or its
	// handoff names (ExtraCrashInitrd), else the mode's default
	// (DefaultCrashInitrd: minimal in two-stage mode, image in direct).
	// CrashInitrdMinimal needs two-stage mode.
	Initrd CrashInitrd `json:"initrd,omitempty"`
}

// CrashArmReport says what CrashArm did.
type CrashArmReport struct {
	// Armed is false only for an Auto request with nothing to re-arm.
	Armed bool                `json:"armed"`
	Why   string              `json:"why,omitempty"`
	State *crashhandler.State `json:"state,omitempty"`
	// Image is the build of the crash image (its initrd carries the
	// modules and a handoff with reason crash).
	Image *fastreboot.StageReport `json:"image,omitempty"`
	// MemoryMapFrom is "handoff" or "firmware".
	MemoryMapFrom string `json:"memory_map_from,omitempty"`
	// Initrd is what the crash image's initrd holds.
	Initrd CrashInitrd   `json:"initrd,omitempty"`
	Took   time.Duration `json:"took_ns"`
	// Warnings say what the armed path cannot do: problems the request
	// chose to accept (AllowNoRearm), or no evidence of a crash of this
	// generation (no pstore backend).
	Warnings []string `json:"warnings,omitempty"`
}

// CrashEstimateRequest names the image to estimate: a manifest file (or
// inline), or neither for the armed image (its recorded sizing), else the
// image this generation runs, served from the cache.
type CrashEstimateRequest struct {
	Manifest string              `json:"manifest,omitempty"`
	Inline   *bootimage.Manifest `json:"inline,omitempty"`
	// Mode is the recovery shape; "" takes the armed mode, else the one
	// the handoff names, else two-stage. A mode other than the armed one
	// builds the running image.
	Mode crashhandler.Mode `json:"mode,omitempty"`
	// Load is the arming system call to estimate for, as in
	// CrashArmRequest.
	Load crashhandler.LoadMethod `json:"load,omitempty"`
	// Initrd is the crash image's initrd to estimate for, as in
	// CrashArmRequest (a built image only: the armed image's estimate is
	// what it was armed with).
	Initrd CrashInitrd `json:"initrd,omitempty"`
}

// CrashEstimateReport is the reservation an image needs and the one there
// is (see crashhandler.Estimate).
type CrashEstimateReport struct {
	crashhandler.Estimate
	// From is "armed" (the sizing recorded when the image was armed) or
	// "built" (the crash image built now, as crash arm would, and not
	// loaded).
	From string `json:"from"`
	// Image is the build of the crash image (From "built").
	Image *fastreboot.StageReport `json:"image,omitempty"`
	// Initrd is what the built crash image's initrd holds (From "built").
	Initrd CrashInitrd `json:"initrd,omitempty"`
}

// CrashStatusReport is the crash path of the running generation.
type CrashStatusReport struct {
	crashhandler.StatusReport
	// Generation and Reason of the running system.
	Generation int               `json:"generation"`
	Reason     fastreboot.Reason `json:"reason"`
	// MemoryMapRAM is the RAM of the recorded firmware memory map.
	MemoryMapRAM uint64 `json:"memory_map_ram_bytes,omitempty"`
	// Last is the evidence of the last crash, if any is known.
	Last *crashhandler.Evidence `json:"last,omitempty"`
}

// crashOptions returns the crashhandler options of this agent.
func (a *Agent) crashOptions(mode crashhandler.Mode) crashhandler.Options {
	o := crashhandler.Options{Root: a.opts.Root, StateDir: a.opts.StateDir, Logger: a.log, Mode: mode}
	if a.opts.Machine.Loader != nil {
		o.Loader = a.opts.Machine.Loader
	}
	return o
}

// handoff returns the handoff this generation started with (nil on a cold
// boot). The JSON stays in the rootfs after Resume.
func (a *Agent) handoff() *fastreboot.Handoff {
	h, err := fastreboot.ReadHandoff(a.opts.Root)
	if err != nil {
		return nil
	}
	return h
}

// memoryMap returns the firmware memory map recorded while healthy: from the
// handoff, else read from sysfs (a cold boot).
func (a *Agent) memoryMap() (crashhandler.MemoryMap, string, error) {
	if h := a.handoff(); h != nil {
		if raw, ok := h.Extra[ExtraMemoryMap]; ok {
			var mm crashhandler.MemoryMap
			if err := json.Unmarshal(raw, &mm); err != nil {
				return nil, "", fmt.Errorf("handoff %s: %w", ExtraMemoryMap, err)
			}
			if mm.RAMBytes() > 0 {
				return mm, "handoff", nil
			}
		}
	}
	mm, err := crashhandler.ReadFirmwareMemoryMap(a.opts.Root)
	return mm, "firmware", err
}

// restricted reports whether this kernel runs on a memory map narrower than
// the recorded one (it was kexec'd after a crash): every image it stages
// must then give the next kernel the recorded map on its command line.
func (a *Agent) restricted(mm crashhandler.MemoryMap) bool {
	fw, err := crashhandler.ReadFirmwareMemoryMap(a.opts.Root)
	return err == nil && mm.RAMBytes() > 0 && fw.RAMBytes() < mm.RAMBytes()
}

// productionManifest returns m, or a copy whose command line is completed
// for the next generation: the running system's crashkernel= unless the
// manifest sets its own (crashhandler.InheritCrashkernel: without it the
// next generation could not re-arm the crash path), and the recorded memory
// map when this kernel runs on a restricted one, and a pstore region for
// crash evidence (evidenceCmdline). Stage loads it; CrashArm
// derives the crash command line from it.
func (a *Agent) productionManifest(m *bootimage.Manifest) *bootimage.Manifest {
	c := *m
	c.Cmdline = crashhandler.InheritCrashkernel(c.Cmdline, a.runningCmdline())
	mm, _, err := a.memoryMap()
	if err == nil && a.restricted(mm) {
		c.Cmdline = crashhandler.ProductionCmdline(c.Cmdline, mm)
		a.log.Info("running on a restricted memory map: the next image gets the recorded one", "ram", mm.RAMBytes())
	}
	c.Cmdline, _ = a.evidenceCmdline(c.Cmdline, mm)
	if c.Cmdline == m.Cmdline {
		return m
	}
	return &c
}

// runningCmdline is Root/proc/cmdline ("" if unreadable).
func (a *Agent) runningCmdline() string {
	b, err := os.ReadFile(filepath.Join(a.opts.Root, "proc/cmdline"))
	if err != nil {
		a.log.Warn("the running command line is unreadable: no crashkernel= to inherit", "err", err)
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pstoreOptions returns the options of the pstore functions for root.
func pstoreOptions(opts Options, log *slog.Logger, mm crashhandler.MemoryMap) crashhandler.PstoreOptions {
	p := opts.Pstore
	p.Root, p.Logger, p.MemoryMap = opts.Root, log, mm
	return p
}

// evidenceCmdline completes an image's command line with a pstore region
// (crashhandler.EvidenceCmdline); when that fails the line stays as it was
// and the error is logged and returned.
func (a *Agent) evidenceCmdline(cmdline string, mm crashhandler.MemoryMap) (string, error) {
	out, err := crashhandler.EvidenceCmdline(cmdline, pstoreOptions(a.opts, a.log, mm))
	if err != nil {
		a.log.Warn("the next image gets no pstore region: a crash of it may leave no evidence in direct mode", "err", err)
	}
	return out, err
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

// LoadPstore loads ramoops when this kernel's command line names a ramoops
// region and no pstore backend is registered (crashhandler.LoadRamoops),
// so that a crash of this generation leaves its log there. The daemon
// calls it at start; its errors are warnings.
func (a *Agent) LoadPstore() (*crashhandler.RamoopsLoad, error) {
	return crashhandler.LoadRamoops(pstoreOptions(a.opts, a.log, nil))
}

// handoffExtra is what every handoff of this generation carries: the
// recorded memory map, the armed crash mode and the last crash's evidence.
func (a *Agent) handoffExtra() map[string]json.RawMessage {
	extra := map[string]json.RawMessage{}
	if mm, _, err := a.memoryMap(); err == nil {
		if b, err := json.Marshal(mm); err == nil {
			extra[ExtraMemoryMap] = b
		}
	}
	if st, err := crashhandler.ReadState(a.opts.StateDir); err == nil && st != nil {
		extra[ExtraCrashMode], _ = json.Marshal(st.Mode)
	} else if h := a.handoff(); h != nil && h.Extra[ExtraCrashMode] != nil {
		extra[ExtraCrashMode] = h.Extra[ExtraCrashMode]
	}
	if ev := LastCrash(a.opts.Root, a.opts.StateDir); ev != nil {
		extra[ExtraCrashEvidence], _ = json.Marshal(ev)
	}
	if c := a.armedInitrd(); c != "" {
		extra[ExtraCrashInitrd], _ = json.Marshal(c)
	}
	return extra
}

// armedInitrd is the crash initrd choice this generation armed with, else
// the one its handoff names ("" if neither).
func (a *Agent) armedInitrd() CrashInitrd {
	a.mu.Lock()
	c := a.crashInitrd
	a.mu.Unlock()
	if c != "" {
		return c
	}
	if h := a.handoff(); h != nil {
		if raw, ok := h.Extra[ExtraCrashInitrd]; ok && json.Unmarshal(raw, &c) == nil {
			if c, err := ParseCrashInitrd(string(c)); err == nil {
				return c
			}
		}
	}
	return ""
}

// handoffMode is the crash mode the handoff names ("" if none).
func (a *Agent) handoffMode() crashhandler.Mode {
	h := a.handoff()
	if h == nil {
		return ""
	}
	var m crashhandler.Mode
	if raw, ok := h.Extra[ExtraCrashMode]; ok && json.Unmarshal(raw, &m) == nil {
		return m
	}
	return ""
}

// CrashArm builds the crash image from the cache (the running manifest's
// initrd pieces plus a handoff with reason crash, the next generation, the
// recorded memory map and the carried modules) and arms it with
// crashhandler.Arm. Nothing is armed if any step fails.
func (a *Agent) CrashArm(ctx context.Context, req CrashArmRequest) (*CrashArmReport, error) {
	t0 := time.Now()
	mode := req.Mode
	if mode == "" {
		mode = a.handoffMode()
	}
	if req.Auto && mode == "" {
		return &CrashArmReport{Why: "the handoff names no crash mode: the previous generation was not armed"}, nil
	}
	if mode == "" {
		mode = crashhandler.ModeTwoStage
	}
	load := a.crashLoadMethod(req.Load)
	initrd := req.Initrd
	if initrd == "" && mode == crashhandler.ModeTwoStage {
		// The previous generation's choice (a re-arm after a crash).
		initrd = a.armedInitrd()
	}
	a.op.Lock()
	defer a.op.Unlock()
	b, err := a.buildCrashImage(ctx, req.Manifest, req.Inline, mode, load, initrd)
	if err != nil {
		return nil, fmt.Errorf("crash arm: %w", err)
	}
	defer b.img.Close()
	copts := a.crashOptions(mode)
	copts.Cmdline = crashhandler.CmdlineOptions{MemoryMap: b.mm, ExtraWords: req.Append, PanicTimeout: req.PanicTimeout}
	copts.Faults.Disable = req.NoFaults
	copts.AllowNoRearm = req.AllowNoRearm
	copts.Load = load.method
	st, err := crashhandler.Arm(b.image(), copts)
	rep := &CrashArmReport{Armed: err == nil, State: st, Image: &b.img.Report, MemoryMapFrom: b.from, Initrd: b.initrd, Took: time.Since(t0)}
	if err != nil {
		if errors.Is(err, crashhandler.ErrNoRearm) {
			return rep, fmt.Errorf("crash arm %s: %w (or arm anyway with --allow-no-rearm)", b.label, err)
		}
		return rep, fmt.Errorf("crash arm: %w", err)
	}
	if st != nil {
		rep.Warnings = st.Warnings
	}
	a.mu.Lock()
	a.crashInitrd = b.initrd
	a.mu.Unlock()
	// The crash kernel keeps the pstore region of b.cmdline: in direct
	// mode it is the next production kernel, in two-stage mode it hands
	// the region's words on (ProductionCmdline keeps them).
	rep.Warnings = append(rep.Warnings, evidenceWarnings(a.opts.Root)...)
	if _, werr := a.evidenceCmdline(b.cmdline, b.mm); werr != nil {
		rep.Warnings = append(rep.Warnings, "the crash image gets no pstore region: "+werr.Error())
	}
	for _, w := range rep.Warnings {
		a.log.Warn(w)
	}
	a.log.Info("crash path armed", "mode", mode, "load", st.Load, "load_fallback", st.LoadFallback, "image_bytes", st.ImageBytes, "reservation", st.ReservationBytes, "took", rep.Took)
	return rep, nil
}

// crashBuild is a crash image built from the cache as CrashArm arms it.
type crashBuild struct {
	img *fastreboot.Image
	m   *bootimage.Manifest
	// cmdline is the production command line completed for the next
	// generation (productionManifest); the crash command line derives
	// from it.
	cmdline string
	// label names the manifest in messages: its file, else its name.
	label string
	mm    crashhandler.MemoryMap
	from  string
	// initrd is what the image's initrd holds.
	initrd CrashInitrd
}

func (b *crashBuild) image() crashhandler.Image {
	img := crashhandler.Image{
		Kernel: b.img.Kernel, Initrd: b.img.Initrd, Cmdline: b.cmdline, Manifest: b.m,
		InitrdUnpackedBytes: b.img.UnpackedBytes, Segments: b.img.Segments,
	}
	if b.initrd == CrashInitrdMinimal {
		// The sizing of a minimal crash initramfs: production's initrd
		// is what the crash kernel reloads, and of the rootfs only the
		// crash init piece stays (the carried modules move into the
		// cache, which the reload releases but the kernel).
		img.ReloadInitrdBytes = b.img.ReloadInitrdBytes
		img.InitrdUnpackedBytes = b.img.Report.PiecesBytes
	}
	return img
}

// buildCrashImage builds the crash image of a manifest file, an inline
// manifest or (neither) the image this generation runs, served from the
// cache: the manifest's initrd pieces plus a handoff with reason crash, the
// next generation, the recorded memory map, the crash mode and the carried
// modules; with load.prepare, also prepared for kexec_load (like a segments
// Stage, the Machine waits for a background derivation of the decompressed
// kernel instead of decompressing it a second time alongside it). The
// caller holds op (an Evict must not drop the modules until the image is
// loaded) and closes b.img.
func (a *Agent) buildCrashImage(ctx context.Context, path string, inline *bootimage.Manifest, mode crashhandler.Mode, load crashLoad, initrd CrashInitrd) (*crashBuild, error) {
	initrd, err := ParseCrashInitrd(string(initrd))
	if err != nil {
		return nil, err
	}
	if initrd == "" {
		initrd = DefaultCrashInitrd(mode)
	}
	if initrd == CrashInitrdMinimal && mode != crashhandler.ModeTwoStage {
		return nil, fmt.Errorf("crash initrd %s: only for %s mode (a %s crash kernel is production and runs its initrd)",
			initrd, crashhandler.ModeTwoStage, mode)
	}
	var (
		m   *bootimage.Manifest
		src modcache.Source
	)
	if path != "" || inline != nil {
		if m, src, err = resolve(path, inline); err != nil {
			return nil, err
		}
	} else {
		a.mu.Lock()
		m = a.current
		a.mu.Unlock()
		if m == nil {
			return nil, errors.New("this generation does not know its manifest (cold boot): give the manifest")
		}
		src = noStorage{}
	}
	b := &crashBuild{m: m, label: path, initrd: initrd}
	if b.label == "" {
		b.label = fmt.Sprintf("image %q", m.Name)
	}
	if b.mm, b.from, err = a.memoryMap(); err != nil {
		return nil, fmt.Errorf("recorded memory map: %w", err)
	}
	extra := a.handoffExtra()
	extra[ExtraCrashMode], _ = json.Marshal(mode)
	extra[ExtraCrashInitrd], _ = json.Marshal(initrd)
	// The crash handoff names this crash (reason crash, the generation);
	// an older crash's evidence would only be mistaken for it.
	delete(extra, ExtraCrashEvidence)
	// The crash image is the production image: its command line is the
	// one Stage would load (the running crashkernel= when the manifest has
	// none; the memory map words a restricted generation adds are replaced
	// by CrashCmdline).
	b.cmdline = a.productionManifest(m).Cmdline
	bo := fastreboot.BuildOptions{
		Reason: fastreboot.ReasonCrash, Generation: a.state.Generation, HandoffExtra: extra, MemoryMap: b.mm, Segments: load.prepare,
	}
	if initrd == CrashInitrdMinimal {
		exe, err := a.crashInit()
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
	if b.img, err = a.mc.BuildImage(ctx, m, src, bo); err != nil {
		return nil, err
	}
	return b, nil
}

// crashInit opens the program a minimal crash initramfs runs as /init:
// Options.CrashInit, else the running binary (Root/proc/self/exe).
func (a *Agent) crashInit() (*os.File, error) {
	path := a.opts.CrashInit
	if path == "" {
		path = filepath.Join(a.opts.Root, "proc/self/exe")
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("crash init program (the fastreboot binary): %w", err)
	}
	return f, nil
}

// CrashEstimate implements Service: like kdumpctl estimate, it reports the
// crashkernel= an image needs (crashhandler.RequiredReservation with its
// breakdown), the current reservation and whether the image fits, and
// whether the generation booted after a crash could re-arm. Without a
// manifest or initrd choice it reports the armed image from its recorded
// sizing; a manifest (or the running image, when nothing is armed or an
// initrd is named) is built exactly as CrashArm builds it, and nothing is
// loaded.
func (a *Agent) CrashEstimate(ctx context.Context, req CrashEstimateRequest) (*CrashEstimateReport, error) {
	if req.Manifest == "" && req.Inline == nil && req.Initrd == "" {
		est, err := crashhandler.EstimateArmed(a.crashOptions(""))
		switch {
		case err == nil && (req.Mode == "" || req.Mode == est.Mode):
			return &CrashEstimateReport{Estimate: *est, From: "armed"}, nil
		case err != nil && !errors.Is(err, crashhandler.ErrNotArmed):
			return nil, fmt.Errorf("crash estimate: %w", err)
		}
	}
	mode := req.Mode
	if mode == "" {
		mode = a.handoffMode()
	}
	if mode == "" {
		mode = crashhandler.ModeTwoStage
	}
	load := a.crashLoadMethod(req.Load)
	a.op.Lock()
	defer a.op.Unlock()
	b, err := a.buildCrashImage(ctx, req.Manifest, req.Inline, mode, load, req.Initrd)
	if err != nil {
		return nil, fmt.Errorf("crash estimate: %w", err)
	}
	defer b.img.Close()
	copts := a.crashOptions(mode)
	copts.Load = load.method
	copts.Cmdline = crashhandler.CmdlineOptions{MemoryMap: b.mm}
	est, err := crashhandler.EstimateImage(b.image(), copts)
	if err != nil {
		return nil, fmt.Errorf("crash estimate %s: %w", b.label, err)
	}
	return &CrashEstimateReport{Estimate: *est, From: "built", Image: &b.img.Report, Initrd: b.initrd}, nil
}

// crashLoad is how CrashArm loads the crash image: the method it asks
// crashhandler.Arm for, and whether the image is prepared for kexec_load.
type crashLoad struct {
	method  crashhandler.LoadMethod
	prepare bool
}

// crashLoadMethod picks the crash image's load method: the one asked for,
// else segments (no digest pass and no decompression at panic time) when
// the Machine's loader can call kexec_load (the real one can), and file
// otherwise. The image is prepared for kexec_load only when lockdown
// allows it; otherwise crashhandler.Arm falls back to file and records
// why. A two-stage crash kernel still reloads production with the file
// method (Recover): deriving the decompressed kernel inside the crash
// kernel would cost more than the file method's jump.
func (a *Agent) crashLoadMethod(asked crashhandler.LoadMethod) crashLoad {
	method := asked
	if method == "" {
		method = crashhandler.LoadFile
		_, canLoad := a.opts.Machine.Loader.(fastreboot.CrashSegmentsLoader)
		if a.opts.Machine.Loader == nil || canLoad {
			method = crashhandler.LoadSegments
		}
	}
	return crashLoad{method: method, prepare: method == crashhandler.LoadSegments && crashhandler.KexecLoadForbidden(a.opts.Root) == nil}
}

// CrashDisarm unloads the crash image and restores the sysctls.
func (a *Agent) CrashDisarm(ctx context.Context) (*CrashStatusReport, error) {
	if err := crashhandler.Disarm(a.crashOptions("")); err != nil {
		return nil, fmt.Errorf("crash disarm: %w", err)
	}
	return a.CrashStatus(ctx)
}

// CrashStatus reports the crash path.
func (a *Agent) CrashStatus(ctx context.Context) (*CrashStatusReport, error) {
	return CrashStatusOf(a.opts.Root, a.opts.StateDir, a.state)
}

// CrashStatusOf reports the crash path without an agent (root and state
// directory as the agent's options name them; st may be nil).
func CrashStatusOf(root, stateDir string, st *fastreboot.State) (*CrashStatusReport, error) {
	sr, err := crashhandler.Status(crashhandler.Options{Root: root, StateDir: stateDir})
	rep := &CrashStatusReport{StatusReport: sr, Generation: 1, Reason: fastreboot.ReasonCold}
	if st == nil {
		st, _ = fastreboot.LoadState(stateDir)
	}
	if st != nil {
		rep.Generation, rep.Reason = st.Generation, st.Reason
	}
	if sr.State != nil {
		rep.MemoryMapRAM = sr.State.MemoryMap.RAMBytes()
	}
	rep.Last = LastCrash(root, stateDir)
	return rep, err
}

// LastCrash returns the evidence of the last crash this system recovered
// from: the one saved in this generation's state directory, else the one
// the handoff carried; nil if none.
//
// A generation started by the crash path (its handoff says reason crash)
// always has one, so that `crash last` never contradicts `status`: when
// nothing was saved (crash recover did not run, or could not save) and the
// handoff carries no evidence of this crash, it returns a record of what
// the handoff says (the crashed generation, the mode) with the time this
// kernel booted and a problem saying that no evidence was saved.
func LastCrash(root, stateDir string) *crashhandler.Evidence {
	if ev, err := crashhandler.ReadSavedEvidence(filepath.Join(stateDir, CrashEvidenceDir)); err == nil {
		return ev
	}
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		return nil
	}
	crashed := h.Reason == fastreboot.ReasonCrash
	if raw, ok := h.Extra[ExtraCrashEvidence]; ok {
		var ev crashhandler.Evidence
		// Evidence of an earlier crash is not this crash's.
		if json.Unmarshal(raw, &ev) == nil && (!crashed || ev.Generation == 0 || ev.Generation == h.Generation-1) {
			return &ev
		}
	}
	if !crashed {
		return nil
	}
	var mode crashhandler.Mode
	if raw, ok := h.Extra[ExtraCrashMode]; ok {
		_ = json.Unmarshal(raw, &mode)
	}
	return unrecordedCrash(root, max(h.Generation-1, 1), mode,
		"no evidence of this crash was saved (crash recover did not run in the crash kernel, or could not save it)")
}

// unrecordedCrash is the record of a crash whose evidence could not be
// read: the crashed generation, the mode and, as its time, when this
// kernel booted.
func unrecordedCrash(root string, generation int, mode crashhandler.Mode, problems ...string) *crashhandler.Evidence {
	return &crashhandler.Evidence{
		Time: bootTime(root), CPU: -1, Generation: generation, Mode: mode,
		Log: []string{}, Problems: problems,
	}
}

// bootTime is when the running kernel booted: now minus Root/proc/uptime
// (now if that cannot be read), to the second.
func bootTime(root string) time.Time {
	now := time.Now().UTC()
	b, err := os.ReadFile(filepath.Join(root, "proc/uptime"))
	if err != nil {
		return now.Truncate(time.Second)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return now.Truncate(time.Second)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil || up < 0 {
		return now.Truncate(time.Second)
	}
	return now.Add(-time.Duration(up * float64(time.Second))).Truncate(time.Second)
}

// RecoverOptions configure Recover beyond the agent's Options (whose Root
// and StateDir it uses: the evidence goes to StateDir/crash).
type RecoverOptions struct {
	// EvidenceDir, if set, also receives evidence.json and log.txt.
	EvidenceDir string
}

// RecoverReport says what the crash stage did.
type RecoverReport struct {
	Mode     crashhandler.Mode      `json:"mode"`
	Evidence *crashhandler.Evidence `json:"evidence,omitempty"`
	// EvidenceFrom is "vmcore" or "pstore" ("" when none could be read:
	// Evidence then records only the crash itself).
	EvidenceFrom string `json:"evidence_from,omitempty"`
	// EvidenceError says why no evidence could be read.
	EvidenceError string `json:"evidence_error,omitempty"`
	// PstoreBackend is the pstore backend registered when the evidence
	// was read ("" if none).
	PstoreBackend string `json:"pstore_backend,omitempty"`
	// Warnings are what went wrong without stopping the recovery: loading
	// ramoops, mounting pstore, saving or erasing.
	Warnings []string `json:"warnings,omitempty"`
	// MemoryMapCheck is the cross-check of the recorded map against the
	// vmcore's RAM segments ("ok" or the problem).
	MemoryMapCheck string `json:"memory_map_check,omitempty"`
	// Staged is the production image staged by a two-stage crash kernel;
	// nil in direct mode (this kernel is production).
	Staged *fastreboot.StageReport `json:"staged,omitempty"`
	// Cmdline is the production command line staged.
	Cmdline      string        `json:"cmdline,omitempty"`
	EvidenceAt   time.Duration `json:"evidence_ns"`
	Took         time.Duration `json:"took_ns"`
	KernelUptime string        `json:"uptime,omitempty"`
}

// Recover runs the crash stage in a kernel the crash path started: it reads
// the crashed kernel's evidence from /proc/vmcore or pstore and saves it,
// first thing (in direct mode the crashed kernel's memory is free RAM now).
// Before reading it loads ramoops when the command line names a region and
// no pstore backend is registered, and mounts pstore on /sys/fs/pstore when
// a backend is registered and pstore is not mounted (failures are
// RecoverReport.Warnings). A crash is always recorded: when no evidence
// can be read, the record says when this kernel booted, the mode, the
// crashed generation (from the handoff) and why nothing was read. pstore
// is erased only once the record is saved. In
// two-stage mode it then rehydrates the cache from the handoff, stages the
// production image with ProductionCmdline (the crash-only words removed,
// the recorded memory map added) and a handoff carrying the evidence, ready
// for a normal kexec (the caller reboots). Generation numbering: the crash
// stage is not a generation; production keeps the number the crash handoff
// gave.
func Recover(ctx context.Context, opts Options, ro RecoverOptions) (*RecoverReport, error) {
	t0 := time.Now()
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.StateDir == "" {
		opts.StateDir = fastreboot.DefaultStateDir
	}
	cmdline, err := os.ReadFile(filepath.Join(opts.Root, "proc/cmdline"))
	if err != nil {
		return nil, fmt.Errorf("crash recover: %w", err)
	}
	mode, ok := crashhandler.CrashModeOf(strings.TrimSpace(string(cmdline)))
	if !ok {
		return nil, fmt.Errorf("crash recover: %w", ErrNotCrashKernel)
	}
	rep := &RecoverReport{Mode: mode}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	// The crash image's handoff says reason crash and the generation
	// after the one that crashed.
	crashed := 0
	if h, err := fastreboot.ReadHandoff(opts.Root); err == nil && h.Reason == fastreboot.ReasonCrash {
		crashed = max(h.Generation-1, 1)
	}
	rep.PstoreBackend, rep.Warnings = preparePstore(opts, log)
	ev, from, everr := collectCrashEvidence(crashhandler.EvidenceOptions{Root: opts.Root}, mode)
	rep.EvidenceFrom = from
	rep.EvidenceAt = time.Since(t0)
	if everr != nil {
		rep.EvidenceError = everr.Error()
		ev = unrecordedCrash(opts.Root, crashed, mode, "no evidence of the crashed kernel could be read (the time is when the crash kernel booted): "+everr.Error())
	}
	ev.Generation, ev.Mode, ev.Source = crashed, mode, from
	rep.Evidence = ev
	saveErr := ev.Save(filepath.Join(opts.StateDir, CrashEvidenceDir))
	if saveErr != nil {
		rep.Warnings = append(rep.Warnings, saveErr.Error())
	}
	if ro.EvidenceDir != "" {
		if err := ev.Save(ro.EvidenceDir); err != nil {
			return rep, fmt.Errorf("crash recover: %w", err)
		}
	}
	// pstore is erased only now that its records are saved: the next
	// crash's dump must not mix with this one's.
	if saveErr == nil && rep.PstoreBackend != "" {
		if err := crashhandler.ErasePstore(opts.Root); err != nil && from == "pstore" {
			rep.Warnings = append(rep.Warnings, err.Error())
		}
	}
	for _, w := range rep.Warnings {
		log.Warn("crash recover", "warning", w)
	}
	if mode == crashhandler.ModeDirect {
		rep.Took = time.Since(t0)
		return rep, nil
	}

	opts.Resume = true
	a, err := New(ctx, opts)
	if err != nil {
		return rep, fmt.Errorf("crash recover: %w", err)
	}
	defer a.Close()
	mm, _, err := a.memoryMap()
	if err != nil {
		return rep, fmt.Errorf("crash recover: recorded memory map: %w", err)
	}
	if f, err := os.Open(filepath.Join(opts.Root, "proc/vmcore")); err == nil {
		if segs, err := crashhandler.ReadVmcoreSegments(f); err == nil {
			rep.MemoryMapCheck = "ok"
			if err := crashhandler.CheckMemoryMap(mm, segs); err != nil {
				rep.MemoryMapCheck = err.Error()
			}
		}
		f.Close()
	}
	m := a.current
	if m == nil {
		return rep, errors.New("crash recover: the handoff names no manifest")
	}
	prod := *m
	// InheritCrashkernel is a safety net: ProductionCmdline restores the
	// crashkernel= CrashCmdline saved.
	running := strings.TrimSpace(string(cmdline))
	prod.Cmdline = crashhandler.InheritCrashkernel(crashhandler.ProductionCmdline(running, mm), running)
	rep.Cmdline = prod.Cmdline
	extra := a.handoffExtra()
	extra[ExtraCrashMode], _ = json.Marshal(mode)
	extra[ExtraCrashEvidence], _ = json.Marshal(ev)
	so := fastreboot.StageOptions{
		Reason: fastreboot.ReasonCrash, Generation: max(a.state.Generation-1, 1), HandoffExtra: extra, MemoryMap: mm,
		// Production must bring back the CPUs of the kernel that
		// crashed, not the one CPU this stage runs on.
		CPURecord: a.state.CPURecord,
		// Staging production is the cache's last use in the crash
		// kernel: once the initrd is assembled it holds every module,
		// and the cache's copies would only take reservation while
		// kexec_file_load reads the image in (see
		// crashhandler.RequiredReservation).
		ReleaseCache: true,
	}
	staged, err := a.mc.Stage(ctx, &prod, noStorage{}, so)
	rep.Staged = &staged
	rep.Took = time.Since(t0)
	if err != nil {
		return rep, fmt.Errorf("crash recover: staging production: %w", err)
	}
	return rep, nil
}

// preparePstore makes the crashed kernel's pstore records readable: it
// loads ramoops when the command line names a region and no backend is
// registered, then mounts pstore if a backend is registered (without one
// there is nothing to read). It returns the backend and what failed.
func preparePstore(opts Options, log *slog.Logger) (string, []string) {
	po := pstoreOptions(opts, log, nil)
	var warnings []string
	if _, err := crashhandler.LoadRamoops(po); err != nil {
		warnings = append(warnings, err.Error())
	}
	backend, err := crashhandler.PstoreBackend(opts.Root)
	if err != nil {
		return "", append(warnings, err.Error())
	}
	if backend == "" {
		return "", warnings
	}
	if _, err := crashhandler.MountPstore(po); err != nil {
		warnings = append(warnings, err.Error())
	}
	return backend, warnings
}

// The crash path's API paths.
const (
	pathCrashArm      = "/v1/crash/arm"
	pathCrashDisarm   = "/v1/crash/disarm"
	pathCrashStatus   = "/v1/crash/status"
	pathCrashEstimate = "/v1/crash/estimate"
)

func crashRoutes(mux *http.ServeMux, s Service) {
	mux.Handle("POST "+pathCrashArm, handle(s.CrashArm))
	mux.Handle("POST "+pathCrashDisarm, handle(func(ctx context.Context, _ empty) (*CrashStatusReport, error) { return s.CrashDisarm(ctx) }))
	mux.Handle("POST "+pathCrashStatus, handle(func(ctx context.Context, _ empty) (*CrashStatusReport, error) { return s.CrashStatus(ctx) }))
	mux.Handle("POST "+pathCrashEstimate, handle(s.CrashEstimate))
}

// CrashArm implements Service.
func (c *Client) CrashArm(ctx context.Context, req CrashArmRequest) (*CrashArmReport, error) {
	return call[CrashArmReport](ctx, c, pathCrashArm, req)
}

// CrashDisarm implements Service.
func (c *Client) CrashDisarm(ctx context.Context) (*CrashStatusReport, error) {
	return call[CrashStatusReport](ctx, c, pathCrashDisarm, empty{})
}

// CrashStatus implements Service.
func (c *Client) CrashStatus(ctx context.Context) (*CrashStatusReport, error) {
	return call[CrashStatusReport](ctx, c, pathCrashStatus, empty{})
}

// CrashEstimate implements Service.
func (c *Client) CrashEstimate(ctx context.Context, req CrashEstimateRequest) (*CrashEstimateReport, error) {
	return call[CrashEstimateReport](ctx, c, pathCrashEstimate, req)
}

// evidenceSource is one place the crashed kernel's evidence can be read.
type evidenceSource struct {
	name string
	read func(crashhandler.EvidenceOptions) (*crashhandler.Evidence, error)
}

// collectCrashEvidence reads the crashed kernel's evidence and says where it
// came from ("vmcore" or "pstore"). Two-stage reads /proc/vmcore first.
// Direct mode reads pstore first: the crashed kernel's memory is this
// kernel's RAM, so even a vmcore that opens can hold a log already
// overwritten (seen in a crash soak: the printk ring's descriptor pointer
// read back as 0). Either way the other source is tried when the first
// fails or finds no panic line; with no panic line anywhere, the first
// evidence read is returned with the problems of both.
func collectCrashEvidence(opts crashhandler.EvidenceOptions, mode crashhandler.Mode) (*crashhandler.Evidence, string, error) {
	sources := []evidenceSource{{"vmcore", crashhandler.CollectEvidence}, {"pstore", crashhandler.CollectPstoreEvidence}}
	if mode == crashhandler.ModeDirect {
		sources[0], sources[1] = sources[1], sources[0]
	}
	var (
		first     *crashhandler.Evidence
		firstFrom string
		problems  []string
		errs      []error
	)
	for _, src := range sources {
		ev, err := src.read(opts)
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", src.name, err))
			problems = append(problems, src.name+": "+err.Error())
			continue
		}
		if ev.Reason != "" {
			ev.Problems = append(ev.Problems, problems...)
			return ev, src.name, nil
		}
		problems = append(problems, src.name+": no panic line in the log")
		if first == nil {
			first, firstFrom = ev, src.name
		}
	}
	if first != nil {
		first.Problems = append(first.Problems, problems...)
		return first, firstFrom, nil
	}
	return nil, "", errors.Join(errs...)
}
