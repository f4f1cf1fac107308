package crashpath

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// EvidenceDir is where the evidence of the last crash is kept, under the
// state directory.
const EvidenceDir = "crash"

// ErrNotCrashKernel: Recover ran in a kernel that was not started by the
// crash path (its command line has no fastreboot.crash= marker).
var ErrNotCrashKernel = errors.New("not a crash kernel (no fastreboot.crash= on the command line)")

// ErrFirmwareOnly: the boot assessment says a crash of this generation
// reboots through the firmware (a crash loop of the last good image), so no
// crash image is armed (rollback.ActionFirmware).
var ErrFirmwareOnly = errors.New("a crash reboots through the firmware: no crash image is armed")

// Config configures a Path and Recover.
type Config struct {
	// Root holds proc/, sys/ and the unpacked handoff; "" means "/".
	Root string
	// StateDir holds the generation's state, the armed crash state and
	// the last crash's evidence (StateDir/crash); "" means
	// fastreboot.DefaultStateDir.
	StateDir string
	// Logger receives what the crash path does; nil discards.
	Logger *slog.Logger
	// Cache is the module cache the crash image is built from; Arm and
	// Estimate need it. It should be created with Check set to
	// fastreboot.CheckModule.
	Cache *modcache.Cache
	// Machine builds the crash image from Cache (a daemon passes the one
	// Machine that stages its images, so that builds and stages run one at
	// a time); nil means fastreboot.New(Cache, MachineOptions).
	Machine *fastreboot.Machine
	// MachineOptions are the options of the Machine: its Loader also arms
	// the crash image (nil: the kernel's). Recover stages production with
	// a Machine of these options; Root, Logger and StateDir are set from
	// this Config.
	MachineOptions fastreboot.Options
	// Pstore is the template of the pstore functions (the module loader
	// and the mount of pstore; nil: the kernel's); Root, MemoryMap and
	// Logger are set by the Path.
	Pstore crashhandler.PstoreOptions
	// CrashInit is the program a minimal crash initramfs runs as /init
	// (InitrdMinimal); "" means Root/proc/self/exe, the running binary,
	// which must be the fastreboot command.
	CrashInit string
	// State is how the running generation started (fastreboot.Resume or
	// fastreboot.LoadState); nil reads it from StateDir, else a cold
	// boot, generation 1.
	State *fastreboot.State
	// Current returns the manifest the running generation runs (nil if
	// unknown), which Arm and Estimate build when given none; nil means
	// State.Manifest.
	Current func() *bootimage.Manifest
	// Lock, if set, is held from the build of a crash image until it is
	// loaded, so that whatever else changes the cache's content (an
	// Evict, which would drop the modules the built image reads) waits;
	// it returns the release. Nil makes the Path's builds wait only for
	// each other.
	Lock func() (unlock func())
	// Rollback returns the running generation's boot assessment (nil:
	// none). Arm of the running image arms what it decides for a crash
	// (rollback.State.Decide): the last-known-good image while the
	// generation is on trial, the fallback after a crash loop; the crash
	// handoff carries the state with the decision pending.
	Rollback func() *rollback.State
	// Now is the clock of the crash-loop window; nil means time.Now.
	Now func() time.Time
}

// withDefaults fills in the defaults of Root, StateDir and Logger.
func (c Config) withDefaults() Config {
	if c.Root == "" {
		c.Root = "/"
	}
	if c.StateDir == "" {
		c.StateDir = fastreboot.DefaultStateDir
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	c.MachineOptions.Root, c.MachineOptions.Logger, c.MachineOptions.StateDir = c.Root, c.Logger, c.StateDir
	if c.Machine == nil && c.Cache != nil {
		c.Machine = fastreboot.New(c.Cache, c.MachineOptions)
	}
	return c
}

// Path is the crash path of the running generation. Its methods are safe
// for concurrent use.
type Path struct {
	cfg   Config
	log   *slog.Logger
	state *fastreboot.State
	build sync.Mutex // the default Config.Lock

	mu sync.Mutex
	// initrd is the initrd choice of the last successful Arm ("" if
	// none): every handoff carries it (fastreboot.HandoffCrash.Initrd).
	initrd Initrd
}

// New returns the crash path of the running generation.
func New(cfg Config) *Path {
	cfg = cfg.withDefaults()
	p := &Path{cfg: cfg, log: cfg.Logger, state: cfg.State}
	if p.state == nil {
		st, err := fastreboot.LoadState(cfg.StateDir)
		if err != nil {
			st = &fastreboot.State{Generation: 1, Reason: fastreboot.ReasonCold}
		}
		p.state = st
	}
	return p
}

// current is the manifest the running generation runs (nil if unknown).
func (p *Path) current() *bootimage.Manifest {
	if p.cfg.Current != nil {
		return p.cfg.Current()
	}
	return p.state.Manifest
}

// lock takes Config.Lock, or the Path's own.
func (p *Path) lock() func() {
	if p.cfg.Lock != nil {
		return p.cfg.Lock()
	}
	p.build.Lock()
	return p.build.Unlock
}

// handoff returns the handoff this generation started with (nil on a cold
// boot). The JSON stays in the rootfs after Resume.
func (p *Path) handoff() *fastreboot.Handoff {
	h, err := fastreboot.ReadHandoff(p.cfg.Root)
	if err != nil {
		return nil
	}
	return h
}

// MemoryMap returns the firmware memory map recorded while healthy and
// where it came from: "handoff", else "firmware" (read from
// Root/sys/firmware/memmap: a cold boot).
func (p *Path) MemoryMap() (memmap.Map, string, error) {
	if h := p.handoff(); h != nil {
		if mm := h.MemoryMap; mm.RAMBytes() > 0 {
			return mm, "handoff", nil
		}
	}
	mm, err := memmap.ReadFirmware(p.cfg.Root)
	return mm, "firmware", err
}

// restricted reports whether this kernel runs on a memory map narrower than
// the recorded one (it was kexec'd after a crash): every image it stages
// must then give the next kernel the recorded map on its command line.
func (p *Path) restricted(mm memmap.Map) bool {
	fw, err := memmap.ReadFirmware(p.cfg.Root)
	return err == nil && mm.RAMBytes() > 0 && fw.RAMBytes() < mm.RAMBytes()
}

// ProductionManifest returns m, or a copy whose command line is completed
// for the next generation: the running system's crashkernel= unless the
// manifest sets its own (crashhandler.InheritCrashkernel: without it the
// next generation could not re-arm the crash path), the recorded memory
// map when this kernel runs on a restricted one, and a pstore region for
// crash evidence (crashhandler.EvidenceCmdline), and the running kept
// memory region (keptmem.InheritCmdline: without it the next generation
// would use the region as RAM and lose the module cache kept there).
// Every image the generation stages should be this one; Arm derives the
// crash command line from it.
func (p *Path) ProductionManifest(m *bootimage.Manifest) *bootimage.Manifest {
	c := *m
	running := p.runningCmdline()
	c.Cmdline = crashhandler.InheritCrashkernel(c.Cmdline, running)
	if kept, err := keptmem.InheritCmdline(c.Cmdline, running); err != nil {
		p.log.Warn("the next image does not inherit the kept region", "err", err)
	} else {
		c.Cmdline = kept
	}
	mm, _, err := p.MemoryMap()
	if err == nil && p.restricted(mm) {
		c.Cmdline = crashhandler.ProductionCmdline(c.Cmdline, mm)
		p.log.Info("running on a restricted memory map: the next image gets the recorded one", "ram", mm.RAMBytes())
	}
	c.Cmdline, _ = p.evidenceCmdline(c.Cmdline, mm)
	if c.Cmdline == m.Cmdline {
		return m
	}
	return &c
}

// TrialManifest is m, an image staged on trial, with panic=N
// (DefaultFirmwarePanic) on its command line when it has no panic= word:
// the crash path of a generation is armed by its own daemon, once it runs,
// so a kernel or an init of the image on trial that dies before that
// reboots through the firmware instead of waiting forever (kernel.panic=0,
// Debian's default) for a person. m is returned as it is when it names its
// own panic=.
func TrialManifest(m *bootimage.Manifest) *bootimage.Manifest {
	params, initArgs := bootimage.SplitCmdline(m.Cmdline)
	for _, w := range params {
		if strings.HasPrefix(w, "panic=") {
			return m
		}
	}
	c := *m
	c.Cmdline = bootimage.JoinCmdline(append(params, "panic="+strconv.Itoa(DefaultFirmwarePanic)), initArgs)
	return &c
}

// runningCmdline is Root/proc/cmdline ("" if unreadable).
func (p *Path) runningCmdline() string {
	b, err := os.ReadFile(filepath.Join(p.cfg.Root, "proc/cmdline"))
	if err != nil {
		p.log.Warn("the running command line is unreadable: no crashkernel= to inherit", "err", err)
		return ""
	}
	return strings.TrimSpace(string(b))
}

// pstoreOptions returns the options of the pstore functions.
func (c Config) pstoreOptions(mm memmap.Map) crashhandler.PstoreOptions {
	o := c.Pstore
	o.Root, o.Logger, o.MemoryMap = c.Root, c.Logger, mm
	return o
}

// evidenceCmdline completes an image's command line with a pstore region
// (crashhandler.EvidenceCmdline); when that fails the line stays as it was
// and the error is logged and returned.
func (p *Path) evidenceCmdline(cmdline string, mm memmap.Map) (string, error) {
	out, err := crashhandler.EvidenceCmdline(cmdline, p.cfg.pstoreOptions(mm))
	if err != nil {
		p.log.Warn("the next image gets no pstore region: a crash of it may leave no evidence in direct mode", "err", err)
	}
	return out, err
}

// LoadPstore loads ramoops when this kernel's command line names a ramoops
// region and no pstore backend is registered (crashhandler.LoadRamoops),
// so that a crash of this generation leaves its log there. A daemon calls
// it at start; its errors are warnings.
func (p *Path) LoadPstore() (*crashhandler.RamoopsLoad, error) {
	return crashhandler.LoadRamoops(p.cfg.pstoreOptions(nil))
}

// PstoreEvidence reads the panic log pstore holds: on a cold boot, the end
// of the boot before it (a panic that rebooted through the firmware). It
// makes pstore readable as crash recover does (preparePstore); with no
// backend registered there is nothing to read (crashhandler.ErrNoPstore).
func (p *Path) PstoreEvidence() (*crashhandler.Evidence, error) {
	backend, warnings := preparePstore(p.cfg)
	for _, w := range warnings {
		p.log.Warn("making pstore readable", "warning", w)
	}
	if backend == "" {
		return nil, fmt.Errorf("%w: no pstore backend registered", crashhandler.ErrNoPstore)
	}
	return crashhandler.CollectPstoreEvidence(crashhandler.EvidenceOptions{Root: p.cfg.Root})
}

// HandoffCrash is the crash path's state every handoff of this generation
// carries: the armed crash mode (else the one this generation's handoff
// names), the crash initrd choice and the last crash's evidence; nil if
// none is known. Pass it as fastreboot.StageOptions.Crash, with
// MemoryMap as StageOptions.MemoryMap, to every Stage of the next
// generation.
func (p *Path) HandoffCrash() *fastreboot.HandoffCrash {
	var c fastreboot.HandoffCrash
	if st, err := crashhandler.ReadState(p.cfg.StateDir); err == nil && st != nil {
		c.Mode = st.Mode
	} else {
		c.Mode = p.handoffMode()
	}
	c.Evidence = LastCrash(p.cfg.Root, p.cfg.StateDir)
	c.Initrd = string(p.armedInitrd())
	if c == (fastreboot.HandoffCrash{}) {
		return nil
	}
	return &c
}

// armedInitrd is the crash initrd choice this generation armed with, else
// the one its handoff names ("" if neither).
func (p *Path) armedInitrd() Initrd {
	p.mu.Lock()
	c := p.initrd
	p.mu.Unlock()
	if c != "" {
		return c
	}
	if h := p.handoff(); h != nil && h.Crash != nil && h.Crash.Initrd != "" {
		if c, err := ParseInitrd(h.Crash.Initrd); err == nil {
			return c
		}
	}
	return ""
}

// handoffMode is the crash mode the handoff names ("" if none).
func (p *Path) handoffMode() crashhandler.Mode {
	if h := p.handoff(); h != nil && h.Crash != nil {
		return h.Crash.Mode
	}
	return ""
}

// crashOptions returns the crashhandler options of this Path.
func (p *Path) crashOptions(mode crashhandler.Mode) crashhandler.Options {
	o := crashhandler.Options{Root: p.cfg.Root, StateDir: p.cfg.StateDir, Logger: p.log, Mode: mode}
	if p.cfg.MachineOptions.Loader != nil {
		o.Loader = p.cfg.MachineOptions.Loader
	}
	return o
}

// Disarm unloads the crash image and restores the fault-routing sysctls
// (crashhandler.Disarm); the warnings name the entries of the state file
// it left alone.
func (p *Path) Disarm(ctx context.Context) ([]string, error) {
	warnings, err := crashhandler.Disarm(p.crashOptions(""))
	if err != nil {
		return warnings, fmt.Errorf("crash disarm: %w", err)
	}
	return warnings, nil
}

// cacheOnly is the Source of an image served from the cache alone.
type cacheOnly struct{}

func (cacheOnly) Open(_ context.Context, m bootimage.Module) (io.ReadCloser, error) {
	return nil, fmt.Errorf("module %s (sha256 %s): no storage given: %w", m.Name, m.SHA256, modcache.ErrNotCached)
}
