package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// Fallback says what Reboot does when it cannot kexec.
type Fallback int

const (
	// FallbackRefuse (the default) makes Reboot return an error that says
	// why it cannot kexec; the system keeps running.
	FallbackRefuse Fallback = iota
	// FallbackFirmware makes Reboot log why it cannot kexec and reboot
	// through the firmware (reboot(LINUX_REBOOT_CMD_RESTART)).
	FallbackFirmware
)

func (f Fallback) String() string {
	switch f {
	case FallbackRefuse:
		return "refuse"
	case FallbackFirmware:
		return "firmware"
	}
	return fmt.Sprintf("Fallback(%d)", int(f))
}

// Carry says how Stage carries the cached modules into the next generation.
type Carry int

const (
	// CarryInitrd (the default) puts every module of the manifest into the
	// handoff piece, so the next generation rehydrates its cache reading no
	// storage. It costs their size again in the initrd, in kexec_file_load's
	// copy and in the purgatory's digest check.
	CarryInitrd Carry = iota
	// CarryNone writes only handoff.json: the next generation starts with
	// an empty cache. Benchmarks use it to show what carrying costs.
	CarryNone
	// CarryKept writes the modules CarryInitrd would carry into the cache
	// part of the running system's kept memory region (pkg/keptmem: the
	// memmap=SIZE!START word of Root/proc/cmdline, its /dev/pmemN), at
	// stage time, and the handoff piece holds only handoff.json, whose
	// Kept field locates them: nothing of them is copied into the initrd,
	// hashed by the purgatory or unpacked by the next kernel. A Stage that
	// finds no region, no device, or too small a region fails (the loaded
	// image stays). The region holds one index: once a Stage has begun
	// writing it, an image loaded before with the kept carrier names an
	// index that is gone (even if this Stage then fails), and the
	// generation it boots reads its modules from storage (Resume refuses
	// the index; no wrong byte is used). A dry run writes nothing.
	CarryKept
	// CarryAuto is CarryKept when the running command line keeps a region
	// and its device is found and large enough, else CarryInitrd; the
	// report says which, and why it fell back (StageReport.CarrierWarning).
	CarryAuto
)

func (c Carry) String() string {
	switch c {
	case CarryInitrd:
		return "initrd"
	case CarryNone:
		return "none"
	case CarryKept:
		return "kept"
	case CarryAuto:
		return "auto"
	}
	return fmt.Sprintf("Carry(%d)", int(c))
}

// ParseCarry reads a carrier's name: "auto", "kept", "initrd" or "none".
func ParseCarry(s string) (Carry, error) {
	for _, c := range []Carry{CarryAuto, CarryKept, CarryInitrd, CarryNone} {
		if s == c.String() {
			return c, nil
		}
	}
	return 0, fmt.Errorf("carrier %q: want auto, kept, initrd or none", s)
}

// MarshalText writes the carrier's name.
func (c Carry) MarshalText() ([]byte, error) {
	if _, err := ParseCarry(c.String()); err != nil {
		return nil, err
	}
	return []byte(c.String()), nil
}

// UnmarshalText reads a carrier's name (ParseCarry).
func (c *Carry) UnmarshalText(b []byte) error {
	v, err := ParseCarry(string(b))
	if err != nil {
		return err
	}
	*c = v
	return nil
}

// Options configure a Machine: what stays the same for its life (the
// system it runs on, its logger, its loader and rebooter). What one call
// does is in StageOptions, BuildOptions and RebootOptions. The zero value
// works on the running system.
type Options struct {
	// Root is the directory holding proc/ and sys/; "" means "/".
	Root string
	// Logger receives what the Machine does and why; nil discards.
	Logger *slog.Logger
	// Loader loads the image; nil means KexecLoader{}.
	Loader Loader
	// Rebooter syncs and reboots; nil means SyscallRebooter{}.
	Rebooter Rebooter
	// Probe is passed to Preflight; nil means ProbeKexecFileLoad.
	Probe func() error
	// Now is the clock of the timeline; nil means time.Now.
	Now func() time.Time
	// CPUStop configures reading and changing CPU state (the record Stage
	// puts into the handoff, and RebootOptions.StopCPUs); its Root and
	// Logger default to the Machine's.
	CPUStop cpustop.Options
	// StateDir holds the decompressed kernel index of LoadSegments
	// (KernelELFIndexFile); "" means DefaultStateDir.
	StateDir string
	// InitrdLimits bound what initrd pieces may unpack to (the zero value
	// means bootimage's defaults): BuildImage measures the real unpacked
	// size of the pieces with them, Stage and BuildImage refuse an image
	// whose initrd pieces unpack to more than MaxUnpacked together (each
	// piece is decompressed once per digest for the Machine's life; a
	// negative MaxUnpacked spares a Stage that), and a cache created for
	// this Machine should check with CheckModuleLimits(InitrdLimits).
	InitrdLimits bootimage.InitrdLimits
}

// StageOptions say what one Stage does. The zero value stages an update
// of generation 1 (a cold boot) for real, carrying the modules, with
// kexec_file_load.
type StageOptions struct {
	// Reason is what the handoff tells the next generation; "" means
	// ReasonUpdate. ReasonCold is refused.
	Reason Reason
	// Generation is the running system's generation (from Resume); the
	// staged image is Generation+1. Zero means 1 (a cold boot).
	Generation int
	// DryRun does everything but the load (kexec_file_load or
	// kexec_load), and logs what it would have done.
	DryRun bool
	// Carry says how modules reach the next generation.
	Carry Carry
	// Load is the load method; "" means LoadFile.
	Load LoadMethod
	// CompressedKernel makes LoadSegments load the bzImage's compressed
	// kernel as it is, as kexec_file_load does, instead of its
	// decompressed ELF: nothing is decompressed or cached before the
	// load, and the image takes the bzImage plus init_size of memory
	// where the ELF takes tens of MB more (the kernel decompresses
	// itself after the jump, which costs that time in the downtime). For
	// a stage whose memory is tight and which runs once: a two-stage
	// crash kernel reloading production.
	CompressedKernel bool
	// KernelELF, with LoadSegments and without CompressedKernel, is the
	// decompressed kernel to load instead of the cache's (which is then
	// neither looked up nor derived); see MappedKernelELF.
	KernelELF *MappedKernelELF
	// FileFallback makes a LoadSegments stage that cannot use kexec_load
	// load the same image with kexec_file_load instead of failing: when
	// the segments preparation fails (lockdown, no boot parameters, no
	// decompressed kernel) or the kernel refuses kexec_load
	// (ErrKexecLoadForbidden, ErrNotPermitted, ErrNotSupported).
	// StageReport.LoadFallback says why. Without it such a stage fails.
	FileFallback bool
	// MemoryMap is the firmware memory map recorded while the system was
	// healthy. LoadSegments gives it to the next kernel as its e820 table
	// and places the segments in its RAM. Nil reads
	// Root/sys/firmware/memmap, which is right on a cold boot and after
	// normal kexecs, but after a crash shows the crash kernel's restricted
	// map: pass the recorded one then. The handoff carries it
	// (Handoff.MemoryMap), so that every later generation repeats it.
	MemoryMap memmap.Map
	// Crash is the crash path's state the handoff carries
	// (Handoff.Crash): the armed mode, the crash initrd choice, the last
	// crash's evidence; nil carries none.
	Crash *HandoffCrash
	// CPURecord, when set, is the CPU record the handoff carries instead of
	// the CPUs online at stage time: a crash stage that runs on one CPU
	// passes on the record of the kernel that crashed.
	CPURecord *cpustop.Record
	// ReleaseCache makes Stage evict every module but the kernel from the
	// cache once the initrd is assembled, before the load: the assembled
	// initrd holds them all (the pieces, and the handoff's carried copies),
	// so the cache's copies only take RAM while the kernel copies the
	// image in. For a stage that is the cache's last use: a two-stage
	// crash kernel, which runs in the crash reservation.
	ReleaseCache bool
	// Origin is the staged manifest's file and signed bytes, which the
	// handoff carries (Handoff.Origin). Stage refuses an Origin whose
	// signed manifest names other modules than the manifest staged
	// (ManifestOrigin.CheckModules); it verifies no signature itself: the
	// caller checks the signature against its trust root.
	Origin *ManifestOrigin
	// Hashed is what the caller read to learn the digests of an image
	// given by its files (a boot entry, files named on the command line)
	// before Stage; the report carries it and counts it in BytesRead.
	// Nil for a manifest that came with its digests.
	Hashed *HashReport
	// Prefetched is the Machine.Prefetch of the same manifest that the
	// caller ran before Stage, outside its locks: Stage reports its sync
	// as its own (the modules it read are hits now), counts its time in
	// the sync's duration, starts its timeline at it, and fails with its
	// error if it failed. Nil: Stage reads what is missing itself.
	Prefetched *Prefetch
	// SkipInitrdScan spares Stage decompressing the initrd pieces to
	// check what they unpack to together (Options.InitrdLimits): for an
	// image whose pieces were checked already when the generation that
	// armed it staged them. A two-stage crash kernel reloading production
	// sets it: the decompressor's window and the pages it touched stay
	// with the Go runtime through kexec_file_load's peak, and in a tight
	// crash reservation those megabytes ran the crash stage out of memory
	// (crashhandler.MinimalHeadroom). Each piece still comes with its
	// digest checked.
	SkipInitrdScan bool
	// Rollback is the boot assessment the next generation runs under
	// (Handoff.Rollback; see pkg/rollback); nil carries none. Unless
	// Carry is CarryNone, the handoff also carries the cached modules of
	// its last-known-good and fallback images, so that a rollback reads
	// nothing from storage.
	Rollback *rollback.State
}

// HashReport is what learning the digests of files read: a stat index
// (like git's) answers for the files that did not change, the others are
// read and hashed.
type HashReport struct {
	// Files is the number of files described; Hits those the index
	// answered for (not read); Hashed those read and hashed; Racy those
	// of Hashed whose index record matched but was too recent to trust.
	Files  int `json:"files"`
	Hits   int `json:"hits"`
	Hashed int `json:"hashed"`
	Racy   int `json:"racy"`
	// BytesRead counts every byte read from the files: hashing and
	// content checks.
	BytesRead int64 `json:"bytes_read"`
	// Read names the files hashed, in order.
	Read []string `json:"read,omitempty"`
}

// Prefetch is what Machine.Prefetch read into the cache.
type Prefetch struct {
	// Sync is the cache's report (modcache.Cache.Sync).
	Sync modcache.SyncReport
	// Start is when it began; Took how long it ran.
	Start time.Time
	Took  time.Duration
	// Err is why it failed (nil if it did not).
	Err error
}

// Prefetch reads into the cache the modules of m that are not cached yet,
// from src (modcache.Cache.Sync), without taking the Machine's lock: the
// cache is safe for concurrent use. A caller that serves other requests
// (the daemon) prefetches before it takes any lock of its own, then
// passes the result to Stage (StageOptions.Prefetched) with a Source that
// reads nothing, so that no lock is held across storage I/O: a source
// that blocks (a FIFO, a hung network file system) wedges the one request
// that named it, not every later one. The returned error is p.Err.
func (mc *Machine) Prefetch(ctx context.Context, m *bootimage.Manifest, src modcache.Source) (p *Prefetch, err error) {
	p = &Prefetch{Start: mc.opts.Now()}
	defer func() { p.Took, p.Err = mc.opts.Now().Sub(p.Start), err }()
	if m == nil {
		return p, fmt.Errorf("%w: nil manifest", bootimage.ErrInvalid)
	}
	if mc.cache == nil {
		return p, errors.New("no module cache: the Machine was created without one")
	}
	if err := m.Validate(); err != nil {
		return p, err
	}
	p.Sync, err = mc.cache.Sync(ctx, m, src)
	return p, err
}

// RebootOptions say what one Reboot (or PlanReboot) does. The zero value
// reboots for real through kexec, refusing to fall back to the firmware,
// and lets the kernel stop the other CPUs.
type RebootOptions struct {
	// DryRun plans and logs, without sync(2) or reboot(2).
	DryRun bool
	// Fallback is the policy when Reboot cannot kexec.
	Fallback Fallback
	// StopCPUs is what Reboot does with the other CPUs right before
	// reboot(LINUX_REBOOT_CMD_KEXEC); "" means cpustop.DefaultPolicy
	// (cpustop.PolicyKernel: the kernel stops them itself).
	StopCPUs cpustop.Policy
}

// Machine stages boot images from a module cache and reboots into them.
// Its methods are safe for concurrent use: Stage, BuildImage, Reboot and
// the loading of a built crash image run one at a time, so one Machine can
// serve every request of a daemon for its life.
type Machine struct {
	cache *modcache.Cache
	opts  Options
	log   *slog.Logger

	// mu runs Stage, BuildImage, Reboot and a built crash image's load
	// one at a time; it guards staged.
	mu     sync.Mutex
	staged *StageReport
	// unpacked memoizes what each initrd piece (by digest) unpacks to,
	// for the crash path's sizing; guarded by mu.
	unpacked map[string]int64
	// elfMu runs the derivations of decompressed kernels one at a time
	// (kernelELF): PrepareKernelELF takes only elfMu, so that a
	// background derivation holds back only the calls that need the ELF.
	// Taken after mu.
	elfMu sync.Mutex
	// pinned is the decompressed kernel a two-stage crash image's handoff
	// locates in physical memory (pinKernelELF), kept mapped and locked
	// while the Machine lives; guarded by mu.
	pinned *pinnedELF
}

// New returns a Machine staging from cache; a nil cache gives a Machine
// that can only plan and reboot (Stage fails). The cache should be created
// with Check set to CheckModule (bootimage.CheckModule, extended to the
// decompressed kernels LoadSegments caches) so that every module is checked
// once when it enters; Stage re-checks the kernel's header itself (it is
// cheap), but relies on the cache for the initrd pieces, whose check
// decompresses them.
func New(cache *modcache.Cache, opts Options) *Machine {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Loader == nil {
		opts.Loader = KexecLoader{}
	}
	if opts.Rebooter == nil {
		opts.Rebooter = SyscallRebooter{}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	return &Machine{cache: cache, opts: opts, log: opts.Logger}
}

// Preflight runs the preflight checks against the Machine's root.
func (mc *Machine) Preflight() Report {
	return Preflight(PreflightOptions{Root: mc.opts.Root, Probe: mc.opts.Probe})
}

// Durations are the phases of one Stage.
type Durations struct {
	// Validate checks the manifest, Sync fills the cache, Assemble copies
	// the initrd pieces, Handoff writes the handoff piece and seals the
	// image, Load is kexec_file_load (zero in a dry run).
	Validate time.Duration `json:"validate_ns"`
	Sync     time.Duration `json:"sync_ns"`
	// Segments prepares LoadSegments: checks, memory map, the
	// decompressed kernel (decompressed here when it was not cached).
	Segments time.Duration `json:"segments_ns,omitempty"`
	Assemble time.Duration `json:"assemble_ns"`
	Handoff  time.Duration `json:"handoff_ns"`
	Load     time.Duration `json:"load_ns"`
	Total    time.Duration `json:"total_ns"`
}

// StageReport says what one Stage did.
type StageReport struct {
	// Manifest is the staged manifest's name.
	Manifest     string `json:"manifest"`
	KernelSHA256 string `json:"kernel_sha256"`
	CmdlineBytes int    `json:"cmdline_bytes"`
	// Cmdline is the command line Stage loaded (empty for a built crash
	// image, whose command line the crash path derives).
	Cmdline string `json:"cmdline,omitempty"`
	// Generation and Reason are what the handoff tells the next kernel.
	Generation int    `json:"generation"`
	Reason     Reason `json:"reason"`
	// DryRun: the image was built but not loaded. Loaded: kexec_file_load
	// succeeded.
	DryRun bool `json:"dry_run"`
	Loaded bool `json:"loaded"`
	// Load is the load method; Segments says how a LoadSegments image
	// was placed (nil for LoadFile).
	Load     LoadMethod      `json:"load"`
	Segments *SegmentsReport `json:"segments,omitempty"`
	// LoadFallback says why a LoadSegments stage loaded its image with
	// kexec_file_load instead (StageOptions.FileFallback); Load is then
	// LoadFile.
	LoadFallback string `json:"load_fallback,omitempty"`
	// Sync is what filling the cache read (hits, misses, bytes read).
	Sync modcache.SyncReport `json:"sync"`
	// Hashed is what learning the image's digests read before staging
	// (StageOptions.Hashed); nil for a manifest with digests.
	Hashed *HashReport `json:"hashed,omitempty"`
	// BytesRead is every byte this stage read from storage: Hashed's and
	// Sync's.
	BytesRead int64 `json:"bytes_read"`
	// InitrdBytes is the whole initrd: PiecesBytes of initrd pieces,
	// PaddingBytes to 4-byte boundaries, and the HandoffBytes piece, which
	// holds CarriedModules modules of CarriedBytes.
	InitrdBytes    int64 `json:"initrd_bytes"`
	PiecesBytes    int64 `json:"pieces_bytes"`
	PaddingBytes   int64 `json:"padding_bytes"`
	HandoffBytes   int64 `json:"handoff_bytes"`
	CarriedModules int   `json:"carried_modules"`
	CarriedBytes   int64 `json:"carried_bytes"`
	// CopiedInKernel counts piece bytes copied by copy_file_range,
	// CopiedInUser those copied through a user-space buffer (pread/pwrite
	// fallback, and the carried modules).
	CopiedInKernel int64 `json:"copied_in_kernel"`
	CopiedInUser   int64 `json:"copied_in_user"`
	// Carrier is how the modules reach the next generation: initrd
	// (CarriedModules in the handoff piece), kept (CarriedModules in the
	// kept region, Kept) or none; StageOptions.Carry with auto resolved.
	Carrier Carry `json:"carrier"`
	// CarrierWarning says why an auto carrier fell back to the initrd
	// (no region on the command line, no device, too small a region).
	CarrierWarning string `json:"carrier_warning,omitempty"`
	// Kept is what the kept carrier wrote; nil for the other carriers.
	Kept      *KeptReport `json:"kept,omitempty"`
	Timeline  Timeline    `json:"timeline"`
	Durations Durations   `json:"durations"`
}

// KeptReport is what a Stage with the kept carrier wrote to the kept
// region.
type KeptReport struct {
	// Device is the region's block device (or the file a test gave).
	Device string `json:"device"`
	// Region is the kept region; CacheSize the length of its cache part,
	// at its start (keptmem.Layout).
	Region    keptmem.Region `json:"region"`
	CacheSize int64          `json:"cache_size"`
	// Sequence is the region's write count after this write (the
	// handoff names it: an index written later is refused).
	Sequence uint64 `json:"sequence"`
	// Modules and Bytes are the modules written and their bytes; Written
	// is false in a dry run, which writes nothing.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	Written bool  `json:"written"`
	// Took is how long the write took (keptmem.Write: the modules hashed
	// and copied, each step synced).
	Took time.Duration `json:"took_ns"`
}

// Staged returns the report of the last successful Stage of this Machine.
func (mc *Machine) Staged() (StageReport, bool) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	if mc.staged == nil {
		return StageReport{}, false
	}
	return *mc.staged, true
}

// StageFile loads the manifest at path (bootimage.Load) and stages it, with
// module sources resolved relative to the manifest's directory. Errors name
// the path.
func (mc *Machine) StageFile(ctx context.Context, path string, so StageOptions) (StageReport, error) {
	m, err := bootimage.Load(path)
	if err != nil {
		return StageReport{}, fmt.Errorf("stage: %w", err)
	}
	rep, err := mc.Stage(ctx, m, modcache.DirSource(filepath.Dir(path)), so)
	if err != nil {
		return rep, fmt.Errorf("%s: %w", path, err)
	}
	return rep, nil
}

// Stage makes m the image the next Reboot jumps into:
//
//  1. m is validated (schema, one kernel, digests, command line of at most
//     bootimage.MaxCmdline-1 bytes);
//  2. cache.Sync reads from src only the modules whose digest is not cached
//     (each checked by the cache's Check as it enters);
//  3. the kernel's bzImage header is checked (bootimage.CheckKernel);
//  4. one new memfd receives the initrd pieces in manifest order, each
//     padded to 4 bytes and copied once (copy_file_range from the cached
//     memfds where the kernel allows it), then the handoff piece
//     (generation+1, reason, timeline, the manifest, and the carried
//     modules unless StageOptions.Carry is CarryNone, or is CarryKept
//     or CarryAuto and the modules went to the kept region: see
//     CarryKept); the memfd is sealed;
//  5. kexec_file_load(kernel memfd, initrd memfd, m.Cmdline, 0).
//
// The Loader is called only with a complete image. Any failure before it
// returns an error naming the manifest and the module or step, and leaves
// what was loaded before untouched; kexec_file_load itself replaces the
// loaded image atomically, only on success. With StageOptions.DryRun,
// step 5 is skipped and logged.
//
// With StageOptions.Load set to LoadSegments, the checks of prepareSegments run
// after step 3 (lockdown off, memory map, /proc/iomem, the running boot
// parameters), the kernel's decompressed ELF is taken from the cache or
// decompressed once and cached (see KernelELF; a cached ELF that does not
// match its recorded digest refuses the image with ErrKernelELFMismatch),
// the handoff records it and carries it with the modules, and step 5 is
// kexec_load of the ELF's segments, the initrd, the command line, the boot
// parameters and u-root's purgatory (with StageOptions.CompressedKernel:
// the bzImage's compressed kernel instead of the ELF, nothing decompressed).
// A kernel that forbids kexec_load fails the Stage (ErrKexecLoadForbidden)
// unless StageOptions.FileFallback asks for kexec_file_load then.
func (mc *Machine) Stage(ctx context.Context, m *bootimage.Manifest, src modcache.Source, so StageOptions) (rep StageReport, err error) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	t0 := mc.opts.Now()
	phase := t0
	if so.Prefetched != nil {
		t0 = so.Prefetched.Start
	}
	label := "<nil manifest>"
	if m != nil {
		label = m.Name
		if label == "" {
			label = "<unnamed manifest>"
		}
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("stage %s: %w", label, err)
			mc.log.Error("stage failed; the previously loaded image, if any, stays", "manifest", label, "err", err)
		}
	}()
	if m == nil {
		return rep, fmt.Errorf("%w: nil manifest", bootimage.ErrInvalid)
	}
	if mc.cache == nil {
		return rep, errors.New("no module cache: the Machine was created without one")
	}
	reason := so.Reason
	if reason == "" {
		reason = ReasonUpdate
	}
	if !reason.Valid() || reason == ReasonCold {
		return rep, fmt.Errorf("reason %q: want %q, %q, %q or %q", reason, ReasonUpdate, ReasonCrash, ReasonManual, ReasonRollback)
	}
	load := so.Load
	if load == "" {
		load = LoadFile
	}
	if _, err := ParseLoadMethod(string(load)); err != nil {
		return rep, err
	}
	rep = StageReport{
		Manifest:     m.Name,
		CmdlineBytes: len(m.Cmdline),
		Cmdline:      m.Cmdline,
		Generation:   max(so.Generation, 1) + 1,
		Reason:       reason,
		DryRun:       so.DryRun,
		Load:         load,
		Hashed:       so.Hashed,
	}
	rep.Timeline.StageStart = t0
	lap := func(d *time.Duration) {
		t := mc.opts.Now()
		*d = t.Sub(phase)
		phase = t
	}

	spec := buildSpec{
		reason: reason, generation: rep.Generation, segments: load == LoadSegments,
		compressed: so.CompressedKernel, fileFallback: so.FileFallback,
		dryRun: so.DryRun, carry: so.Carry, memoryMap: so.MemoryMap, handoffCrash: so.Crash, cpuRecord: so.CPURecord,
		origin:     so.Origin,
		prefetched: so.Prefetched,
		skipScan:   so.SkipInitrdScan,
		mappedELF:  so.KernelELF,
		rollback:   so.Rollback,
	}
	b, err := mc.build(ctx, m, src, spec, &rep, lap)
	rep.BytesRead = rep.Sync.BytesRead
	if so.Hashed != nil {
		rep.BytesRead += so.Hashed.BytesRead
	}
	if err != nil {
		return rep, err
	}
	// kexec_file_load copies the initrd into kernel memory, so the memfd
	// is not needed after the call, whatever its outcome.
	defer b.initrd.Close()
	kernel, initrd, seg, kmod := b.kernel, b.initrd, b.seg, m.Kernel()
	if so.ReleaseCache {
		ev := mc.cache.Evict(&bootimage.Manifest{Modules: []bootimage.Module{kmod}})
		mc.log.Info("released the cached modules the assembled initrd holds", "modules", ev.Modules, "bytes", ev.Bytes)
	}

	if err := ctx.Err(); err != nil {
		return rep, err
	}
	if seg != nil {
		err := mc.loadSegments(seg, initrd, m.Cmdline, so.DryRun)
		switch {
		case err == nil:
			rep.Loaded = !so.DryRun
		case so.FileFallback && kexecLoadRefused(err):
			mc.log.Warn("kexec_load refused; loading the image with kexec_file_load", "err", err)
			rep.Load, rep.Segments, rep.LoadFallback = LoadFile, nil, "kexec_load: "+err.Error()
			seg = nil
		default:
			return rep, err
		}
	}
	if seg == nil {
		if so.DryRun {
			mc.log.Info("dry run: would call kexec_file_load", "manifest", label,
				"kernel", kernel.File().Name(), "kernel_sha256", kmod.SHA256,
				"initrd_bytes", rep.InitrdBytes, "cmdline_bytes", len(m.Cmdline), "generation", rep.Generation)
		} else if err := mc.opts.Loader.FileLoad(kernel.File(), initrd, m.Cmdline, 0); err != nil {
			if rep.LoadFallback != "" {
				err = fmt.Errorf("%w (tried because %s)", err, rep.LoadFallback)
			}
			return rep, err
		} else {
			rep.Loaded = true
		}
	}
	lap(&rep.Durations.Load)
	rep.Durations.Total = phase.Sub(t0)
	mc.staged = &rep
	mc.log.Info("staged", "manifest", label, "generation", rep.Generation, "reason", reason,
		"dry_run", rep.DryRun, "hits", rep.Sync.Hits, "misses", rep.Sync.Misses, "bytes_read", rep.Sync.BytesRead,
		"initrd_bytes", rep.InitrdBytes, "handoff_bytes", rep.HandoffBytes, "total", rep.Durations.Total)
	return rep, nil
}

// kexecLoadRefused reports whether err is the kernel refusing kexec_load
// itself (lockdown, no CONFIG_KEXEC, no permission) rather than the image:
// kexec_file_load may still load the image.
func kexecLoadRefused(err error) bool {
	return errors.Is(err, ErrKexecLoadForbidden) || errors.Is(err, ErrNotPermitted) || errors.Is(err, ErrNotSupported)
}

// entry returns the cached entry of mod, checking its size.
func (mc *Machine) entry(mod bootimage.Module) (*modcache.Entry, error) {
	e, err := mc.cache.Get(mod.SHA256)
	if err != nil {
		return nil, fmt.Errorf("module %q: %w", mod.Name, err)
	}
	if e.Size() != mod.Size {
		return nil, fmt.Errorf("module %q: %w: cached %d bytes, manifest says %d", mod.Name, modcache.ErrSizeMismatch, e.Size(), mod.Size)
	}
	return e, nil
}

func uniqueBytes(blobs []Blob) int64 {
	seen := make(map[string]bool, len(blobs))
	var n int64
	for _, b := range blobs {
		if !seen[b.Digest()] {
			seen[b.Digest()] = true
			n += b.Size()
		}
	}
	return n
}

// RebootPlan says what Reboot will do.
type RebootPlan struct {
	// Cmd is RebootKexec, or RebootRestart under FallbackFirmware.
	Cmd RebootCmd `json:"-"`
	// Mode is "kexec" or "firmware".
	Mode string `json:"mode"`
	// Why says why the plan is not a kexec; empty for a kexec.
	Why string `json:"why,omitempty"`
	// Staged is the report of the image this Machine staged, if any; the
	// loaded image may also come from another program.
	Staged *StageReport `json:"staged,omitempty"`
	DryRun bool         `json:"dry_run"`
	// StopCPUs is the CPU policy applied before a kexec; empty for a
	// firmware reboot.
	StopCPUs cpustop.Policy `json:"stop_cpus,omitempty"`
}

// PlanReboot decides how Reboot would reboot now, reading under Root
// sys/kernel/kexec_loaded and the CapEff of proc/self/status. Without
// CAP_SYS_BOOT no reboot is possible and it returns an error wrapping
// ErrNotPermitted. Without a loaded image it returns, under FallbackRefuse,
// an error wrapping ErrNotLoaded that says why, and under FallbackFirmware
// a firmware plan. In a dry run, an image staged by this Machine counts as
// loaded.
func (mc *Machine) PlanReboot(ro RebootOptions) (RebootPlan, error) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	return mc.planLocked(ro)
}

func (mc *Machine) planLocked(ro RebootOptions) (RebootPlan, error) {
	plan := RebootPlan{DryRun: ro.DryRun}
	if _, err := cpustop.ParsePolicy(string(stopPolicy(ro))); err != nil {
		return plan, fmt.Errorf("reboot: %w", err)
	}
	if mc.staged != nil {
		s := *mc.staged
		plan.Staged = &s
	}
	status := filepath.Join(mc.opts.Root, pathStatus)
	has, err := hasCapability(status, capSysBoot)
	if err != nil {
		return plan, fmt.Errorf("reboot: %w: cannot tell whether CAP_SYS_BOOT is effective: %v", ErrNotPermitted, err)
	}
	if !has {
		return plan, fmt.Errorf("reboot: %w: CAP_SYS_BOOT is not effective (%s): the kernel refuses any reboot", ErrNotPermitted, status)
	}
	loadedPath := filepath.Join(mc.opts.Root, pathKexecLoaded)
	loaded, err := readInt(loadedPath)
	switch {
	case err == nil && loaded != 0:
		plan.Cmd, plan.Mode, plan.StopCPUs = RebootKexec, "kexec", stopPolicy(ro)
		return plan, nil
	case ro.DryRun && mc.staged != nil && mc.staged.DryRun:
		plan.Cmd, plan.Mode, plan.StopCPUs = RebootKexec, "kexec", stopPolicy(ro)
		return plan, nil
	case err != nil:
		plan.Why = fmt.Sprintf("kexec unavailable: %v", err)
	default:
		plan.Why = fmt.Sprintf("no kexec image loaded (%s = 0)", loadedPath)
	}
	if ro.Fallback != FallbackFirmware {
		return plan, fmt.Errorf("reboot refused: %s (fallback policy %s): %w", plan.Why, ro.Fallback, ErrNotLoaded)
	}
	plan.Cmd, plan.Mode = RebootRestart, "firmware"
	return plan, nil
}

// Reboot jumps into the loaded image: it checks that one is loaded, calls
// sync(2), then reboot(LINUX_REBOOT_CMD_KEXEC), which does not return on
// success. When kexec is impossible (see PlanReboot) it follows the fallback
// policy: FallbackRefuse returns an error saying why; FallbackFirmware logs
// why and calls reboot(LINUX_REBOOT_CMD_RESTART) instead, also when the
// kexec reboot call itself fails. In a dry run it logs the plan and returns
// nil without any syscall.
//
// Between sync(2) and the kexec reboot call it applies RebootOptions.StopCPUs
// (cpustop.Stop): nothing for cpustop.PolicyKernel; for
// cpustop.PolicyHotplug every online secondary CPU is taken offline. If
// that fails part-way, the CPUs taken down are brought back and Reboot
// returns the error without rebooting; if the reboot call returns, they are
// brought back before the error (and any fallback) is returned.
func (mc *Machine) Reboot(ctx context.Context, ro RebootOptions) error {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	plan, err := mc.planLocked(ro)
	if err != nil {
		mc.log.Error("reboot refused", "err", err)
		return err
	}
	if plan.Cmd == RebootRestart {
		mc.log.Warn("cannot kexec; rebooting through the firmware", "why", plan.Why, "fallback", ro.Fallback)
	}
	if ro.DryRun {
		mc.log.Info("dry run: would sync(2) and reboot", "cmd", plan.Cmd, "mode", plan.Mode, "why", plan.Why, "stop_cpus", plan.StopCPUs)
		return nil
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	if err := mc.opts.Rebooter.Sync(); err != nil {
		return fmt.Errorf("reboot: %w", err)
	}
	var stopped *cpustop.Stopped
	if plan.Cmd == RebootKexec {
		// Last, so the CPUs are down for as short a time as possible. A
		// policy that fails has put the CPUs back: refuse the reboot.
		if stopped, err = mc.stopCPUs(ctx, stopPolicy(ro)); err != nil {
			mc.log.Error("reboot aborted", "err", err)
			return err
		}
	}
	mc.log.Info("rebooting", "cmd", plan.Cmd, "requested", mc.opts.Now())
	err = mc.opts.Rebooter.Reboot(plan.Cmd)
	if err != nil {
		err = mc.restoreCPUs(ctx, stopped, err)
	}
	if err == nil || plan.Cmd != RebootKexec || ro.Fallback != FallbackFirmware {
		return err
	}
	mc.log.Warn("kexec reboot failed; rebooting through the firmware", "err", err)
	return errors.Join(err, mc.opts.Rebooter.Reboot(RebootRestart))
}
