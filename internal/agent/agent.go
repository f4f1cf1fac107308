package agent

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// DefaultSocket is where the daemon listens.
const DefaultSocket = fastreboot.DefaultStateDir + "/fastreboot.sock"

// ErrNoStorage is returned when a module is not cached and the request named
// no storage to read it from (staging the running image from the cache).
var ErrNoStorage = errors.New("module not cached and no storage given")

// Service is what the fastreboot command asks of an Agent, in process or
// through the daemon's socket.
type Service interface {
	// Info says who serves, which generation runs and what is cached.
	Info(ctx context.Context) (*Info, error)
	// Sync reads into the cache the modules of a manifest not cached yet.
	Sync(ctx context.Context, req SyncRequest) (*modcache.SyncReport, error)
	// Stage builds and loads the next image.
	Stage(ctx context.Context, req StageRequest) (*fastreboot.StageReport, error)
	// Cache lists the cached modules.
	Cache(ctx context.Context) (*CacheListing, error)
	// Verify re-hashes every cached module.
	Verify(ctx context.Context) (*modcache.VerifyReport, error)
	// Evict drops the modules that neither the running nor the staged
	// manifest references.
	Evict(ctx context.Context) (*modcache.EvictReport, error)
	// CrashArm builds the crash image from the cache and arms it.
	CrashArm(ctx context.Context, req CrashArmRequest) (*crashpath.ArmReport, error)
	// CrashDisarm unloads it and restores the fault-routing sysctls.
	CrashDisarm(ctx context.Context) (*crashpath.StatusReport, error)
	// CrashStatus reports the crash path and the last crash.
	CrashStatus(ctx context.Context) (*crashpath.StatusReport, error)
	// CrashEstimate says which crashkernel= the armed or a given image
	// needs, without arming anything.
	CrashEstimate(ctx context.Context, req CrashEstimateRequest) (*crashpath.EstimateReport, error)
	// Bless makes the running generation's image last-known-good
	// (rollback.ErrNotOnTrial when it is not on trial).
	Bless(ctx context.Context, req BlessRequest) (*BlessReport, error)
	// Rollback stages the last-known-good image, reason rollback.
	Rollback(ctx context.Context, req RollbackRequest) (*RollbackReport, error)
}

// SyncRequest names a manifest file; its modules are read relative to its
// directory.
type SyncRequest struct {
	Manifest string `json:"manifest,omitempty"`
	// Inline is a manifest given in the request instead of a file; its
	// module sources must be absolute paths.
	Inline *bootimage.Manifest `json:"inline,omitempty"`
}

// StageRequest says what to stage: a manifest file, or (Current) the
// manifest this generation runs, served from the cache alone.
type StageRequest struct {
	Manifest string `json:"manifest,omitempty"`
	// Inline is a manifest given in the request (sources absolute).
	Inline  *bootimage.Manifest `json:"inline,omitempty"`
	Current bool                `json:"current,omitempty"`
	Reason  fastreboot.Reason   `json:"reason,omitempty"`
	DryRun  bool                `json:"dry_run,omitempty"`
	// NoCarry stages without carrying the cache into the next generation
	// (Carry "none").
	NoCarry bool `json:"no_carry,omitempty"`
	// Carry is how the cache reaches the next generation: "auto" (the
	// default: the kept region when the running command line keeps one
	// and its device is there, else the initrd), "kept", "initrd" or
	// "none" (fastreboot.ParseCarry).
	Carry string `json:"carry,omitempty"`
	// Load is the load method ("" is fastreboot.LoadFile).
	Load fastreboot.LoadMethod `json:"load,omitempty"`
	// Hashed is what the client read to learn the digests of an Inline
	// manifest (its stat index); the report carries it.
	Hashed *fastreboot.HashReport `json:"hashed,omitempty"`
	// Trial is what the staged generation must do to be blessed when it
	// goes on trial (an image other than last-known-good's): a deadline,
	// a health command. Nil: no deadline, no health command; it stays on
	// trial until `fastreboot bless`.
	Trial *rollback.TrialOptions `json:"trial,omitempty"`
	// Policy, when set, is the crash-loop protection from the staged
	// generation on (validated; nil keeps the running one's).
	Policy *rollback.Policy `json:"policy,omitempty"`
}

// Info describes the agent and its cache.
type Info struct {
	// Daemon is true when a `fastreboot daemon` answered; false for an
	// in-process agent, whose cache ends with the command.
	Daemon  bool      `json:"daemon"`
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Generation and Reason of the running system.
	Generation int               `json:"generation"`
	Reason     fastreboot.Reason `json:"reason"`
	// Current names the manifest this generation runs, if known.
	Current string         `json:"current,omitempty"`
	Cache   modcache.Stats `json:"cache"`
	// Staged is the last image this agent staged.
	Staged *fastreboot.StageReport `json:"staged,omitempty"`
	// KernelELF is the background preparation of the running kernel's
	// decompressed ELF (see Agent.PrepareKernelELF); nil if none was
	// started.
	KernelELF *KernelELFStatus `json:"kernel_elf,omitempty"`
	// Trust is the agent's trust root; nil when none is set (manifests
	// need no signature).
	Trust *TrustInfo `json:"trust,omitempty"`
	// Rollback is the boot assessment: last-known-good, the trial, the
	// crash count, what a crash would boot, the history.
	Rollback *RollbackInfo `json:"rollback,omitempty"`
	// Warnings are what the agent noticed and mended on its own, e.g. a
	// carried module that failed its content check and was read again from
	// storage.
	Warnings []string `json:"warnings,omitempty"`
}

// TrustInfo describes the trust root an agent checks manifests against.
type TrustInfo struct {
	// Root is the key file or directory; Keys the ids of its keys.
	Root string   `json:"root"`
	Keys []string `json:"keys"`
	// RunningSignedBy is the key that signed the manifest this generation
	// runs (checked at start, or when a cold boot's first manifest was
	// synced); empty when it is unknown or not trusted, and RunningError
	// then says why.
	RunningSignedBy string `json:"running_signed_by,omitempty"`
	RunningError    string `json:"running_error,omitempty"`
}

// KernelELFStatus reports the daemon's background preparation of the
// decompressed kernel a LoadSegments Stage of the running image needs.
type KernelELFStatus struct {
	// State is "preparing", "ready" or "failed".
	State string `json:"state"`
	// ELF is the prepared decompressed kernel (when ready).
	ELF fastreboot.KernelELF `json:"elf,omitzero"`
	// Decompressed is true if the kernel was decompressed (false if the
	// cache held the ELF already); Took is how long that took.
	Decompressed bool          `json:"decompressed"`
	Took         time.Duration `json:"took_ns"`
	// Error says why it failed.
	Error string `json:"error,omitempty"`
}

// Kernel ELF preparation states.
const (
	KernelELFPreparing = "preparing"
	KernelELFReady     = "ready"
	KernelELFFailed    = "failed"
)

// CacheListing is the content of the cache.
type CacheListing struct {
	Stats   modcache.Stats  `json:"stats"`
	Modules []modcache.Info `json:"modules"`
}

// Options configure an Agent.
type Options struct {
	// Root holds proc/, sys/ and the unpacked handoff; "" means "/".
	Root string
	// StateDir holds state.json; "" means fastreboot.DefaultStateDir.
	StateDir string
	// Logger receives what the agent does; nil discards.
	Logger *slog.Logger
	// Resume rehydrates the cache from the handoff under Root when the agent
	// starts (the daemon does; an in-process agent only reads the saved
	// state, so that it never consumes the handoff files).
	Resume bool
	// Machine configures the agent's fastreboot.Machine; Root, Logger and
	// StateDir are set by the agent.
	Machine fastreboot.Options
	// Pstore is the template for the pstore functions (the module loader
	// and the mount of pstore; nil: the kernel's); Root, MemoryMap and
	// Logger are set by the agent.
	Pstore crashhandler.PstoreOptions
	// EagerVerify makes Resume hash the carried modules before the agent
	// is ready (fastreboot.ResumeOptions.EagerVerify), as before their
	// verification was deferred; for comparison.
	EagerVerify bool
	// Reboot jumps into the image the agent staged for a rollback (a
	// trial's missed deadline or failed health command, RunTrial); nil
	// means a direct kexec (fastreboot.Machine.Reboot). The daemon passes
	// the reboot path of `fastreboot reboot` (systemctl kexec under
	// systemd).
	Reboot func(ctx context.Context) error
	// Now is the agent's clock (trial deadlines, the crash-loop window);
	// nil means time.Now.
	Now func() time.Time
	// CrashInit is the program a minimal crash initramfs runs as /init
	// (crashpath.InitrdMinimal); "" means Root/proc/self/exe, the running
	// fastreboot binary.
	CrashInit string
	// Trust, when set, is the trust root: Sync, Stage, CrashArm and
	// CrashEstimate accept only manifest files whose signature
	// (MANIFEST.sig) verifies against it, refuse inline manifests, and
	// stage or arm the running image only when its manifest's signature
	// (carried by the handoff) verifies; Resume adopts carried modules
	// only under such a signature. Nil: manifests need no signature.
	Trust *manifestsig.TrustRoot
	// PersistDir, when set, is an existing directory on storage that
	// survives a firmware reboot (the daemon's default is
	// DefaultPersistDir): the agent keeps there a record of this boot's
	// assessment, so that the cold boot after a crash loop that left for
	// the firmware shows the chain of crashes before it
	// (rollback.PreviousBoot). "" keeps none.
	PersistDir string
	// Storage returns the storage the modules of a manifest are read
	// from: dir is the manifest file's directory, or "/" for an inline
	// manifest (whose sources are absolute). Nil means
	// modcache.DirSource(dir). Tests inject sources that block.
	Storage func(dir string) modcache.Source
}

// Agent owns a module cache and stages images from it.
type Agent struct {
	opts    Options
	log     *slog.Logger
	cache   *modcache.Cache
	state   *fastreboot.State
	started time.Time
	// mc stages every image of this agent; it runs its calls one at a
	// time, and a segments Stage or crash build waits inside it for a
	// background derivation of the decompressed kernel.
	mc *fastreboot.Machine

	// op makes the requests that use or change the cache's content run
	// one at a time: Stage, Verify, Evict, and a crash arm or estimate
	// from its build until crashhandler has loaded the image (the load is
	// outside the Machine, and an Evict meanwhile would drop the modules
	// the built image reads). Taken before elfMu. It is never held across
	// storage I/O: the modules a request names are read into the cache
	// before it is taken (Machine.Prefetch; Sync and restoreCarried only
	// do that and take no lock), and under it nothing is read
	// (evictedMeanwhile), so that a source that blocks (a FIFO, a hung
	// server) wedges only its own request.
	op sync.Mutex
	// elfMu is held while the decompressed kernel is derived in the
	// background (PrepareKernelELF): Evict waits for it, as it could drop
	// the kernel being read. (Stages wait for it inside the Machine.)
	elfMu sync.Mutex

	mu      sync.Mutex
	daemon  bool
	current *bootimage.Manifest // what this generation runs
	// currentOrigin is current's file and signed bytes, which a restage
	// carries on; currentSignedBy the trusted key that signed it ("" if
	// none did, currentTrustErr says why).
	currentOrigin   *fastreboot.ManifestOrigin
	currentSignedBy string
	currentTrustErr error
	warnings        []string
	// restored counts the adoption failures restoreCarried handled;
	// rereadStatus says how their re-read from storage went, and
	// rereadPending that it is to be tried again.
	restored      int
	rereadStatus  string
	rereadPending bool
	// closing is closed by Close, ending background retries.
	closing   chan struct{}
	closeOnce sync.Once
	staged    *bootimage.Manifest // what the last Stage loaded
	report    *fastreboot.StageReport
	kernelELF *KernelELFStatus

	// crash is the generation's crash path over the cache and mc.
	crash *crashpath.Path

	// rb is the generation's boot assessment (rollback.go); health the
	// trial's health command, rollingBack why a rollback is under way.
	rb          rollback.State
	health      *HealthStatus
	rollingBack string
	// lastArm and lastStage are this agent's last crash arm and stage
	// requests, done again by a bless under the new assessment.
	lastArm   *CrashArmRequest
	lastStage *StageRequest
	now       func() time.Time
	// armed is the decision the crash path was last armed with (nil:
	// not armed), kept in the boot record (previous.go).
	armed         *rollback.Decision
	persistWarned bool
	// trialStart is when this generation's first daemon started (a
	// restarted daemon reads it back): a trial's deadline counts from it.
	trialStart time.Time

	background sync.WaitGroup // PrepareKernelELF, VerifyCarried; Close waits for them
}

// New starts an agent: it creates the cache (every module that enters from
// storage is checked with bootimage.CheckModule) and, with Options.Resume,
// rehydrates it from the handoff.
func New(ctx context.Context, opts Options) (*Agent, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.StateDir == "" {
		opts.StateDir = fastreboot.DefaultStateDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	// fastreboot.CheckModule is bootimage.CheckModule that also accepts
	// the decompressed kernels the segments load method caches; the
	// initrd limits are the Machine's.
	cache := modcache.New(modcache.Options{Logger: log, Check: fastreboot.CheckModuleLimits(opts.Machine.InitrdLimits), Root: opts.Root})
	mo := opts.Machine
	mo.Root, mo.Logger, mo.StateDir = opts.Root, log, opts.StateDir
	now := opts.Now
	if now == nil {
		now = time.Now
	}
	a := &Agent{opts: opts, log: log, cache: cache, started: now(), mc: fastreboot.New(cache, mo), closing: make(chan struct{}), now: now}
	a.trialStart = a.started
	var err error
	if opts.Resume {
		// The handoff may name modules kept in the kept region: its
		// device must be there before Resume looks for it.
		if what, kerr := ensureKeptDevice(opts, 2*time.Second); kerr != nil {
			log.Warn("the kept region's device is missing: modules kept there are read from storage", "err", kerr)
		} else if what != "" {
			log.Info(what)
		}
		a.state, err = fastreboot.Resume(ctx, cache, fastreboot.ResumeOptions{
			Root: opts.Root, StateDir: opts.StateDir, Logger: log, EagerVerify: opts.EagerVerify, Trust: opts.Trust,
		})
	} else {
		a.state, err = fastreboot.LoadState(opts.StateDir)
		if errors.Is(err, os.ErrNotExist) {
			a.state, err = &fastreboot.State{Generation: 1, Reason: fastreboot.ReasonCold}, nil
		}
	}
	if err != nil {
		cache.Close()
		return nil, err
	}
	a.current = a.state.Manifest
	a.setCurrentOrigin(a.state.Origin)
	a.initRollback()
	cfg := crashConfig(opts)
	cfg.Logger, cfg.Cache, cfg.Machine, cfg.State = log, cache, a.mc, a.state
	cfg.Rollback, cfg.Now = a.rollbackState, now
	cfg.Current = func() *bootimage.Manifest {
		a.mu.Lock()
		defer a.mu.Unlock()
		return a.current
	}
	// A crash arm or estimate holds op from its build until the image is
	// loaded.
	cfg.Lock = func() func() {
		a.op.Lock()
		return a.op.Unlock
	}
	a.crash = crashpath.New(cfg)
	return a, nil
}

// State is how this generation started.
func (a *Agent) State() *fastreboot.State { return a.state }

// Close waits for background work and releases the cache.
func (a *Agent) Close() error {
	a.closeOnce.Do(func() { close(a.closing) })
	a.background.Wait()
	return a.cache.Close()
}

// PrepareKernelELF starts re-deriving, in the background, the decompressed
// kernel of the running image if the state directory records one for it
// (the generation was booted by a LoadSegments image, whose handoff records
// the ELF's digest but does not carry the ELF: unpacking it would cost
// downtime). The next LoadSegments Stage then finds it cached; a segments
// Stage, a segments crash arm or an Evict issued meanwhile waits for it, a
// file Stage or a file crash arm does not. It reports whether it started; Info
// shows the progress. The work runs at nice 19 on a thread of its own (on
// Linux), behind the services the new generation starts. The daemon calls
// it once resumed.
func (a *Agent) PrepareKernelELF(ctx context.Context) bool {
	a.mu.Lock()
	m := a.current
	if m == nil || a.kernelELF != nil || !fastreboot.KernelELFRecorded(a.opts.StateDir, m) {
		a.mu.Unlock()
		return false
	}
	a.kernelELF = &KernelELFStatus{State: KernelELFPreparing}
	a.mu.Unlock()
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		if err := lowPriority(); err != nil {
			a.log.Warn("preparing the decompressed kernel at normal priority", "err", err)
		}
		a.elfMu.Lock()
		defer a.elfMu.Unlock()
		rec, decompressed, took, err := a.mc.PrepareKernelELF(ctx, m)
		st := &KernelELFStatus{State: KernelELFReady, ELF: rec, Decompressed: decompressed, Took: took}
		if err != nil {
			st = &KernelELFStatus{State: KernelELFFailed, Error: err.Error()}
			a.log.Warn("preparing the decompressed kernel for the segments load method", "image", m.Name, "err", err)
		} else {
			a.log.Info("decompressed kernel ready for the segments load method", "image", m.Name,
				"elf_sha256", rec.SHA256, "elf_bytes", rec.Size, "decompressed", decompressed, "took", took)
		}
		a.mu.Lock()
		a.kernelELF = st
		a.mu.Unlock()
	}()
	return true
}

// VerifyCarried starts verifying, in the background, the carried modules
// Resume adopted without hashing (modcache.Cache.VerifyPending), at nice 19
// on a thread of its own (on Linux), like PrepareKernelELF: the daemon
// answers meanwhile, and whatever uses a module first (a stage, a crash
// arm, `cache ls`) verifies it itself or waits for the verification under
// way. It reports whether it started (false when nothing is pending); Info
// shows the progress in Cache.Adoption. A module that fails (whoever
// verified it) is dropped and, once every pending module is verified, read
// again from storage (restoreCarried); Info.Warnings says so.
func (a *Agent) VerifyCarried(ctx context.Context) bool {
	if a.cache.Stats().Adoption.Pending == 0 {
		return false
	}
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		if err := lowPriority(); err != nil {
			a.log.Warn("verifying the carried modules at normal priority", "err", err)
		}
		t := time.Now()
		rep, err := a.cache.VerifyPending(ctx)
		// Until the storage is there (mounted later in the boot), or
		// the agent closes.
		for delay := time.Second; !a.restoreCarried(ctx); delay = min(2*delay, 30*time.Second) {
			select {
			case <-ctx.Done():
				return
			case <-a.closing:
				return
			case <-time.After(delay):
			}
		}
		if err != nil {
			a.log.Warn("verifying the carried modules", "modules", rep.Modules, "failed", rep.Bad, "err", err)
			return
		}
		a.log.Info("carried modules verified", "modules", rep.Modules, "bytes", rep.Bytes, "took", time.Since(t))
	}()
	return true
}

// restoreCarried reads again from storage the modules of the running image
// that the cache dropped because they failed their content check (a
// carried module whose bytes do not hash to the digest its manifest names:
// corrupted, or tampered with in the handoff), and records a warning for
// each failure and one for the re-read, which Info reports. Storage is the
// running manifest's directory (the handoff's origin), or the file system
// root when every source is absolute. Under a trust root the running
// manifest is one whose signature verified: the modules read again are
// checked against the digests it signed. It returns false when the re-read
// failed and is worth trying again (the storage may not be mounted yet this
// early in the boot).
func (a *Agent) restoreCarried(ctx context.Context) bool {
	// No lock: the cache is safe for concurrent use, and storage may
	// block (see op).
	failures := a.cache.Stats().Adoption.Failures
	a.mu.Lock()
	m, origin := a.current, a.currentOrigin
	fresh := failures[min(a.restored, len(failures)):]
	a.restored = len(failures)
	for _, f := range fresh {
		w := "dropped a carried module that failed its content check: " + f
		a.warnings = append(a.warnings, w)
		a.log.Warn(w)
	}
	pending := a.rereadPending || len(fresh) > 0
	a.mu.Unlock()
	if !pending {
		return true
	}
	msg, retry := a.reread(ctx, m, origin)
	a.mu.Lock()
	a.rereadPending, a.rereadStatus = retry, msg
	a.mu.Unlock()
	a.log.Warn(msg)
	return !retry
}

// reread syncs m from its storage and says how that went, and whether to
// try again.
func (a *Agent) reread(ctx context.Context, m *bootimage.Manifest, origin *fastreboot.ManifestOrigin) (string, bool) {
	if m == nil {
		return "dropped modules not read from storage again: this generation does not know its manifest", false
	}
	dir := "/"
	if origin != nil && origin.Path != "" {
		dir = filepath.Dir(origin.Path)
	} else {
		for _, mod := range m.Modules {
			if !filepath.IsAbs(mod.Source) {
				return fmt.Sprintf("dropped modules not read from storage again: the handoff does not say where manifest %q lives (module %s has the relative source %q)", m.Name, mod.Name, mod.Source), false
			}
		}
	}
	rep, err := a.cache.Sync(ctx, m, a.storage(dir))
	if err != nil {
		return fmt.Sprintf("waiting for the storage (%s) to read the dropped modules again, retrying: %v", dir, err), true
	}
	return fmt.Sprintf("dropped modules read from storage again (%s): %s (%d bytes)", dir, strings.Join(rep.Read, ", "), rep.BytesRead), false
}

// stageOptions are the options of a Stage of this generation: what every
// handoff repeats (crashpath.Path.HandoffCrash) and the recorded memory
// map, if readable.
func (a *Agent) stageOptions(reason fastreboot.Reason) fastreboot.StageOptions {
	// The kept region when the running system keeps one, else the
	// initrd (fastreboot.CarryAuto).
	so := fastreboot.StageOptions{Reason: reason, Generation: a.state.Generation, Crash: a.crash.HandoffCrash(), Carry: fastreboot.CarryAuto}
	if mm, _, err := a.crash.MemoryMap(); err == nil {
		so.MemoryMap = mm
	}
	return so
}

// Info implements Service.
func (a *Agent) Info(ctx context.Context) (*Info, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	in := &Info{
		Daemon: a.daemon, PID: os.Getpid(), Started: a.started,
		Generation: a.state.Generation, Reason: a.state.Reason,
		Cache: a.cache.Stats(), Staged: a.report,
	}
	if a.kernelELF != nil {
		k := *a.kernelELF
		in.KernelELF = &k
	}
	if a.current != nil {
		in.Current = a.current.Name
	}
	if t := a.opts.Trust; t != nil {
		in.Trust = &TrustInfo{Root: t.Path, Keys: t.KeyIDs(), RunningSignedBy: a.currentSignedBy}
		if a.currentTrustErr != nil {
			in.Trust.RunningError = a.currentTrustErr.Error()
		}
	}
	in.Rollback = a.rollbackInfoLocked()
	in.Warnings = slices.Clone(a.warnings)
	if a.rereadStatus != "" {
		in.Warnings = append(in.Warnings, a.rereadStatus)
	}
	return in, nil
}

// Sync implements Service. It takes no lock: the cache is safe for
// concurrent use, and reading storage under a lock would let one blocked
// source wedge every other request.
func (a *Agent) Sync(ctx context.Context, req SyncRequest) (*modcache.SyncReport, error) {
	m, src, origin, err := a.resolve(req.Manifest, req.Inline)
	if err != nil {
		return nil, err
	}
	rep, err := a.cache.Sync(ctx, m, src)
	if err != nil {
		return &rep, fmt.Errorf("sync %s: %w", m.Name, err)
	}
	a.mu.Lock()
	known := a.current != nil
	if !known {
		// A cold boot has no handoff saying what it runs; the first
		// manifest synced is taken as the running image.
		a.current = m
	}
	a.mu.Unlock()
	if !known {
		a.setCurrentOrigin(origin)
		// The firmware's boot loader chose it: it is good.
		a.mu.Lock()
		a.knownRunningLocked(m)
		a.mu.Unlock()
	}
	return &rep, nil
}

// Stage implements Service.
func (a *Agent) Stage(ctx context.Context, req StageRequest) (*fastreboot.StageReport, error) {
	reason := req.Reason
	if reason == "" {
		reason = fastreboot.ReasonUpdate
	}
	var (
		m      *bootimage.Manifest
		src    modcache.Source
		origin *fastreboot.ManifestOrigin
		err    error
	)
	switch {
	case req.Current && (req.Manifest != "" || req.Inline != nil):
		return nil, errors.New("stage: give a manifest or current, not both")
	case req.Current:
		if m, origin, err = a.runningImage(); err != nil {
			return nil, fmt.Errorf("stage current: %w", err)
		}
		src = noStorage{}
	default:
		if m, src, origin, err = a.resolve(req.Manifest, req.Inline); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
	}
	var pre *fastreboot.Prefetch
	if !req.Current {
		// Stage reports the prefetch's error, if any, as its own.
		pre, _ = a.mc.Prefetch(ctx, m, src)
		src = evictedMeanwhile{}
	}
	a.op.Lock()
	defer a.op.Unlock()
	so := a.stageOptions(reason)
	so.DryRun, so.Load, so.Origin, so.Hashed, so.Prefetched = req.DryRun, req.Load, origin, req.Hashed, pre
	a.mu.Lock()
	rb := a.rb
	a.mu.Unlock()
	if req.Policy != nil {
		if rb, err = rb.WithPolicy(*req.Policy); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
	}
	if t := req.Trial; t != nil && len(t.Health) > 0 {
		// The next generation's daemon runs it: a command this system
		// cannot find is refused now rather than failing the trial.
		if _, err := exec.LookPath(t.Health[0]); err != nil {
			return nil, fmt.Errorf("stage: %w: health command %q: %w", rollback.ErrPolicy, t.Health[0], err)
		}
	}
	next, err := rb.Stage(a.state.Generation+1, m, string(reason), req.Trial, a.now())
	if err != nil {
		return nil, fmt.Errorf("stage: %w", err)
	}
	so.Rollback = &next
	switch {
	case req.NoCarry && req.Carry != "" && req.Carry != fastreboot.CarryNone.String():
		return nil, fmt.Errorf("stage: no_carry and carry %q disagree", req.Carry)
	case req.NoCarry:
		so.Carry = fastreboot.CarryNone
	case req.Carry != "":
		if so.Carry, err = fastreboot.ParseCarry(req.Carry); err != nil {
			return nil, fmt.Errorf("stage: %w", err)
		}
	}
	pm := a.crash.ProductionManifest(m)
	if next.OnTrial(a.state.Generation+1) && next.Good != nil {
		// An early death of the image on trial reboots through the
		// firmware rather than waiting for a person.
		pm = crashpath.TrialManifest(pm)
	}
	rep, err := a.mc.Stage(ctx, pm, src, so)
	if err != nil {
		return &rep, err
	}
	if !req.DryRun {
		a.mu.Lock()
		a.staged, a.report = m, &rep
		r := req
		a.lastStage = &r
		a.rollingBack = ""
		a.mu.Unlock()
	}
	return &rep, nil
}

// Cache implements Service. Carried modules not verified yet are verified
// first (sharing a verification under way), so that what is listed was
// verified; one that fails is dropped and counted in Stats.Adoption.
func (a *Agent) Cache(ctx context.Context) (*CacheListing, error) {
	if _, err := a.cache.VerifyPending(ctx); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("cache ls: %w", err)
		}
		a.log.Warn("cache ls: carried modules failed verification", "err", err)
	}
	return &CacheListing{Stats: a.cache.Stats(), Modules: a.cache.List()}, nil
}

// Verify implements Service.
func (a *Agent) Verify(ctx context.Context) (*modcache.VerifyReport, error) {
	a.op.Lock()
	defer a.op.Unlock()
	rep, err := a.cache.Verify(ctx)
	return &rep, err
}

// Evict implements Service.
func (a *Agent) Evict(ctx context.Context) (*modcache.EvictReport, error) {
	a.op.Lock()
	defer a.op.Unlock()
	a.elfMu.Lock()
	defer a.elfMu.Unlock()
	a.mu.Lock()
	var keep []*bootimage.Manifest
	for _, m := range []*bootimage.Manifest{a.current, a.staged} {
		if m != nil {
			keep = append(keep, m)
		}
	}
	// Last-known-good and the fallback are pinned: a rollback serves
	// them from the cache.
	for _, im := range []*rollback.Image{a.rb.Good, a.rb.Fallback} {
		if im != nil {
			m := im.Manifest
			keep = append(keep, &m)
		}
	}
	a.mu.Unlock()
	if len(keep) == 0 {
		return nil, errors.New("evict: no running or staged manifest is known, refusing to empty the cache")
	}
	// The kernels the segments load method decompressed stay with their
	// bzImages.
	keep = append(keep, fastreboot.KernelELFManifest(a.opts.StateDir, keep...))
	rep := a.cache.Evict(keep...)
	return &rep, nil
}

// resolve returns the manifest a request names, the storage its modules
// are read from (the manifest file's directory, or the file system root for
// an inline manifest, whose sources are absolute) and its origin (the file
// and, if signed, its signed bytes, for the handoff). The manifest is
// parsed from the very bytes whose signature was checked. Under a trust
// root, a manifest file must carry a trusted signature and an inline
// manifest (which has none) is refused; errors name the manifest and wrap
// the manifestsig sentinels.
func (a *Agent) resolve(path string, inline *bootimage.Manifest) (*bootimage.Manifest, modcache.Source, *fastreboot.ManifestOrigin, error) {
	trust := a.opts.Trust
	switch {
	case path != "" && inline != nil:
		return nil, nil, nil, errors.New("give a manifest file or an inline manifest, not both")
	case inline != nil:
		if trust != nil {
			return nil, nil, nil, fmt.Errorf("inline manifest (--kernel/--initrd) of %s: %w: a trust root (%s) is set, so stage a signed manifest file (fastreboot key sign)",
				inline.Kernel().Source, manifestsig.ErrUnsigned, trust.Path)
		}
		if err := inline.Validate(); err != nil {
			return nil, nil, nil, err
		}
		for _, mod := range inline.Modules {
			if mod.Source != "" && !filepath.IsAbs(mod.Source) {
				return nil, nil, nil, fmt.Errorf("inline manifest: module %s: source %q is not absolute", mod.Name, mod.Source)
			}
		}
		return inline, a.storage("/"), nil, nil
	case path != "":
		signed, err := manifestsig.ReadSigned(path)
		if err != nil && trust == nil && errors.Is(err, manifestsig.ErrMalformed) {
			// Without a trust root a broken signature file does not
			// matter: the manifest is staged unsigned.
			a.log.Warn("ignoring the manifest's signature file", "manifest", path, "err", err)
			var m *bootimage.Manifest
			m, err = bootimage.Load(path)
			if err != nil {
				return nil, nil, nil, err
			}
			return m, a.storage(filepath.Dir(path)), &fastreboot.ManifestOrigin{Path: path}, nil
		}
		if err != nil {
			return nil, nil, nil, err
		}
		if trust != nil {
			if _, err := trust.Verify(signed); err != nil {
				return nil, nil, nil, fmt.Errorf("manifest %s: %w", path, err)
			}
		}
		m, err := bootimage.Parse(bytes.NewReader(signed.Manifest), path)
		if err != nil {
			return nil, nil, nil, err
		}
		origin := &fastreboot.ManifestOrigin{Path: path}
		if signed.Signature != nil {
			origin.Signed = signed
		}
		return m, a.storage(filepath.Dir(path)), origin, nil
	}
	return nil, nil, nil, errors.New("no manifest given")
}

// setCurrentOrigin records the origin of the running image's manifest and,
// under a trust root, whether its signature verifies and covers it.
func (a *Agent) setCurrentOrigin(o *fastreboot.ManifestOrigin) {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.currentOrigin, a.currentSignedBy, a.currentTrustErr = o, "", nil
	if a.current == nil {
		return // a cold boot before its first sync: nothing runs that a manifest names
	}
	if o == nil {
		if a.opts.Trust != nil {
			a.currentTrustErr = fmt.Errorf("%w (trust root %s)", manifestsig.ErrUnsigned, a.opts.Trust.Path)
		}
		return
	}
	if a.opts.Trust == nil {
		if err := o.CheckModules(a.current); err != nil {
			// Carrying it on would make every restage fail.
			a.log.Warn("the handoff's signed manifest does not match the running image; not carried on", "err", err)
			a.currentOrigin = &fastreboot.ManifestOrigin{Path: o.Path}
		}
		return
	}
	id, err := fastreboot.VerifyOrigin(a.opts.Trust, o, a.current)
	if err != nil {
		a.currentTrustErr = err
		return
	}
	a.currentSignedBy = id
}

// runningImage returns the manifest this generation runs and its origin;
// under a trust root only if a trusted key signed it.
func (a *Agent) runningImage() (*bootimage.Manifest, *fastreboot.ManifestOrigin, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.current == nil {
		return nil, nil, errors.New("this generation does not know its manifest (cold boot without a synced manifest)")
	}
	if a.opts.Trust != nil && a.currentSignedBy == "" {
		return nil, nil, fmt.Errorf("the running image's manifest is not trusted: %w", a.currentTrustErr)
	}
	return a.current, a.currentOrigin, nil
}

// noStorage is the Source of a stage from the cache alone.
type noStorage struct{}

func (noStorage) Open(_ context.Context, m bootimage.Module) (io.ReadCloser, error) {
	return nil, fmt.Errorf("module %s (sha256 %s): %w", m.Name, m.SHA256, ErrNoStorage)
}

// storage is the Source of the modules of a manifest in dir
// (Options.Storage).
func (a *Agent) storage(dir string) modcache.Source {
	if a.opts.Storage != nil {
		return a.opts.Storage(dir)
	}
	return modcache.DirSource(dir)
}

// evictedMeanwhile is the Source of a stage or crash build whose modules
// were read before the operation lock (Machine.Prefetch): under the lock
// nothing is read from storage, so a module missing then was evicted by a
// request that ran in between.
type evictedMeanwhile struct{}

func (evictedMeanwhile) Open(_ context.Context, m bootimage.Module) (io.ReadCloser, error) {
	return nil, fmt.Errorf("module %s (sha256 %s) was read into the cache, then evicted by a concurrent request before this one could use it: try again", m.Name, m.SHA256)
}
