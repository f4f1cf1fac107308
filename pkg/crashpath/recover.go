package crashpath

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/oldmem"
)

// RecoverOptions configure Recover beyond its Config (whose Root and
// StateDir it uses: the evidence goes to StateDir/crash).
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
	// KernelELFMapTook is how long a two-stage crash stage took to map
	// production's decompressed kernel from the crashed kernel's memory
	// and check it (Evidence.ProductionKernel says whether it was used).
	KernelELFMapTook time.Duration `json:"kernel_elf_map_ns,omitempty"`
	// Cmdline is the production command line staged.
	Cmdline      string        `json:"cmdline,omitempty"`
	EvidenceAt   time.Duration `json:"evidence_ns"`
	Took         time.Duration `json:"took_ns"`
	KernelUptime string        `json:"uptime,omitempty"`
}

// Recover runs the crash stage in a kernel the crash path started (its
// command line has fastreboot.crash=, else ErrNotCrashKernel): it reads the
// crashed kernel's evidence from /proc/vmcore or pstore and saves it, first
// thing (in direct mode the crashed kernel's memory is free RAM now).
// Before reading it loads ramoops when the command line names a region and
// no pstore backend is registered, and mounts pstore on /sys/fs/pstore when
// a backend is registered and pstore is not mounted (failures are
// RecoverReport.Warnings). A crash is always recorded: when no evidence can
// be read, the record says when this kernel booted, the mode, the crashed
// generation (from the handoff) and why nothing was read. pstore is erased
// only once the record is saved.
//
// In two-stage mode it then rehydrates a module cache from the handoff
// (cfg.Cache and cfg.State are not used), stages the production image with
// crashhandler.ProductionCmdline (the crash-only words removed, the
// recorded memory map added) and a handoff carrying the evidence, ready for
// a normal kexec (the caller reboots). Generation numbering: the crash
// stage is not a generation; production keeps the number the crash handoff
// gave.
func Recover(ctx context.Context, cfg Config, ro RecoverOptions) (*RecoverReport, error) {
	t0 := time.Now()
	cfg = cfg.withDefaults()
	cmdline, err := os.ReadFile(filepath.Join(cfg.Root, "proc/cmdline"))
	if err != nil {
		return nil, fmt.Errorf("crash recover: %w", err)
	}
	mode, ok := crashhandler.CrashModeOf(strings.TrimSpace(string(cmdline)))
	if !ok {
		return nil, fmt.Errorf("crash recover: %w", ErrNotCrashKernel)
	}
	rep := &RecoverReport{Mode: mode}
	log := cfg.Logger
	// The crash image's handoff says reason crash and the generation
	// after the one that crashed.
	crashed := 0
	if h, err := fastreboot.ReadHandoff(cfg.Root); err == nil && (h.Reason == fastreboot.ReasonCrash || h.Reason == fastreboot.ReasonRollback) {
		crashed = max(h.Generation-1, 1)
	}
	rep.PstoreBackend, rep.Warnings = preparePstore(cfg)
	ev, from, everr := collectEvidence(crashhandler.EvidenceOptions{Root: cfg.Root}, mode)
	rep.EvidenceFrom = from
	rep.EvidenceAt = time.Since(t0)
	if everr != nil {
		rep.EvidenceError = everr.Error()
		ev = unrecordedCrash(cfg.Root, crashed, mode, "no evidence of the crashed kernel could be read (the time is when the crash kernel booted): "+everr.Error())
	}
	ev.Generation, ev.Mode, ev.Source = crashed, mode, from
	rep.Evidence = ev
	saveErr := ev.Save(filepath.Join(cfg.StateDir, EvidenceDir))
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
		if err := crashhandler.ErasePstore(cfg.Root); err != nil && from == "pstore" {
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
	staged, err := restage(ctx, cfg, rep, strings.TrimSpace(string(cmdline)), ev)
	rep.Staged = staged
	rep.Took = time.Since(t0)
	return rep, err
}

// restage is a two-stage crash kernel's second half: it rehydrates the
// cache from the crash handoff and stages production.
func restage(ctx context.Context, cfg Config, rep *RecoverReport, running string, ev *crashhandler.Evidence) (*fastreboot.StageReport, error) {
	// fastreboot.CheckModule is bootimage.CheckModule that also accepts
	// the decompressed kernels the segments load method caches.
	cache := modcache.New(modcache.Options{Logger: cfg.Logger, Check: fastreboot.CheckModule, Root: cfg.Root})
	defer cache.Close()
	st, err := fastreboot.Resume(ctx, cache, fastreboot.ResumeOptions{Root: cfg.Root, StateDir: cfg.StateDir, Logger: cfg.Logger})
	if err != nil {
		return nil, fmt.Errorf("crash recover: %w", err)
	}
	cfg.Cache, cfg.Machine, cfg.State, cfg.Current = cache, nil, st, nil
	p := New(cfg)
	mm, _, err := p.MemoryMap()
	if err != nil {
		return nil, fmt.Errorf("crash recover: recorded memory map: %w", err)
	}
	if f, err := os.Open(filepath.Join(cfg.Root, "proc/vmcore")); err == nil {
		if segs, err := crashhandler.ReadVmcoreSegments(f); err == nil {
			rep.MemoryMapCheck = "ok"
			if err := crashhandler.CheckMemoryMap(mm, segs); err != nil {
				rep.MemoryMapCheck = err.Error()
			}
		}
		f.Close()
	}
	m := st.Manifest
	if m == nil {
		return nil, errors.New("crash recover: the handoff names no manifest")
	}
	prod := *m
	// InheritCrashkernel is a safety net: ProductionCmdline restores the
	// crashkernel= CrashCmdline saved.
	prod.Cmdline = crashhandler.InheritCrashkernel(crashhandler.ProductionCmdline(running, mm), running)
	rep.Cmdline = prod.Cmdline
	crash := p.HandoffCrash()
	if crash == nil {
		crash = &fastreboot.HandoffCrash{}
	}
	crash.Mode, crash.Evidence = rep.Mode, ev
	// The crash image's reason (crash, or rollback when it was armed
	// with last-known-good) and boot assessment (its pending decision,
	// applied by production) go on to production.
	reason := st.Reason
	if reason != fastreboot.ReasonRollback {
		reason = fastreboot.ReasonCrash
	}
	so := fastreboot.StageOptions{
		Reason: reason, Generation: max(st.Generation-1, 1), Crash: crash, MemoryMap: mm, Rollback: st.Rollback,
		// Production must bring back the CPUs of the kernel that
		// crashed, not the one CPU this stage runs on.
		CPURecord: st.CPURecord,
		// Production's handoff carries the signed manifest on, for its
		// trust root to check (when it names production's modules).
		Origin: matchingOrigin(st.Origin, m),
		// Staging production is the cache's last use in the crash
		// kernel: once the initrd is assembled it holds every module,
		// and the cache's copies would only take reservation while
		// kexec_file_load reads the image in (see
		// crashhandler.RequiredReservation).
		ReleaseCache: true,
		// Production staged these pieces under its initrd limits
		// before it armed; decompressing them again here would hold
		// the decompressor's memory through the reload's peak.
		SkipInitrdScan: true,
		// Production's decompressed kernel, mapped from the crashed
		// kernel's memory, replaces the compressed one below when the
		// crash handoff locates it (productionELF): the kernel then
		// starts at once after the jump, and its destination pages
		// take less than init_size.
		//
		// kexec_load of the compressed kernel holds the image once in
		// the reservation (kexecsys.Load passes the segments without a
		// copy), plus init_size: the kernel decompresses itself after
		// the jump, as after kexec_file_load. kexec_file_load holds the
		// kernel and initrd files it read as well as the image it
		// copies them into (crashhandler.RequiredReservation). Under
		// lockdown, or a kernel without kexec_load, the file method
		// still loads production.
		Load: fastreboot.LoadSegments, CompressedKernel: true, FileFallback: true,
	}
	t := time.Now()
	mapped, unmap, merr := productionELF(cfg.Root, p.handoff())
	rep.KernelELFMapTook = time.Since(t)
	if merr == nil {
		defer unmap()
		so.KernelELF, so.CompressedKernel = mapped, false
		ev.ProductionKernel = "elf"
	} else {
		ev.ProductionKernel, ev.ProductionKernelWhy = "compressed", merr.Error()
		cfg.Logger.Info("crash recover: loading production's compressed kernel", "why", merr)
	}
	// No second try with the compressed kernel when this Stage fails: the
	// mapped ELF passed its check, so its preparation cannot fail where
	// the compressed kernel's would pass, and a failed load has already
	// released the cache (ReleaseCache).
	staged, err := p.cfg.Machine.Stage(ctx, &prod, cacheOnly{}, so)
	if err != nil {
		return &staged, fmt.Errorf("crash recover: staging production: %w", err)
	}
	if staged.LoadFallback != "" {
		rep.Warnings = append(rep.Warnings, "production reloaded with kexec_file_load: "+staged.LoadFallback)
	}
	return &staged, nil
}

// productionELF maps production's decompressed kernel from the crashed
// kernel's memory, where the crash handoff h located it
// (fastreboot.KernelELFPages), checked by oldmem.Map, or says why it
// cannot. The caller unmaps it once the image is loaded.
func productionELF(root string, h *fastreboot.Handoff) (*fastreboot.MappedKernelELF, func(), error) {
	if h == nil || h.Crash == nil || h.Crash.KernelELFPages == nil {
		return nil, nil, errors.New("the crash handoff does not locate production's decompressed kernel in the crashed kernel's memory")
	}
	k := h.Crash.KernelELFPages
	data, unmap, err := oldmem.Map(root, k.Pages)
	if err != nil {
		return nil, nil, fmt.Errorf("production's decompressed kernel in the crashed kernel's memory: %w", err)
	}
	return &fastreboot.MappedKernelELF{Record: k.Record(), Data: data}, unmap, nil
}

// preparePstore makes the crashed kernel's pstore records readable: it
// loads ramoops when the command line names a region and no backend is
// registered, then mounts pstore if a backend is registered (without one
// there is nothing to read). It returns the backend and what failed.
func preparePstore(cfg Config) (string, []string) {
	po := cfg.pstoreOptions(nil)
	var warnings []string
	if _, err := crashhandler.LoadRamoops(po); err != nil {
		warnings = append(warnings, err.Error())
	}
	backend, err := crashhandler.PstoreBackend(cfg.Root)
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

// evidenceSource is one place the crashed kernel's evidence can be read.
type evidenceSource struct {
	name string
	read func(crashhandler.EvidenceOptions) (*crashhandler.Evidence, error)
}

// collectEvidence reads the crashed kernel's evidence and says where it came
// from ("vmcore" or "pstore"). Two-stage reads /proc/vmcore first. Direct
// mode reads pstore first: the crashed kernel's memory is this kernel's
// RAM, so even a vmcore that opens can hold a log already overwritten (seen
// in a crash soak: the printk ring's descriptor pointer read back as 0).
// Either way the other source is tried when the first fails or finds no
// panic line; with no panic line anywhere, the first evidence read is
// returned with the problems of both.
func collectEvidence(opts crashhandler.EvidenceOptions, mode crashhandler.Mode) (*crashhandler.Evidence, string, error) {
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

// matchingOrigin returns o if its signed manifest names m's modules (or it
// is unsigned), else o without its signature: a restage must not fail for
// a signature that does not cover the image, and under a trust root the
// next generation then refuses the unsigned handoff itself.
func matchingOrigin(o *fastreboot.ManifestOrigin, m *bootimage.Manifest) *fastreboot.ManifestOrigin {
	if o.CheckModules(m) != nil {
		return &fastreboot.ManifestOrigin{Path: o.Path}
	}
	return o
}
