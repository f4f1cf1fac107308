package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
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
)

// CrashEvidenceDir is where the evidence of the last crash is kept, under
// the state directory.
const CrashEvidenceDir = "crash"

// ErrNotCrashKernel: Recover ran in a kernel that was not started by the
// crash path (its command line has no fastreboot.crash= marker).
var ErrNotCrashKernel = errors.New("not a crash kernel (no fastreboot.crash= on the command line)")

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
	// Load is the arming system call (crashhandler.LoadSegments or
	// LoadFile); "" takes segments where the loader can (see
	// crashLoadMethod).
	Load crashhandler.LoadMethod `json:"load,omitempty"`
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
	MemoryMapFrom string        `json:"memory_map_from,omitempty"`
	Took          time.Duration `json:"took_ns"`
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

// productionManifest returns m, or a copy whose command line carries the
// recorded memory map when this kernel runs on a restricted one.
func (a *Agent) productionManifest(m *bootimage.Manifest) *bootimage.Manifest {
	mm, _, err := a.memoryMap()
	if err != nil || !a.restricted(mm) {
		return m
	}
	c := *m
	c.Cmdline = crashhandler.ProductionCmdline(m.Cmdline, mm)
	a.log.Info("running on a restricted memory map: the next image gets the recorded one", "ram", mm.RAMBytes())
	return &c
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
	return extra
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
	var (
		m   *bootimage.Manifest
		src modcache.Source
		err error
	)
	if req.Manifest != "" || req.Inline != nil {
		if m, src, err = resolve(req.Manifest, req.Inline); err != nil {
			return nil, fmt.Errorf("crash arm: %w", err)
		}
	} else {
		a.mu.Lock()
		m = a.current
		a.mu.Unlock()
		if m == nil {
			return nil, errors.New("crash arm: this generation does not know its manifest (cold boot): give the manifest to arm")
		}
		src = noStorage{}
	}
	mm, from, err := a.memoryMap()
	if err != nil {
		return nil, fmt.Errorf("crash arm: recorded memory map: %w", err)
	}
	load := a.crashLoadMethod(req.Load)
	if load.prepare {
		// Like a segments Stage, wait for the background derivation of
		// the decompressed kernel instead of decompressing it a second
		// time alongside it.
		a.elfMu.Lock()
		defer a.elfMu.Unlock()
	}
	a.stageMu.Lock()
	defer a.stageMu.Unlock()
	extra := a.handoffExtra()
	extra[ExtraCrashMode], _ = json.Marshal(mode)
	mopts := a.opts.Machine
	mopts.Root, mopts.Logger, mopts.Generation = a.opts.Root, a.log, a.state.Generation
	mopts.HandoffExtra = extra
	mopts.MemoryMap, mopts.StateDir = mm, a.opts.StateDir
	// The crash image is the production image: its command line is the
	// manifest's, without the memory map words a restricted generation
	// added (CrashCmdline puts them back for direct mode).
	img, err := fastreboot.New(a.cache, mopts).BuildImage(ctx, m, src, fastreboot.BuildOptions{Reason: fastreboot.ReasonCrash, Segments: load.prepare})
	if err != nil {
		return nil, fmt.Errorf("crash arm: %w", err)
	}
	defer img.Close()
	copts := a.crashOptions(mode)
	copts.Load = load.method
	copts.Cmdline = crashhandler.CmdlineOptions{MemoryMap: mm, ExtraWords: req.Append, PanicTimeout: req.PanicTimeout}
	copts.Faults.Disable = req.NoFaults
	st, err := crashhandler.Arm(crashhandler.Image{
		Kernel: img.Kernel, Initrd: img.Initrd, Cmdline: m.Cmdline, Manifest: m,
		InitrdUnpackedBytes: img.UnpackedBytes, Segments: img.Segments,
	}, copts)
	rep := &CrashArmReport{Armed: err == nil, State: st, Image: &img.Report, MemoryMapFrom: from, Took: time.Since(t0)}
	if err != nil {
		return rep, fmt.Errorf("crash arm: %w", err)
	}
	a.log.Info("crash path armed", "mode", mode, "load", st.Load, "load_fallback", st.LoadFallback, "image_bytes", st.ImageBytes, "reservation", st.ReservationBytes, "took", rep.Took)
	return rep, nil
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
func LastCrash(root, stateDir string) *crashhandler.Evidence {
	if ev, err := crashhandler.ReadSavedEvidence(filepath.Join(stateDir, CrashEvidenceDir)); err == nil {
		return ev
	}
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		return nil
	}
	raw, ok := h.Extra[ExtraCrashEvidence]
	if !ok {
		return nil
	}
	var ev crashhandler.Evidence
	if json.Unmarshal(raw, &ev) != nil {
		return nil
	}
	return &ev
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
	// EvidenceFrom is "vmcore" or "pstore".
	EvidenceFrom string `json:"evidence_from,omitempty"`
	// EvidenceError says why no evidence could be read.
	EvidenceError string `json:"evidence_error,omitempty"`
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
// the crashed kernel's evidence from /proc/vmcore and saves it, first thing
// (in direct mode the crashed kernel's memory is free RAM now). In
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
	ev, from, everr := collectCrashEvidence(crashhandler.EvidenceOptions{Root: opts.Root}, mode)
	rep.EvidenceFrom = from
	if from == "pstore" {
		if err := crashhandler.ErasePstore(opts.Root); err != nil {
			ev.Problems = append(ev.Problems, err.Error())
		}
	}
	rep.EvidenceAt = time.Since(t0)
	if everr != nil {
		rep.EvidenceError = everr.Error()
	} else {
		rep.Evidence = ev
		if err := ev.Save(filepath.Join(opts.StateDir, CrashEvidenceDir)); err != nil {
			rep.EvidenceError = err.Error()
		}
		if ro.EvidenceDir != "" {
			if err := ev.Save(ro.EvidenceDir); err != nil {
				return rep, fmt.Errorf("crash recover: %w", err)
			}
		}
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
	prod.Cmdline = crashhandler.ProductionCmdline(strings.TrimSpace(string(cmdline)), mm)
	rep.Cmdline = prod.Cmdline
	extra := a.handoffExtra()
	extra[ExtraCrashMode], _ = json.Marshal(mode)
	if ev != nil {
		extra[ExtraCrashEvidence], _ = json.Marshal(ev)
	}
	mopts := opts.Machine
	mopts.Root, mopts.Logger, mopts.HandoffExtra = opts.Root, a.log, extra
	mopts.Generation = max(a.state.Generation-1, 1)
	// Production must bring back the CPUs of the kernel that crashed, not
	// the one CPU this stage runs on.
	mopts.CPURecord = a.state.CPURecord
	staged, err := fastreboot.New(a.cache, mopts).Stage(ctx, &prod, noStorage{}, fastreboot.ReasonCrash)
	rep.Staged = &staged
	rep.Took = time.Since(t0)
	if err != nil {
		return rep, fmt.Errorf("crash recover: staging production: %w", err)
	}
	return rep, nil
}

// The crash path's API paths.
const (
	pathCrashArm    = "/v1/crash/arm"
	pathCrashDisarm = "/v1/crash/disarm"
	pathCrashStatus = "/v1/crash/status"
)

func crashRoutes(mux *http.ServeMux, s Service) {
	mux.Handle("POST "+pathCrashArm, handle(s.CrashArm))
	mux.Handle("POST "+pathCrashDisarm, handle(func(ctx context.Context, _ empty) (*CrashStatusReport, error) { return s.CrashDisarm(ctx) }))
	mux.Handle("POST "+pathCrashStatus, handle(func(ctx context.Context, _ empty) (*CrashStatusReport, error) { return s.CrashStatus(ctx) }))
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
