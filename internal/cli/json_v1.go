package cli

// The parts of the --json documents (docs/json.md), version 1: each a
// struct of this package with its own field names, filled from the
// library's type by an explicit function, so that renaming a library field
// breaks the build here instead of changing the output. Add fields freely;
// rename or remove one only with a new schema version. The types are
// exported so that programs of this repository that read the CLI's output
// (the QEMU tests) decode it into the contract, not the library's structs.

import (
	"maps"
	"slices"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootentry"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// GenerationStateV1 is the v1 form of fastreboot.State.
type GenerationStateV1 struct {
	// Generation counts kernels since the cold boot, which is 1.
	Generation int `json:"generation"`
	// Reason is why this generation booted: cold, update, manual or crash.
	Reason string `json:"reason"`
	// Timeline is the previous generation's, from the handoff; zero on a
	// cold boot.
	Timeline TimelineV1 `json:"timeline"`
	// Resumed is when Resume ran in this generation.
	Resumed time.Time `json:"resumed"`
	// Manifest is the boot image this generation runs, nil on a cold boot
	// (no handoff says what the firmware booted).
	Manifest *ManifestV1 `json:"manifest,omitempty"`
	// Carried is the number of modules the handoff carried; Rehydrated
	// what entered the cache from them, in RehydrateTime (the adoption:
	// copied and sealed; Rehydrated.Unverified of them not hashed yet,
	// see ResumeOptions.EagerVerify and modcache.Stats.Adoption).
	Carried       int               `json:"carried"`
	Rehydrated    RehydrateReportV1 `json:"rehydrated"`
	RehydrateTime time.Duration     `json:"rehydrate_ns"`
	// RehydrateError is set when some carried modules could not be
	// rehydrated; they are missing from the cache and a later Sync reads
	// them from storage.
	RehydrateError string `json:"rehydrate_error,omitempty"`
	// Restarted is when the daemon was last restarted within this boot:
	// the modules rehydrated before lived in the previous daemon's cache.
	// Those the kept region carried are adopted again from it when it
	// still holds the handoff's index (Rehydrated counts them); otherwise
	// they are gone, so Rehydrated is zero and CarriedLost counts them (a
	// later Sync reads them from storage).
	Restarted   time.Time `json:"restarted,omitzero"`
	CarriedLost int       `json:"carried_lost,omitempty"`
	// CPUs compares the CPUs online when the previous generation staged
	// this image (the handoff's record) with those online when Resume ran;
	// nil when the handoff has no record. CPUsError is set when a recorded
	// CPU did not come back, or when the CPUs could not be read.
	CPUs      *CpuCheckV1 `json:"cpus,omitempty"`
	CPUsError string      `json:"cpus_error,omitempty"`
	// CPURecord is the handoff's record itself, so that a crash stage
	// running on fewer CPUs can pass it on (Options.CPURecord).
	CPURecord *CpuRecordV1 `json:"cpu_record,omitempty"`
	// ManifestPath is the file the running manifest was staged from, as
	// the handoff says (module sources are relative to its directory).
	ManifestPath string `json:"manifest_path,omitempty"`
	// Trust is the check of the handoff manifest's signature against the
	// trust root when the generation resumed; absent without one.
	Trust *TrustStateV1 `json:"trust,omitempty"`
	// Carrier is how the handoff carried the modules: "initrd" (files in
	// the handoff piece), "kept" (the kept memory region: Kept) or "none";
	// absent on a cold boot. Rehydrated and RehydrateTime are the
	// adoption from it.
	Carrier string `json:"carrier,omitempty"`
	// Kept is the kept region the modules were adopted from (carrier
	// "kept"): its device, and the region and write sequence the handoff
	// named.
	Kept *KeptStateV1 `json:"kept,omitempty"`
}

// KeptStateV1 is the v1 form of fastreboot.KeptState.
type KeptStateV1 struct {
	// Device is the region's block device found at resume (absent when
	// none was found: rehydrate_error says so).
	Device string `json:"device,omitempty"`
	// Region and Sequence are what the handoff named.
	Region   KeptRegionV1 `json:"region"`
	Sequence uint64       `json:"sequence"`
}

// KeptReportV1 is the v1 form of fastreboot.KeptReport: what a stage with
// the kept carrier wrote to the kept region.
type KeptReportV1 struct {
	// Device is the region's block device.
	Device string `json:"device"`
	// Region is the kept region; CacheSize the length of its module cache
	// part, at its start.
	Region    KeptRegionV1 `json:"region"`
	CacheSize int64        `json:"cache_size"`
	// Sequence is the region's write count after this write.
	Sequence uint64 `json:"sequence"`
	// Modules and Bytes were written; Written is false in a dry run.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	Written bool  `json:"written"`
	// Took is how long the write took.
	Took time.Duration `json:"took_ns"`
}

// CpuStatusV1 is the v1 form of cpuStatus.
type CpuStatusV1 struct {
	// Online is the kernel's online list now, e.g. "0-3"; empty when it
	// cannot be read.
	Online string `json:"online,omitempty"`
	// Check compares the handoff's record with the CPUs online at resume;
	// nil on a cold boot or when the previous generation recorded nothing.
	Check *CpuCheckV1 `json:"check,omitempty"`
	// Error names the CPUs that did not come back (or why the check could
	// not run); it is also a problem for status --check.
	Error string `json:"error,omitempty"`
}

// PreflightV1 is the v1 form of fastreboot.Report.
type PreflightV1 struct {
	// Checks are the preflight checks, each with its verdict.
	Checks []PreflightCheckV1 `json:"checks"`
	// Lockdown is the active lockdown mode ("none", "integrity",
	// "confidentiality"), or "" when unknown.
	Lockdown string `json:"lockdown,omitempty"`
	// KexecLoaded and CrashLoaded report whether an image is loaded for
	// reboot and for crash.
	KexecLoaded bool `json:"kexec_loaded"`
	CrashLoaded bool `json:"kexec_crash_loaded"`
}

// AgentInfoV1 is the v1 form of agent.Info.
type AgentInfoV1 struct {
	// Daemon is true when a `fastreboot daemon` answered; false for an
	// in-process agent, whose cache ends with the command.
	Daemon bool `json:"daemon"`
	// PID is the agent's process id, Started when it started.
	PID     int       `json:"pid"`
	Started time.Time `json:"started"`
	// Generation and Reason of the running system.
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
	// Current names the manifest this generation runs, if known.
	Current string `json:"current,omitempty"`
	// Cache are the cache's counters.
	Cache CacheStatsV1 `json:"cache"`
	// Staged is the last image this agent staged.
	Staged *StageReportV1 `json:"staged,omitempty"`
	// KernelELF is the background preparation of the running kernel's
	// decompressed ELF (see Agent.PrepareKernelELF); nil if none was
	// started.
	KernelELF *KernelELFStatusV1 `json:"kernel_elf,omitempty"`
	// Warnings are what the daemon noticed and mended on its own, e.g. a
	// carried module that failed its content check, was dropped and was
	// read again from storage.
	Warnings []string `json:"warnings,omitempty"`
}

// TrustInfoV1 is the v1 form of agent.TrustInfo.
type TrustInfoV1 struct {
	// Root is the trust root's key file or directory.
	Root string `json:"root"`
	// Keys are the ids of its keys (the first 8 bytes of the SHA-256 of
	// each raw ed25519 public key, in hex).
	Keys []string `json:"keys"`
	// RunningSignedBy is the key that signed the manifest this generation
	// runs; empty when none of the trust root's keys did, and
	// RunningError then says why.
	RunningSignedBy string `json:"running_signed_by,omitempty"`
	RunningError    string `json:"running_error,omitempty"`
}

func trustInfoV1Ptr(t *agent.TrustInfo) *TrustInfoV1 {
	if t == nil {
		return nil
	}
	return &TrustInfoV1{Root: t.Root, Keys: slices.Clone(t.Keys), RunningSignedBy: t.RunningSignedBy, RunningError: t.RunningError}
}

// TrustStateV1 is the v1 form of fastreboot.TrustState.
type TrustStateV1 struct {
	// Root is the trust root the handoff was checked against.
	Root string `json:"root"`
	// SignedBy is the key whose signature over the handoff's manifest
	// verified; empty when none did.
	SignedBy string `json:"signed_by,omitempty"`
	// Error says why the handoff's manifest was not trusted; its carried
	// modules were then not adopted.
	Error string `json:"error,omitempty"`
}

func trustStateV1Ptr(t *fastreboot.TrustState) *TrustStateV1 {
	if t == nil {
		return nil
	}
	return &TrustStateV1{Root: t.Root, SignedBy: t.SignedBy, Error: t.Error}
}

// CrashStatusReportV1 is the v1 form of crashpath.StatusReport.
type CrashStatusReportV1 struct {
	// Supported: the kernel has crash kexec (/sys/kernel/kexec_crash_size).
	Supported bool `json:"supported"`
	// Armed: a crash image is loaded (/sys/kernel/kexec_crash_loaded).
	Armed bool `json:"armed"`
	// ReservationBytes is /sys/kernel/kexec_crash_size.
	ReservationBytes int64 `json:"reservation_bytes"`
	// Mode of the image Arm recorded ("" if none).
	Mode string `json:"mode,omitempty"`
	// State is what Arm recorded; nil if nothing was armed through this
	// package since boot. A State with Armed false means the image was
	// unloaded behind our back.
	State *CrashArmStateV1 `json:"state,omitempty"`
	// Faults reports each fault-routing sysctl.
	Faults []FaultStatusV1 `json:"faults"`
	// Generation and Reason of the running system.
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
	// MemoryMapRAM is the RAM of the recorded firmware memory map.
	MemoryMapRAM uint64 `json:"memory_map_ram_bytes,omitempty"`
	// Last is the evidence of the last crash, if any is known.
	Last *CrashEvidenceV1 `json:"last,omitempty"`
	// Warnings (crash disarm only) name the sysctls the crash state names
	// that disarm left alone: not fault-routing sysctls fastreboot
	// manages, or not an integer.
	Warnings []string `json:"warnings,omitempty"`
}

// StageReportV1 is the v1 form of fastreboot.StageReport.
type StageReportV1 struct {
	// Manifest is the staged manifest's name.
	Manifest string `json:"manifest"`
	// KernelSHA256 is the staged kernel's SHA-256 (lowercase hex); CmdlineBytes the length of its command line.
	KernelSHA256 string `json:"kernel_sha256"`
	CmdlineBytes int    `json:"cmdline_bytes"`
	// Cmdline is the command line Stage loaded (empty for a built crash
	// image, whose command line the crash path derives).
	Cmdline string `json:"cmdline,omitempty"`
	// Generation and Reason are what the handoff tells the next kernel.
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
	// DryRun: the image was built but not loaded. Loaded: kexec_file_load
	// succeeded.
	DryRun bool `json:"dry_run"`
	Loaded bool `json:"loaded"`
	// Load is the load method; Segments says how a LoadSegments image
	// was placed (nil for LoadFile).
	Load     string            `json:"load"`
	Segments *SegmentsReportV1 `json:"segments,omitempty"`
	// LoadFallback says why a stage asked for the segments load method
	// loaded its image with kexec_file_load instead; Load is then
	// "file".
	LoadFallback string `json:"load_fallback,omitempty"`
	// Sync is what filling the cache read (hits, misses, bytes read).
	Sync SyncReportV1 `json:"sync"`
	// Hashed is what learning the digests of an image given by its files
	// (a boot entry, --kernel/--initrd) read before staging, through the
	// stat index; absent for a manifest with digests.
	Hashed *HashReportV1 `json:"hashed,omitempty"`
	// BytesRead is every byte the stage read from storage: `hashed`'s and
	// `sync`'s.
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
	// Carrier is how the modules reach the next generation: "initrd"
	// (in the handoff piece), "kept" (written to the kept memory region:
	// Kept) or "none"; CarrierWarning says why the default carrier (auto)
	// fell back to the initrd.
	Carrier        string        `json:"carrier"`
	CarrierWarning string        `json:"carrier_warning,omitempty"`
	Kept           *KeptReportV1 `json:"kept,omitempty"`
	// Timeline is when staging began and ended (the times the next generation gets in its handoff).
	Timeline TimelineV1 `json:"timeline"`
	// Durations are the phases of staging.
	Durations DurationsV1 `json:"durations"`
}

// RebootPlanV1 is the v1 form of fastreboot.RebootPlan.
type RebootPlanV1 struct {
	// Mode is "kexec" or "firmware".
	Mode string `json:"mode"`
	// Why says why the plan is not a kexec; empty for a kexec.
	Why string `json:"why,omitempty"`
	// Staged is the report of the image this Machine staged, if any; the
	// loaded image may also come from another program.
	Staged *StageReportV1 `json:"staged,omitempty"`
	// DryRun: the plan was only printed, nothing was synced or rebooted.
	DryRun bool `json:"dry_run"`
	// StopCPUs is the CPU policy applied before a kexec; empty for a
	// firmware reboot.
	StopCPUs string `json:"stop_cpus,omitempty"`
}

// CacheListingV1 is the v1 form of agent.CacheListing.
type CacheListingV1 struct {
	// Stats are the cache's counters.
	Stats CacheStatsV1 `json:"stats"`
	// Modules are the cached modules, one per digest.
	Modules []CacheModuleV1 `json:"modules"`
}

// SyncReportV1 is the v1 form of modcache.SyncReport.
type SyncReportV1 struct {
	// Hits counts the manifest's modules that were cached already,
	// Misses those that had to be read.
	Hits   int `json:"hits"`
	Misses int `json:"misses"`
	// BytesRead is the exact number of bytes read from the Source,
	// including bytes of modules that were then rejected.
	BytesRead int64 `json:"bytes_read"`
	// Read names the modules read from the Source and added, in manifest order.
	Read []string `json:"read,omitempty"`
	// Warnings say which cached modules failed their deferred verification
	// (adopted from a handoff without hashing, see Cache.Adopt): they were
	// dropped and read again from the Source.
	Warnings []string `json:"warnings,omitempty"`
}

// VerifyReportV1 is the v1 form of modcache.VerifyReport.
type VerifyReportV1 struct {
	// Modules and Bytes: what was hashed again.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Bad lists the digests of entries whose content no longer matched;
	// they were dropped from the cache.
	Bad []string `json:"bad,omitempty"`
}

// EvictReportV1 is the v1 form of modcache.EvictReport.
type EvictReportV1 struct {
	// Modules and Bytes: what was dropped (modules no staged or running image references).
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
}

// ManifestDiffV1 is the v1 form of bootimage.ManifestDiff.
type ManifestDiffV1 struct {
	// Added lists modules of the new manifest that the old one lacks, in
	// the new manifest's order.
	Added []string `json:"added,omitempty"`
	// Removed lists modules of the old manifest that the new one lacks,
	// in the old manifest's order.
	Removed []string `json:"removed,omitempty"`
	// Changed lists modules present in both whose digest (or role)
	// differs, in the new manifest's order.
	Changed []string `json:"changed,omitempty"`
	// CmdlineChanged is true when the command lines differ.
	CmdlineChanged bool `json:"cmdline_changed,omitempty"`
	// OrderChanged is true when the initrd modules both manifests hold
	// are unpacked in another order: later files overwrite earlier ones,
	// so the order is part of the image.
	OrderChanged bool `json:"order_changed,omitempty"`
}

// CrashArmReportV1 is the v1 form of crashpath.ArmReport.
type CrashArmReportV1 struct {
	// Armed is false only for an Auto request with nothing to re-arm.
	Armed bool `json:"armed"`
	// Why says why nothing was armed (armed false).
	Why string `json:"why,omitempty"`
	// State is what was armed: the crash image, its command line, sizing and load method.
	State *CrashArmStateV1 `json:"state,omitempty"`
	// Image is the build of the crash image (its initrd carries the
	// modules and a handoff with reason crash).
	Image *StageReportV1 `json:"image,omitempty"`
	// MemoryMapFrom is "handoff" or "firmware".
	MemoryMapFrom string `json:"memory_map_from,omitempty"`
	// Initrd is what the crash image's initrd holds.
	Initrd string `json:"initrd,omitempty"`
	// Took is how long arming took.
	Took time.Duration `json:"took_ns"`
	// Decision is what a crash of this generation boots, as the boot
	// assessment decided when the running image was armed: the same image
	// (action crash) or last-known-good, or the fallback after a crash
	// loop (action rollback, `image` names it); absent when a manifest
	// was given, which is armed as asked.
	Decision *RollbackDecisionV1 `json:"decision,omitempty"`
	// Warnings say what the armed path cannot do: problems the request
	// chose to accept (AllowNoRearm), or no evidence of a crash of this
	// generation (no pstore backend).
	Warnings []string `json:"warnings,omitempty"`
}

// CrashEstimateReportV1 is the v1 form of crashpath.EstimateReport.
type CrashEstimateReportV1 struct {
	// Mode is the crash mode the estimate is for: two-stage or direct.
	Mode string `json:"mode"`
	// Name is the image's manifest name, if any.
	Name string `json:"name,omitempty"`
	// KernelBytes and InitrdBytes are the sizes of the crash image's kernel and initrd.
	KernelBytes int64 `json:"kernel_bytes"`
	InitrdBytes int64 `json:"initrd_bytes"`
	// Sizing is RequiredReservation's answer; Breakdown its parts.
	Sizing    CrashSizingV1 `json:"sizing"`
	Breakdown string        `json:"breakdown"`
	// Crashkernel is the word to put on the kernel command line.
	Crashkernel string `json:"crashkernel"`
	// Supported: the kernel has crash kexec; ReservationBytes is the
	// current reservation (/sys/kernel/kexec_crash_size) and Fits says
	// whether the image fits in it.
	Supported        bool  `json:"supported"`
	ReservationBytes int64 `json:"reservation_bytes"`
	Fits             bool  `json:"fits"`
	// Cmdline is the crash command line; NextCmdline the production
	// command line booted after a crash (see NextCmdline) and
	// NextCrashkernel the reservation it asks for.
	Cmdline         string        `json:"cmdline"`
	NextCmdline     string        `json:"next_cmdline"`
	NextCrashkernel CrashkernelV1 `json:"next_crashkernel"`
	// Problems are the reasons Arm would refuse the image now (or, for the
	// armed image, why the generation after a crash could not re-arm).
	Problems []string `json:"problems,omitempty"`
	// From is "armed" (the sizing recorded when the image was armed) or
	// "built" (the crash image built now, as crash arm would, and not
	// loaded).
	From string `json:"from"`
	// Image is the build of the crash image (From "built").
	Image *StageReportV1 `json:"image,omitempty"`
	// Initrd is what the built crash image's initrd holds (From "built").
	Initrd string `json:"initrd,omitempty"`
}

// CrashEvidenceV1 is the v1 form of crashhandler.Evidence.
type CrashEvidenceV1 struct {
	// Time is the crash time (VMCOREINFO CRASHTIME, wall clock, seconds).
	Time time.Time `json:"time"`
	// Reason is the panic line, e.g. "Kernel panic - not syncing: sysrq
	// triggered crash" ("" if the log has none).
	Reason string `json:"reason"`
	// Cause is the last line before the panic that names a fault (a BUG:,
	// Oops, soft or hard lockup, hung task, unknown NMI, WARNING, RCU
	// stall, sysrq crash), e.g. "watchdog: BUG: soft lockup - CPU#0 stuck
	// for 22s! [sh:245]"; "" if none. An oops panics with the uninformative
	// "Fatal exception", so this is the line to show.
	Cause string `json:"cause,omitempty"`
	// CPU is the panicking CPU, -1 if unknown: from the "CPU: N PID: P"
	// line panic()/oops print, else from the panic record's caller ID when
	// it was printed outside task context (NMI).
	CPU int `json:"cpu"`
	// KernelRelease is the crashed kernel's release (VMCOREINFO OSRELEASE).
	KernelRelease string `json:"kernel_release"`
	// Log is the tail of the crashed kernel's log, dmesg style: the last
	// EvidenceOptions.TailLines lines, from the Cause line on if that is
	// further back (by at most TailLines more).
	Log []string `json:"log"`
	// LogLines is the number of lines in the whole log (Save writes them
	// all to log.txt).
	LogLines int `json:"log_lines"`
	// CPUs has one entry per NT_PRSTATUS note: the CPUs that saved their
	// registers when the crash kexec stopped them.
	CPUs []CrashCPUV1 `json:"cpus,omitempty"`
	// Problems lists parts that could not be read (the rest is still
	// valid), e.g. a log buffer already overwritten in direct mode.
	Problems []string `json:"problems,omitempty"`
	// Generation is the fastreboot generation that crashed, Mode the
	// crash path's mode that recovered it (0 and "" when unknown).
	Generation int    `json:"generation,omitempty"`
	Mode       string `json:"mode,omitempty"`
	// Source is where the evidence was read: "vmcore", "pstore", or ""
	// when none could be read (then only Time, Generation, Mode and
	// Problems are known, and Time is when the next kernel booted).
	Source string `json:"source,omitempty"`
	// ProductionKernel, after a two-stage crash, is how the crash stage
	// loaded production's kernel: "elf" (its decompressed kernel, mapped
	// from the crashed kernel's memory and checked against its SHA-256:
	// it started at once after the jump) or "compressed" (it decompressed
	// itself after the jump; ProductionKernelWhy says why the ELF was not
	// used). Absent in direct mode.
	ProductionKernel    string `json:"production_kernel,omitempty"`
	ProductionKernelWhy string `json:"production_kernel_why,omitempty"`
}

// RecoverReportV1 is the v1 form of crashpath.RecoverReport.
type RecoverReportV1 struct {
	// Mode is the crash mode the crash kernel runs in: two-stage or direct.
	Mode string `json:"mode"`
	// Evidence is what the crashed kernel left (absent when none could be read: see EvidenceError).
	Evidence *CrashEvidenceV1 `json:"evidence,omitempty"`
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
	Staged *StageReportV1 `json:"staged,omitempty"`
	// Cmdline is the production command line staged.
	Cmdline string `json:"cmdline,omitempty"`
	// EvidenceAt is how long after the start of crash recover the evidence was saved; Took the whole recovery.
	EvidenceAt time.Duration `json:"evidence_ns"`
	Took       time.Duration `json:"took_ns"`
	// KernelELFMapTook is how long a two-stage crash stage took to map
	// production's decompressed kernel from the crashed kernel's memory
	// and check it (Evidence.ProductionKernel says whether it was used).
	KernelELFMapTook time.Duration `json:"kernel_elf_map_ns,omitempty"`
	// KernelUptime is the crash kernel's /proc/uptime when recovery ended.
	KernelUptime string `json:"uptime,omitempty"`
}

// TimelineV1 is the v1 form of fastreboot.Timeline.
type TimelineV1 struct {
	// StageStart is when Stage began (before reading any module).
	StageStart time.Time `json:"stage_start,omitzero"`
	// StageEnd is when the image was complete: the handoff is written last,
	// so StageEnd precedes kexec_file_load, whose duration only the
	// previous generation's StageReport knows.
	StageEnd time.Time `json:"stage_end,omitzero"`
	// RebootRequested is when the reboot was asked for. The handoff is
	// sealed into the loaded image at stage time, before anyone asks for a
	// reboot, so this is always zero in a handoff written by Stage: the
	// next generation could learn it only from memory that survives the
	// jump (pstore, a memmap= region kept across kexec), which the handoff
	// does not use yet. The field is there for such a carrier.
	RebootRequested time.Time `json:"reboot_requested,omitzero"`
}

// ManifestV1 is the v1 form of bootimage.Manifest.
type ManifestV1 struct {
	// Version of the manifest format (1).
	Version int `json:"version"`
	// Name of the image (optional).
	Name string `json:"name,omitempty"`
	// Cmdline is the kernel command line.
	Cmdline string `json:"cmdline"`
	// Modules holds exactly one kernel; initrd pieces appear in the order
	// the kernel unpacks them (later files overwrite earlier ones).
	Modules []ModuleV1 `json:"modules"`
}

// RehydrateReportV1 is the v1 form of modcache.RehydrateReport.
type RehydrateReportV1 struct {
	// Modules and Bytes count the unique contents copied into the cache.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Unverified counts those of them adopted without hashing (Adopt):
	// their verification is deferred to their first use or VerifyPending.
	Unverified int `json:"unverified,omitempty"`
}

// CpuCheckV1 is the v1 form of cpustop.Report.
type CpuCheckV1 struct {
	// MatchedBy is "apic_id" when CPUs were matched by APIC id, "id" when
	// by logical id (some APIC id unknown on either side).
	MatchedBy string `json:"matched_by"`
	// Expected counts the CPUs online before the jump, Online those online at resume.
	Expected int `json:"expected"`
	Online   int `json:"online"`
	// Missing lists the recorded CPUs not online now, as recorded.
	Missing []RecordedCPUV1 `json:"missing"`
	// Added lists the CPUs online now that the record does not have.
	Added []RecordedCPUV1 `json:"added"`
}

// CpuRecordV1 is the v1 form of cpustop.Record.
type CpuRecordV1 struct {
	// BootCPU and BootAPICID: the CPU that staged the image (Linux number and APIC id).
	BootCPU    int `json:"boot_cpu"`
	BootAPICID int `json:"boot_apic_id"`
	// Online lists the online CPUs, ordered by ID.
	Online []RecordedCPUV1 `json:"online"`
}

// PreflightCheckV1 is the v1 form of fastreboot.Check.
type PreflightCheckV1 struct {
	// Name, OK and Detail: what was checked, whether it passed, and what was found.
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Detail says what was found, and for a failed check, why it matters.
	Detail string `json:"detail"`
}

// CacheStatsV1 is the v1 form of modcache.Stats.
type CacheStatsV1 struct {
	// Modules is the number of unique contents held.
	Modules int `json:"modules"`
	// BytesHeld is the sum of their sizes: each content once.
	BytesHeld int64 `json:"bytes_held"`
	// OverheadBytes estimates the RAM used beyond BytesHeld, see Overhead.
	OverheadBytes int64 `json:"overhead_bytes"`
	// Hits and Misses count Sync's module lookups.
	Hits   int64 `json:"hits"`
	Misses int64 `json:"misses"`
	// BytesRead counts bytes read from Sources (Sync): storage.
	BytesRead int64 `json:"bytes_read"`
	// BytesAdded counts bytes read from Add's readers (content a caller
	// derived or already held, such as a decompressed kernel).
	BytesAdded int64 `json:"bytes_added"`
	// BytesRehydrated counts bytes copied from handoff files (Rehydrate
	// and Adopt).
	BytesRehydrated int64 `json:"bytes_rehydrated"`
	// Adoption is the deferred verification of the entries Adopt took
	// from a handoff without hashing them.
	Adoption AdoptionStatsV1 `json:"adoption"`
}

// KernelELFStatusV1 is the v1 form of agent.KernelELFStatus.
type KernelELFStatusV1 struct {
	// State is "preparing", "ready" or "failed".
	State string `json:"state"`
	// ELF is the prepared decompressed kernel (when ready).
	ELF KernelELFV1 `json:"elf,omitzero"`
	// Decompressed is true if the kernel was decompressed (false if the
	// cache held the ELF already); Took is how long that took.
	Decompressed bool          `json:"decompressed"`
	Took         time.Duration `json:"took_ns"`
	// Error says why it failed.
	Error string `json:"error,omitempty"`
}

// CrashArmStateV1 is the v1 form of crashhandler.State.
type CrashArmStateV1 struct {
	// Version of the recorded arm state (1).
	Version int `json:"version"`
	// ArmedAt is when the image was loaded.
	ArmedAt time.Time `json:"armed_at"`
	// Mode is two-stage or direct.
	Mode string `json:"mode"`
	// Load is the system call that armed the image (LoadFile or
	// LoadSegments; empty in states written before it was recorded).
	Load string `json:"load,omitempty"`
	// LoadFallback says why the image was armed with LoadFile when
	// LoadSegments was asked for (lockdown, or kexec_load refused).
	LoadFallback string `json:"load_fallback,omitempty"`
	// Cmdline is the crash command line given to the kernel (with
	// LoadFile the kernel prepends elfcorehdr=).
	Cmdline string `json:"cmdline"`
	// Name is the manifest's name, if any.
	Name string `json:"name,omitempty"`
	// Digest identifies the image: the manifest's module digests hashed
	// together, or Image.Digest.
	Digest string `json:"digest"`
	// KernelBytes, InitrdBytes and ImageBytes are the sizes of the crash image's kernel, initrd and both.
	KernelBytes int64 `json:"kernel_bytes"`
	InitrdBytes int64 `json:"initrd_bytes"`
	// ImageBytes is kernel + initrd.
	ImageBytes int64 `json:"image_bytes"`
	// Sizing is the reservation the image needs; ReservationBytes what there
	// was when it was armed.
	Sizing           CrashSizingV1 `json:"sizing"`
	ReservationBytes int64         `json:"reservation_bytes"`
	// Previous holds the fault-routing sysctls' values from before the first
	// Arm; Disarm writes them back.
	Previous map[string]string `json:"previous_sysctls,omitempty"`
	// MemoryMap is the firmware memory map read when arming (if readable).
	MemoryMap []MemoryRangeV1 `json:"memory_map,omitempty"`
	// Warnings are the problems Arm was told to accept (Options.AllowNoRearm).
	Warnings []string `json:"warnings,omitempty"`
	// Firmware: no crash image (a crash loop's decision), faults still
	// routed to panic, and a panic reboots through the firmware; the
	// image fields are empty.
	Firmware bool `json:"firmware,omitempty"`
}

// FaultStatusV1 is the v1 form of crashhandler.FaultStatus.
type FaultStatusV1 struct {
	// Name is the sysctl, e.g. "kernel.panic_on_oops".
	Name string `json:"name"`
	// Value is the current value, or "unsupported" when the kernel has no
	// such sysctl.
	Value string `json:"value"`
	// Supported: the kernel has the sysctl. Routed: it is set to route the fault to a panic.
	Supported bool `json:"supported"`
	// Routed: the fault panics (value is non-zero).
	Routed bool `json:"routed"`
	// Previous is the value before Arm changed it ("" if Arm did not).
	Previous string `json:"previous,omitempty"`
}

// SegmentsReportV1 is the v1 form of fastreboot.SegmentsReport.
type SegmentsReportV1 struct {
	// KernelELF is the decompressed kernel that was loaded; zero when
	// Compressed.
	KernelELF KernelELFV1 `json:"kernel_elf"`
	// Compressed is true when the bzImage's compressed kernel was loaded
	// as it is: it decompresses itself after the jump, as after
	// kexec_file_load.
	Compressed bool `json:"compressed,omitempty"`
	// KernelELFMapped is true when the decompressed kernel was one its
	// caller mapped (a two-stage crash stage loading production's from
	// the crashed kernel's memory), not the cache's.
	KernelELFMapped bool `json:"kernel_elf_mapped,omitempty"`
	// Decompressed is true when this Stage decompressed the bzImage (it was
	// not cached yet), in DecompressTime; false when the cache held it.
	Decompressed   bool          `json:"decompressed"`
	DecompressTime time.Duration `json:"decompress_ns"`
	// Entry is the purgatory's entry, KernelEntry the kernel's 64-bit
	// entry it jumps to, BootParams the address of the zero page it
	// passes in %rsi.
	Entry       uint64 `json:"entry"`
	KernelEntry uint64 `json:"kernel_entry"`
	BootParams  uint64 `json:"boot_params"`
	// KernelStart and KernelEnd bound the memory the kernel occupies
	// (its segments, at least init_size). Relocated is true when its
	// linked physical address was not usable and the kernel was moved.
	KernelStart uint64 `json:"kernel_start"`
	KernelEnd   uint64 `json:"kernel_end"`
	Relocated   bool   `json:"relocated"`
	// Segments are the kexec_load segments, in load order.
	Segments []SegmentInfoV1 `json:"segments"`
	// MemoryMap says where the e820 table given to the next kernel came
	// from: "recorded" (Options.MemoryMap) or the sysfs path read.
	MemoryMap string `json:"memory_map"`
	// E820Entries is the number of entries in that table.
	E820Entries int `json:"e820_entries"`
	// Avoided lists the RAM kept free: the crash kernel reservation,
	// regions kept by memmap= and other non-RAM claims in /proc/iomem.
	Avoided []AvoidedRangeV1 `json:"avoided,omitempty"`
	// EFIDropped is true when the running kernel was booted through EFI:
	// the next kernel gets no EFI runtime services (the legacy loader
	// cannot pass the EFI runtime mapping that kexec_file_load does) and
	// finds ACPI through the RSDP address the running kernel recorded.
	EFIDropped bool `json:"efi_dropped,omitempty"`
}

// DurationsV1 is the v1 form of fastreboot.Durations.
type DurationsV1 struct {
	// Validate checks the manifest, Sync fills the cache, Assemble copies
	// the initrd pieces, Handoff writes the handoff piece and seals the
	// image, Load is kexec_file_load (zero in a dry run).
	Validate time.Duration `json:"validate_ns"`
	Sync     time.Duration `json:"sync_ns"`
	// Segments prepares LoadSegments: checks, memory map, the
	// decompressed kernel (decompressed here when it was not cached).
	Segments time.Duration `json:"segments_ns,omitempty"`
	// Assemble builds the initrd from the cache, Handoff writes the handoff, Load is the kexec system call, Total all of staging.
	Assemble time.Duration `json:"assemble_ns"`
	Handoff  time.Duration `json:"handoff_ns"`
	Load     time.Duration `json:"load_ns"`
	Total    time.Duration `json:"total_ns"`
}

// CacheModuleV1 is the v1 form of modcache.Info.
type CacheModuleV1 struct {
	// Digest is the SHA-256 of the content, lowercase hex; Size its length.
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
	// Names are the module names manifests gave this content.
	Names []string `json:"names"`
	// Origin is OriginStorage, OriginHandoff or OriginAdded.
	Origin string `json:"origin"`
	// Verification is set for an entry adopted without hashing (Adopt):
	// VerificationPending until it is verified (Get verifies it before
	// handing it out), then VerificationVerified. Entries hashed on the way
	// in leave it empty.
	Verification string `json:"verification,omitempty"`
}

// CrashSizingV1 is the v1 form of crashhandler.Sizing.
type CrashSizingV1 struct {
	// Mode is the crash mode sized for.
	Mode string `json:"mode"`
	// Method is LoadSegments for a SegmentsSizing; empty for the file
	// method's RequiredReservation.
	Method string `json:"method,omitempty"`
	// Load is what kexec_file_load places into the reservation.
	Load int64 `json:"load"`
	// Runtime is what the crash kernel needs to run out of the reservation
	// (two-stage only).
	Runtime int64 `json:"runtime"`
	// Reload is what loading the production image again from inside the
	// crash kernel costs (two-stage only).
	Reload int64 `json:"reload"`
	// Total is the reservation to ask for: (Load+Runtime+Reload) plus the
	// struct page overhead, rounded up to ReservationAlign.
	Total int64 `json:"total"`
	// Minimal: sized for a minimal crash initramfs, Total counts
	// max(Load, Runtime+Reload) (see RequiredReservation).
	Minimal bool `json:"minimal_initrd,omitempty"`
}

// CrashkernelV1 is the v1 form of crashhandler.Crashkernel.
type CrashkernelV1 struct {
	// Word is the crashkernel word the kernel goes by ("" if the line has
	// none).
	Word string `json:"word,omitempty"`
	// Size is the reservation in bytes. 0 with a Word: a range form
	// (crashkernel=RANGE:SIZE,...) with no range holding the machine's RAM.
	Size int64 `json:"size"`
	// High: the size comes from crashkernel=SIZE,high (the line has no
	// usable plain crashkernel=); the ",low" part is not counted.
	High bool `json:"high,omitempty"`
}

// CrashCPUV1 is the v1 form of crashhandler.CPUState.
type CrashCPUV1 struct {
	// Note is the note's position among the PRSTATUS notes (the order of
	// possible CPUs, skipping those that saved nothing).
	Note int `json:"note"`
	// PID of the task that ran on the CPU (0: idle).
	PID int `json:"pid"`
	// IP is the instruction pointer saved (x86-64 rip, arm64 pc; 0 if the
	// architecture is not known).
	IP uint64 `json:"ip"`
}

// ModuleV1 is the v1 form of bootimage.Module.
type ModuleV1 struct {
	// Name is unique within a manifest (e.g. "vmlinuz", "base.cpio.gz").
	Name string `json:"name"`
	// Role is "kernel" or "initrd"; Size the length in bytes.
	Role string `json:"role"`
	Size int64  `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the module's bytes.
	SHA256 string `json:"sha256"`
	// Source says where storage holds the module: a path, relative to the
	// manifest's directory unless absolute. Empty for modules that only
	// live in the cache.
	Source string `json:"source,omitempty"`
}

// RecordedCPUV1 is the v1 form of cpustop.RecordedCPU.
type RecordedCPUV1 struct {
	// ID is the Linux CPU number, APICID its APIC id (the stable identity across kernels).
	ID     int `json:"id"`
	APICID int `json:"apic_id"`
}

// AdoptionStatsV1 is the v1 form of modcache.AdoptionStats.
type AdoptionStatsV1 struct {
	// Modules and Bytes count the entries adopted without hashing.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// Pending counts adopted entries still cached and not verified yet
	// (one being verified included).
	Pending int `json:"pending"`
	// Verified counts adopted entries whose digest matched; Failed those
	// whose did not: they were dropped from the cache (Failures says
	// which and why).
	Verified int      `json:"verified"`
	Failed   int      `json:"failed"`
	Failures []string `json:"failures,omitempty"`
	// VerifyTime is the wall time spent hashing adopted entries, summed
	// over them (at low priority in the daemon, so it includes waiting for
	// the CPU).
	VerifyTime time.Duration `json:"verify_ns"`
}

// KernelELFV1 is the v1 form of fastreboot.KernelELF.
type KernelELFV1 struct {
	// Kernel is the SHA-256 of the bzImage it was decompressed from.
	Kernel string `json:"kernel_sha256"`
	// SHA256 and Size are the ELF's.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// MemoryRangeV1 is the v1 form of memmap.Entry.
type MemoryRangeV1 struct {
	// Start is the first byte of the range.
	Start uint64 `json:"start"`
	// End is inclusive, as sysfs prints it.
	End uint64 `json:"end"`
	// Type is the firmware's name of the range, e.g. "System RAM", "Reserved".
	Type string `json:"type"`
}

// SegmentInfoV1 is the v1 form of fastreboot.SegmentInfo.
type SegmentInfoV1 struct {
	// Name says what the segment holds (kernel, initrd, boot params, ...).
	Name string `json:"name"`
	// Phys is the physical address, Size the bytes reserved there, Bytes
	// those copied (the rest is zeroed).
	Phys  uint64 `json:"phys"`
	Size  uint64 `json:"size"`
	Bytes int64  `json:"bytes"`
}

// AvoidedRangeV1 is the v1 form of memmap.Avoided.
type AvoidedRangeV1 struct {
	// Start is the first byte of the range kept free.
	Start uint64 `json:"start"`
	// End is exclusive.
	End uint64 `json:"end"`
	// Why says why the range was kept free of segments.
	Why string `json:"why"`
}

func generationStateV1Of(s fastreboot.State) GenerationStateV1 {
	return GenerationStateV1{
		Generation:     s.Generation,
		Reason:         string(s.Reason),
		Timeline:       timelineV1Of(s.Timeline),
		Resumed:        s.Resumed,
		Manifest:       manifestV1Ptr(s.Manifest),
		Carried:        s.Carried,
		Rehydrated:     rehydrateReportV1Of(s.Rehydrated),
		RehydrateTime:  s.RehydrateTime,
		RehydrateError: s.RehydrateError,
		Restarted:      s.Restarted,
		CarriedLost:    s.CarriedLost,
		CPUs:           cpuCheckV1Ptr(s.CPUs),
		CPUsError:      s.CPUsError,
		CPURecord:      cpuRecordV1Ptr(s.CPURecord),
		ManifestPath:   manifestPathOf(s.Origin),
		Trust:          trustStateV1Ptr(s.Trust),
		Carrier:        s.Carrier,
		Kept:           keptStateV1Ptr(s.Kept),
	}
}

func keptRegionV1Of(r keptmem.Region) KeptRegionV1 { return KeptRegionV1{Start: r.Start, Size: r.Size} }

func keptStateV1Ptr(p *fastreboot.KeptState) *KeptStateV1 {
	if p == nil {
		return nil
	}
	return &KeptStateV1{Device: p.Device, Region: keptRegionV1Of(p.Region), Sequence: p.Sequence}
}

func keptReportV1Ptr(p *fastreboot.KeptReport) *KeptReportV1 {
	if p == nil {
		return nil
	}
	return &KeptReportV1{Device: p.Device, Region: keptRegionV1Of(p.Region), CacheSize: p.CacheSize, Sequence: p.Sequence,
		Modules: p.Modules, Bytes: p.Bytes, Written: p.Written, Took: p.Took}
}

func manifestPathOf(o *fastreboot.ManifestOrigin) string {
	if o == nil {
		return ""
	}
	return o.Path
}

func cpuStatusV1Of(s cpuStatus) CpuStatusV1 {
	return CpuStatusV1{
		Online: s.Online,
		Check:  cpuCheckV1Ptr(s.Check),
		Error:  s.Error,
	}
}

func preflightV1Of(s fastreboot.Report) PreflightV1 {
	return PreflightV1{
		Checks:      preflightCheckV1s(s.Checks),
		Lockdown:    s.Lockdown,
		KexecLoaded: s.KexecLoaded,
		CrashLoaded: s.CrashLoaded,
	}
}

func agentInfoV1Of(s agent.Info) AgentInfoV1 {
	return AgentInfoV1{
		Daemon:     s.Daemon,
		PID:        s.PID,
		Started:    s.Started,
		Generation: s.Generation,
		Reason:     string(s.Reason),
		Current:    s.Current,
		Cache:      cacheStatsV1Of(s.Cache),
		Staged:     stageReportV1Ptr(s.Staged),
		KernelELF:  kernelELFStatusV1Ptr(s.KernelELF),
		Warnings:   slices.Clone(s.Warnings),
	}
}

func crashStatusReportV1Of(s crashpath.StatusReport) CrashStatusReportV1 {
	return CrashStatusReportV1{
		Supported:        s.StatusReport.Supported,
		Armed:            s.StatusReport.Armed,
		ReservationBytes: s.StatusReport.ReservationBytes,
		Mode:             string(s.StatusReport.Mode),
		State:            crashArmStateV1Ptr(s.StatusReport.State),
		Faults:           faultStatusV1s(s.StatusReport.Faults),
		Generation:       s.Generation,
		Reason:           string(s.Reason),
		MemoryMapRAM:     s.MemoryMapRAM,
		Last:             crashEvidenceV1Ptr(s.Last),
		Warnings:         slices.Clone(s.Warnings),
	}
}

func stageReportV1Of(s fastreboot.StageReport) StageReportV1 {
	return StageReportV1{
		Manifest:       s.Manifest,
		KernelSHA256:   s.KernelSHA256,
		CmdlineBytes:   s.CmdlineBytes,
		Cmdline:        s.Cmdline,
		Generation:     s.Generation,
		Reason:         string(s.Reason),
		DryRun:         s.DryRun,
		Loaded:         s.Loaded,
		Load:           string(s.Load),
		Segments:       segmentsReportV1Ptr(s.Segments),
		LoadFallback:   s.LoadFallback,
		Sync:           syncReportV1Of(s.Sync),
		Hashed:         hashReportV1Ptr(s.Hashed),
		BytesRead:      s.BytesRead,
		InitrdBytes:    s.InitrdBytes,
		PiecesBytes:    s.PiecesBytes,
		PaddingBytes:   s.PaddingBytes,
		HandoffBytes:   s.HandoffBytes,
		CarriedModules: s.CarriedModules,
		CarriedBytes:   s.CarriedBytes,
		CopiedInKernel: s.CopiedInKernel,
		CopiedInUser:   s.CopiedInUser,
		Carrier:        s.Carrier.String(),
		CarrierWarning: s.CarrierWarning,
		Kept:           keptReportV1Ptr(s.Kept),
		Timeline:       timelineV1Of(s.Timeline),
		Durations:      durationsV1Of(s.Durations),
	}
}

func rebootPlanV1Of(s fastreboot.RebootPlan) RebootPlanV1 {
	return RebootPlanV1{
		Mode:     s.Mode,
		Why:      s.Why,
		Staged:   stageReportV1Ptr(s.Staged),
		DryRun:   s.DryRun,
		StopCPUs: string(s.StopCPUs),
	}
}

func cacheListingV1Of(s agent.CacheListing) CacheListingV1 {
	return CacheListingV1{
		Stats:   cacheStatsV1Of(s.Stats),
		Modules: cacheModuleV1s(s.Modules),
	}
}

func syncReportV1Of(s modcache.SyncReport) SyncReportV1 {
	return SyncReportV1{
		Hits:      s.Hits,
		Misses:    s.Misses,
		BytesRead: s.BytesRead,
		Read:      slices.Clone(s.Read),
		Warnings:  slices.Clone(s.Warnings),
	}
}

func verifyReportV1Of(s modcache.VerifyReport) VerifyReportV1 {
	return VerifyReportV1{
		Modules: s.Modules,
		Bytes:   s.Bytes,
		Bad:     slices.Clone(s.Bad),
	}
}

func evictReportV1Of(s modcache.EvictReport) EvictReportV1 {
	return EvictReportV1{
		Modules: s.Modules,
		Bytes:   s.Bytes,
	}
}

func manifestDiffV1Of(s bootimage.ManifestDiff) ManifestDiffV1 {
	return ManifestDiffV1{
		Added:          slices.Clone(s.Added),
		Removed:        slices.Clone(s.Removed),
		Changed:        slices.Clone(s.Changed),
		CmdlineChanged: s.CmdlineChanged,
		OrderChanged:   s.OrderChanged,
	}
}

func crashArmReportV1Of(s crashpath.ArmReport) CrashArmReportV1 {
	return CrashArmReportV1{
		Armed:         s.Armed,
		Why:           s.Why,
		State:         crashArmStateV1Ptr(s.State),
		Image:         stageReportV1Ptr(s.Image),
		MemoryMapFrom: s.MemoryMapFrom,
		Initrd:        string(s.Initrd),
		Took:          s.Took,
		Decision:      rollbackDecisionV1Ptr(s.Decision),
		Warnings:      slices.Clone(s.Warnings),
	}
}

func crashEstimateReportV1Of(s crashpath.EstimateReport) CrashEstimateReportV1 {
	return CrashEstimateReportV1{
		Mode:             string(s.Estimate.Mode),
		Name:             s.Estimate.Name,
		KernelBytes:      s.Estimate.KernelBytes,
		InitrdBytes:      s.Estimate.InitrdBytes,
		Sizing:           crashSizingV1Of(s.Estimate.Sizing),
		Breakdown:        s.Estimate.Breakdown,
		Crashkernel:      s.Estimate.Crashkernel,
		Supported:        s.Estimate.Supported,
		ReservationBytes: s.Estimate.ReservationBytes,
		Fits:             s.Estimate.Fits,
		Cmdline:          s.Estimate.Cmdline,
		NextCmdline:      s.Estimate.NextCmdline,
		NextCrashkernel:  crashkernelV1Of(s.Estimate.NextCrashkernel),
		Problems:         slices.Clone(s.Estimate.Problems),
		From:             s.From,
		Image:            stageReportV1Ptr(s.Image),
		Initrd:           string(s.Initrd),
	}
}

func crashEvidenceV1Of(s crashhandler.Evidence) CrashEvidenceV1 {
	return CrashEvidenceV1{
		Time:                s.Time,
		Reason:              s.Reason,
		Cause:               s.Cause,
		CPU:                 s.CPU,
		KernelRelease:       s.KernelRelease,
		Log:                 slices.Clone(s.Log),
		LogLines:            s.LogLines,
		CPUs:                crashCPUV1s(s.CPUs),
		Problems:            slices.Clone(s.Problems),
		Generation:          s.Generation,
		Mode:                string(s.Mode),
		Source:              s.Source,
		ProductionKernel:    s.ProductionKernel,
		ProductionKernelWhy: s.ProductionKernelWhy,
	}
}

func recoverReportV1Of(s crashpath.RecoverReport) RecoverReportV1 {
	return RecoverReportV1{
		Mode:             string(s.Mode),
		Evidence:         crashEvidenceV1Ptr(s.Evidence),
		EvidenceFrom:     s.EvidenceFrom,
		EvidenceError:    s.EvidenceError,
		PstoreBackend:    s.PstoreBackend,
		Warnings:         slices.Clone(s.Warnings),
		MemoryMapCheck:   s.MemoryMapCheck,
		Staged:           stageReportV1Ptr(s.Staged),
		Cmdline:          s.Cmdline,
		EvidenceAt:       s.EvidenceAt,
		Took:             s.Took,
		KernelUptime:     s.KernelUptime,
		KernelELFMapTook: s.KernelELFMapTook,
	}
}

func timelineV1Of(s fastreboot.Timeline) TimelineV1 {
	return TimelineV1{
		StageStart:      s.StageStart,
		StageEnd:        s.StageEnd,
		RebootRequested: s.RebootRequested,
	}
}

func manifestV1Of(s bootimage.Manifest) ManifestV1 {
	return ManifestV1{
		Version: s.Version,
		Name:    s.Name,
		Cmdline: s.Cmdline,
		Modules: moduleV1s(s.Modules),
	}
}

func rehydrateReportV1Of(s modcache.RehydrateReport) RehydrateReportV1 {
	return RehydrateReportV1{
		Modules:    s.Modules,
		Bytes:      s.Bytes,
		Unverified: s.Unverified,
	}
}

func cpuCheckV1Of(s cpustop.Report) CpuCheckV1 {
	return CpuCheckV1{
		MatchedBy: s.MatchedBy,
		Expected:  s.Expected,
		Online:    s.Online,
		Missing:   recordedCPUV1s(s.Missing),
		Added:     recordedCPUV1s(s.Added),
	}
}

func cpuRecordV1Of(s cpustop.Record) CpuRecordV1 {
	return CpuRecordV1{
		BootCPU:    s.BootCPU,
		BootAPICID: s.BootAPICID,
		Online:     recordedCPUV1s(s.Online),
	}
}

func preflightCheckV1Of(s fastreboot.Check) PreflightCheckV1 {
	return PreflightCheckV1{
		Name:   s.Name,
		OK:     s.OK,
		Detail: s.Detail,
	}
}

func cacheStatsV1Of(s modcache.Stats) CacheStatsV1 {
	return CacheStatsV1{
		Modules:         s.Modules,
		BytesHeld:       s.BytesHeld,
		OverheadBytes:   s.OverheadBytes,
		Hits:            s.Hits,
		Misses:          s.Misses,
		BytesRead:       s.BytesRead,
		BytesAdded:      s.BytesAdded,
		BytesRehydrated: s.BytesRehydrated,
		Adoption:        adoptionStatsV1Of(s.Adoption),
	}
}

func kernelELFStatusV1Of(s agent.KernelELFStatus) KernelELFStatusV1 {
	return KernelELFStatusV1{
		State:        s.State,
		ELF:          kernelELFV1Of(s.ELF),
		Decompressed: s.Decompressed,
		Took:         s.Took,
		Error:        s.Error,
	}
}

func crashArmStateV1Of(s crashhandler.State) CrashArmStateV1 {
	return CrashArmStateV1{
		Version:          s.Version,
		ArmedAt:          s.ArmedAt,
		Mode:             string(s.Mode),
		Load:             string(s.Load),
		LoadFallback:     s.LoadFallback,
		Cmdline:          s.Cmdline,
		Name:             s.Name,
		Digest:           s.Digest,
		KernelBytes:      s.KernelBytes,
		InitrdBytes:      s.InitrdBytes,
		ImageBytes:       s.ImageBytes,
		Sizing:           crashSizingV1Of(s.Sizing),
		ReservationBytes: s.ReservationBytes,
		Previous:         maps.Clone(s.Previous),
		MemoryMap:        memoryRangeV1s(s.MemoryMap),
		Warnings:         slices.Clone(s.Warnings),
		Firmware:         s.Firmware,
	}
}

func faultStatusV1Of(s crashhandler.FaultStatus) FaultStatusV1 {
	return FaultStatusV1{
		Name:      s.Name,
		Value:     s.Value,
		Supported: s.Supported,
		Routed:    s.Routed,
		Previous:  s.Previous,
	}
}

func segmentsReportV1Of(s fastreboot.SegmentsReport) SegmentsReportV1 {
	return SegmentsReportV1{
		KernelELF:       kernelELFV1Of(s.KernelELF),
		Compressed:      s.Compressed,
		KernelELFMapped: s.KernelELFMapped,
		Decompressed:    s.Decompressed,
		DecompressTime:  s.DecompressTime,
		Entry:           s.Entry,
		KernelEntry:     s.KernelEntry,
		BootParams:      s.BootParams,
		KernelStart:     s.KernelStart,
		KernelEnd:       s.KernelEnd,
		Relocated:       s.Relocated,
		Segments:        segmentInfoV1s(s.Segments),
		MemoryMap:       s.MemoryMap,
		E820Entries:     s.E820Entries,
		Avoided:         avoidedRangeV1s(s.Avoided),
		EFIDropped:      s.EFIDropped,
	}
}

func durationsV1Of(s fastreboot.Durations) DurationsV1 {
	return DurationsV1{
		Validate: s.Validate,
		Sync:     s.Sync,
		Segments: s.Segments,
		Assemble: s.Assemble,
		Handoff:  s.Handoff,
		Load:     s.Load,
		Total:    s.Total,
	}
}

func cacheModuleV1Of(s modcache.Info) CacheModuleV1 {
	return CacheModuleV1{
		Digest:       s.Digest,
		Size:         s.Size,
		Names:        slices.Clone(s.Names),
		Origin:       s.Origin,
		Verification: s.Verification,
	}
}

func crashSizingV1Of(s crashhandler.Sizing) CrashSizingV1 {
	return CrashSizingV1{
		Mode:    string(s.Mode),
		Method:  string(s.Method),
		Load:    s.Load,
		Runtime: s.Runtime,
		Reload:  s.Reload,
		Total:   s.Total,
		Minimal: s.Minimal,
	}
}

func crashkernelV1Of(s crashhandler.Crashkernel) CrashkernelV1 {
	return CrashkernelV1{
		Word: s.Word,
		Size: s.Size,
		High: s.High,
	}
}

func crashCPUV1Of(s crashhandler.CPUState) CrashCPUV1 {
	return CrashCPUV1{
		Note: s.Note,
		PID:  s.PID,
		IP:   s.IP,
	}
}

func moduleV1Of(s bootimage.Module) ModuleV1 {
	return ModuleV1{
		Name:   s.Name,
		Role:   string(s.Role),
		Size:   s.Size,
		SHA256: s.SHA256,
		Source: s.Source,
	}
}

func recordedCPUV1Of(s cpustop.RecordedCPU) RecordedCPUV1 {
	return RecordedCPUV1{
		ID:     s.ID,
		APICID: s.APICID,
	}
}

func adoptionStatsV1Of(s modcache.AdoptionStats) AdoptionStatsV1 {
	return AdoptionStatsV1{
		Modules:    s.Modules,
		Bytes:      s.Bytes,
		Pending:    s.Pending,
		Verified:   s.Verified,
		Failed:     s.Failed,
		Failures:   slices.Clone(s.Failures),
		VerifyTime: s.VerifyTime,
	}
}

func kernelELFV1Of(s fastreboot.KernelELF) KernelELFV1 {
	return KernelELFV1{
		Kernel: s.Kernel,
		SHA256: s.SHA256,
		Size:   s.Size,
	}
}

func memoryRangeV1Of(s memmap.Entry) MemoryRangeV1 {
	return MemoryRangeV1{
		Start: s.Start,
		End:   s.End,
		Type:  s.Type,
	}
}

func segmentInfoV1Of(s fastreboot.SegmentInfo) SegmentInfoV1 {
	return SegmentInfoV1{
		Name:  s.Name,
		Phys:  s.Phys,
		Size:  s.Size,
		Bytes: s.Bytes,
	}
}

func avoidedRangeV1Of(s memmap.Avoided) AvoidedRangeV1 {
	return AvoidedRangeV1{
		Start: s.Start,
		End:   s.End,
		Why:   s.Why,
	}
}

func manifestV1Ptr(p *bootimage.Manifest) *ManifestV1 {
	if p == nil {
		return nil
	}
	v := manifestV1Of(*p)
	return &v
}

func cpuCheckV1Ptr(p *cpustop.Report) *CpuCheckV1 {
	if p == nil {
		return nil
	}
	v := cpuCheckV1Of(*p)
	return &v
}

func cpuRecordV1Ptr(p *cpustop.Record) *CpuRecordV1 {
	if p == nil {
		return nil
	}
	v := cpuRecordV1Of(*p)
	return &v
}

func preflightCheckV1s(in []fastreboot.Check) []PreflightCheckV1 {
	if in == nil {
		return nil
	}
	out := make([]PreflightCheckV1, len(in))
	for i, v := range in {
		out[i] = preflightCheckV1Of(v)
	}
	return out
}

func stageReportV1Ptr(p *fastreboot.StageReport) *StageReportV1 {
	if p == nil {
		return nil
	}
	v := stageReportV1Of(*p)
	return &v
}

func kernelELFStatusV1Ptr(p *agent.KernelELFStatus) *KernelELFStatusV1 {
	if p == nil {
		return nil
	}
	v := kernelELFStatusV1Of(*p)
	return &v
}

func crashArmStateV1Ptr(p *crashhandler.State) *CrashArmStateV1 {
	if p == nil {
		return nil
	}
	v := crashArmStateV1Of(*p)
	return &v
}

func faultStatusV1s(in []crashhandler.FaultStatus) []FaultStatusV1 {
	if in == nil {
		return nil
	}
	out := make([]FaultStatusV1, len(in))
	for i, v := range in {
		out[i] = faultStatusV1Of(v)
	}
	return out
}

func crashEvidenceV1Ptr(p *crashhandler.Evidence) *CrashEvidenceV1 {
	if p == nil {
		return nil
	}
	v := crashEvidenceV1Of(*p)
	return &v
}

func segmentsReportV1Ptr(p *fastreboot.SegmentsReport) *SegmentsReportV1 {
	if p == nil {
		return nil
	}
	v := segmentsReportV1Of(*p)
	return &v
}

func cacheModuleV1s(in []modcache.Info) []CacheModuleV1 {
	if in == nil {
		return nil
	}
	out := make([]CacheModuleV1, len(in))
	for i, v := range in {
		out[i] = cacheModuleV1Of(v)
	}
	return out
}

func crashCPUV1s(in []crashhandler.CPUState) []CrashCPUV1 {
	if in == nil {
		return nil
	}
	out := make([]CrashCPUV1, len(in))
	for i, v := range in {
		out[i] = crashCPUV1Of(v)
	}
	return out
}

func moduleV1s(in []bootimage.Module) []ModuleV1 {
	if in == nil {
		return nil
	}
	out := make([]ModuleV1, len(in))
	for i, v := range in {
		out[i] = moduleV1Of(v)
	}
	return out
}

func recordedCPUV1s(in []cpustop.RecordedCPU) []RecordedCPUV1 {
	if in == nil {
		return nil
	}
	out := make([]RecordedCPUV1, len(in))
	for i, v := range in {
		out[i] = recordedCPUV1Of(v)
	}
	return out
}

func memoryRangeV1s(in memmap.Map) []MemoryRangeV1 {
	if in == nil {
		return nil
	}
	out := make([]MemoryRangeV1, len(in))
	for i, v := range in {
		out[i] = memoryRangeV1Of(v)
	}
	return out
}

func segmentInfoV1s(in []fastreboot.SegmentInfo) []SegmentInfoV1 {
	if in == nil {
		return nil
	}
	out := make([]SegmentInfoV1, len(in))
	for i, v := range in {
		out[i] = segmentInfoV1Of(v)
	}
	return out
}

func avoidedRangeV1s(in []memmap.Avoided) []AvoidedRangeV1 {
	if in == nil {
		return nil
	}
	out := make([]AvoidedRangeV1, len(in))
	for i, v := range in {
		out[i] = avoidedRangeV1Of(v)
	}
	return out
}

// BootEntryV1 is the v1 form of bootentry.Entry.
type BootEntryV1 struct {
	// ID is what stage --entry takes.
	ID string `json:"id"`
	// Title is what the boot menu shows.
	Title string `json:"title"`
	// Version is the kernel version when the source says it.
	Version string `json:"version,omitempty"`
	// Source is bls, grub or debian-links.
	Source string `json:"source"`
	// Kernel and Initrds are the files' absolute paths, initrds in unpack order.
	Kernel  string   `json:"kernel,omitempty"`
	Initrds []string `json:"initrds,omitempty"`
	// Cmdline is the entry's command line; CmdlineFromRunning says the
	// entry has none (Debian's links) and staging uses the running one.
	Cmdline            string `json:"cmdline,omitempty"`
	CmdlineFromRunning bool   `json:"cmdline_from_running,omitempty"`
	// Config is the file that defines the entry (with its line for grub.cfg).
	Config string `json:"config"`
	// Default marks the entry stage --default stages.
	Default bool `json:"default,omitempty"`
	// Error says why the entry cannot be staged (a missing file, no
	// initrd, a grub.cfg construct not followed); absent when it can.
	Error string `json:"error,omitempty"`
}

func bootEntryV1Of(e bootentry.Entry, dflt bool) BootEntryV1 {
	d := BootEntryV1{
		ID:                 e.ID,
		Title:              e.Title,
		Version:            e.Version,
		Source:             string(e.Source),
		Kernel:             e.Kernel,
		Initrds:            slices.Clone(e.Initrds),
		Cmdline:            e.Cmdline,
		CmdlineFromRunning: e.CmdlineFromRunning,
		Config:             e.Config,
		Default:            dflt,
	}
	if e.Err != nil {
		d.Error = e.Err.Error()
	}
	return d
}

// HashReportV1 is the v1 form of fastreboot.HashReport.
type HashReportV1 struct {
	// Files is the number of files described; Hits those the stat index
	// answered for (not read); Hashed those read and hashed; Racy those of
	// `hashed` whose record matched but was too recent to trust.
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

func hashReportV1Ptr(h *fastreboot.HashReport) *HashReportV1 {
	if h == nil {
		return nil
	}
	return &HashReportV1{Files: h.Files, Hits: h.Hits, Hashed: h.Hashed, Racy: h.Racy, BytesRead: h.BytesRead, Read: slices.Clone(h.Read)}
}

// RollbackInfoV1 is the v1 form of agent.RollbackInfo: the boot
// assessment of the running generation, as the daemon keeps it.
type RollbackInfoV1 struct {
	// Generation is the running generation; OnTrial says whether it runs
	// an image on trial (not proven good yet: a crash, a missed deadline
	// or a failed health command boots last-known-good).
	Generation int  `json:"generation"`
	OnTrial    bool `json:"on_trial"`
	// Good is the last-known-good image; absent when none is known (a
	// cold boot whose image was never named).
	Good *RollbackImageV1 `json:"good,omitempty"`
	// Fallback is the good image before Good: where a crash loop of Good
	// goes; absent when there is none, and a crash loop of Good reboots
	// through the firmware.
	Fallback *RollbackImageV1 `json:"fallback,omitempty"`
	// Trial is the image on trial and what it must do to be blessed;
	// absent when no generation is on trial.
	Trial *RollbackTrialV1 `json:"trial,omitempty"`
	// Deadline is when the trial's deadline passes (the daemon's start
	// plus the trial's `deadline_ns`); absent when there is none or the
	// generation is not on trial.
	Deadline time.Time `json:"deadline,omitzero"`
	// Health is the trial's health command as the daemon ran it; absent
	// when there is none or it has not started.
	Health *HealthStatusV1 `json:"health,omitempty"`
	// Policy is the crash-loop protection.
	Policy RollbackPolicyV1 `json:"policy"`
	// Crashes are the times of the running image's recent crashes,
	// oldest first, as counted when the generation started (those
	// older than the window then were dropped).
	Crashes []time.Time `json:"crashes,omitempty"`
	// NextCrash is what a crash of this generation boots now.
	NextCrash RollbackDecisionV1 `json:"next_crash"`
	// History is the last events of the assessment (at most 16), oldest
	// first.
	History []RollbackEventV1 `json:"history,omitempty"`
	// RollingBack says why a rollback is under way (or why it failed);
	// absent when none is.
	RollingBack string `json:"rolling_back,omitempty"`
	// PreviousBoot is what the cold boot that started this boot knew of
	// the boot before it: the record that boot's daemon kept on disk
	// (`daemon --persist-dir`) and its last panic from pstore; absent when
	// it knew nothing.
	PreviousBoot *RollbackPreviousBootV1 `json:"previous_boot,omitempty"`
}

// RollbackPreviousBootV1 is the v1 form of rollback.PreviousBoot.
type RollbackPreviousBootV1 struct {
	// BootID is the kernel's boot id of that boot; Generation its last
	// generation that saved the record, at SavedAt.
	BootID     string    `json:"boot_id,omitempty"`
	Generation int       `json:"generation,omitempty"`
	SavedAt    time.Time `json:"saved_at,omitzero"`
	// Armed is what its crash path was last armed with (action "firmware":
	// no crash image, a panic rebooted through the firmware); absent when
	// it was not armed.
	Armed *RollbackDecisionV1 `json:"armed,omitempty"`
	// Ended says, in a sentence, how it ended as far as the record and
	// pstore tell.
	Ended string `json:"ended"`
	// Panic is its last panic (panic line and cause) from pstore, at
	// PanicAt; absent when pstore kept none newer than the record.
	Panic   string    `json:"panic,omitempty"`
	PanicAt time.Time `json:"panic_at,omitzero"`
	// History is its history, oldest first: the chain of crashes and
	// rollbacks that led to its end.
	History []RollbackEventV1 `json:"history,omitempty"`
}

// RollbackImageV1 is the v1 form of rollback.Image: an image known to be
// good.
type RollbackImageV1 struct {
	// ID names the image by its modules (16 hex digits of a SHA-256 over
	// each module's role and digest; the command line is not part of it);
	// Name is its manifest's name.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Generation is the generation that proved it good (blessed it, or
	// booted it cold).
	Generation int `json:"generation"`
	// Since is when it became good; By says how: "cold boot", "bless",
	// "health command", "crash loop fallback".
	Since time.Time `json:"since,omitzero"`
	By    string    `json:"by,omitempty"`
}

// RollbackTrialV1 is the v1 form of rollback.Trial: a generation booted
// from an image not proven good yet.
type RollbackTrialV1 struct {
	// ID and Name name the image on trial, as in `good`.
	ID   string `json:"id"`
	Name string `json:"name,omitempty"`
	// Generation is the generation on trial; Since when its image was
	// staged.
	Generation int       `json:"generation"`
	Since      time.Time `json:"since,omitzero"`
	// Deadline, when set, is how long after the trial generation's
	// daemon starts a bless may come; past it the daemon rolls back.
	Deadline time.Duration `json:"deadline_ns,omitempty"`
	// Health, when set, is the command (argv) the trial generation's
	// daemon runs: exit 0 within HealthTimeout (0: 5 minutes) blesses,
	// anything else rolls back.
	Health        []string      `json:"health,omitempty"`
	HealthTimeout time.Duration `json:"health_timeout_ns,omitempty"`
}

// RollbackPolicyV1 is the v1 form of rollback.Policy.
type RollbackPolicyV1 struct {
	// MaxCrashes is K: the K-th crash of one image within Window leaves
	// it (for the fallback image, or the firmware).
	MaxCrashes int           `json:"max_crashes"`
	Window     time.Duration `json:"window_ns"`
}

// RollbackDecisionV1 is the v1 form of rollback.Decision: what a crash
// boots.
type RollbackDecisionV1 struct {
	// Action is "crash" (recover into the same image), "rollback" (boot
	// `image`: last-known-good, or the fallback after a crash loop) or
	// "firmware" (nothing armed: the panic reboots through the firmware).
	Action string `json:"action"`
	// Image is the image a rollback boots; absent otherwise.
	Image *RollbackImageV1 `json:"image,omitempty"`
	// Why says why, in a sentence.
	Why string `json:"why"`
	// LoopEnds is when the oldest counted crash leaves the window: a
	// crash after it may be decided otherwise; absent when no crash is
	// counted.
	LoopEnds time.Time `json:"loop_ends,omitzero"`
}

// RollbackEventV1 is the v1 form of rollback.Event: one line of the
// history.
type RollbackEventV1 struct {
	// Generation is the generation the event is about; Reason what
	// happened: cold, update, manual, crash, rollback, bless, firmware.
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
	// Image is the label (name@id) of the image it concerns.
	Image string `json:"image,omitempty"`
	// At is when it happened; Note says more (a trial's end, a crash's
	// cause, who blessed).
	At   time.Time `json:"at,omitzero"`
	Note string    `json:"note,omitempty"`
}

// HealthStatusV1 is the v1 form of agent.HealthStatus: the trial's health
// command as the daemon ran it.
type HealthStatusV1 struct {
	// Command is the argv.
	Command []string `json:"command"`
	// State is "running", "passed" or "failed".
	State string `json:"state"`
	// ExitCode is the command's exit code (-1 while it runs, or when it
	// was killed); Error says why it failed.
	ExitCode int    `json:"exit_code"`
	Error    string `json:"error,omitempty"`
	// Output is the last bytes (at most 2048) of its stdout and stderr.
	Output string `json:"output,omitempty"`
	// Took is how long it ran.
	Took time.Duration `json:"took_ns"`
}

func rollbackInfoV1Ptr(p *agent.RollbackInfo) *RollbackInfoV1 {
	if p == nil {
		return nil
	}
	s := p.State
	v := RollbackInfoV1{
		Generation:  p.Generation,
		OnTrial:     p.OnTrial,
		Good:        rollbackImageV1Ptr(s.Good),
		Fallback:    rollbackImageV1Ptr(s.Fallback),
		Deadline:    p.Deadline,
		Policy:      RollbackPolicyV1{MaxCrashes: s.Policy.MaxCrashes, Window: s.Policy.Window},
		Crashes:     slices.Clone(s.Crashes),
		NextCrash:   rollbackDecisionV1Of(p.NextCrash),
		RollingBack: p.RollingBack,
	}
	if t := s.Trial; t != nil {
		v.Trial = &RollbackTrialV1{
			ID: t.ID, Name: t.Name, Generation: t.Generation, Since: t.Since,
			Deadline: t.Deadline, Health: slices.Clone(t.Health), HealthTimeout: t.HealthTimeout,
		}
	}
	if h := p.Health; h != nil {
		v.Health = &HealthStatusV1{Command: slices.Clone(h.Command), State: h.State, ExitCode: h.ExitCode, Error: h.Error, Output: h.Output, Took: h.Took}
	}
	v.History = rollbackEventsV1(s.History)
	if pb := s.Previous; pb != nil {
		v.PreviousBoot = &RollbackPreviousBootV1{
			BootID: pb.BootID, Generation: pb.Generation, SavedAt: pb.SavedAt, Armed: rollbackDecisionV1Ptr(pb.Armed),
			Ended: pb.Ending(), Panic: pb.Panic, PanicAt: pb.PanicAt, History: rollbackEventsV1(pb.History),
		}
	}
	return &v
}

func rollbackEventsV1(evs []rollback.Event) []RollbackEventV1 {
	var v []RollbackEventV1
	for _, e := range evs {
		v = append(v, RollbackEventV1{Generation: e.Generation, Reason: e.Reason, Image: e.Image, At: e.At, Note: e.Note})
	}
	return v
}

func rollbackImageV1Of(s rollback.Image) RollbackImageV1 {
	return RollbackImageV1{ID: s.ID, Name: s.Manifest.Name, Generation: s.Generation, Since: s.Since, By: s.By}
}

func rollbackImageV1Ptr(p *rollback.Image) *RollbackImageV1 {
	if p == nil {
		return nil
	}
	v := rollbackImageV1Of(*p)
	return &v
}

func rollbackDecisionV1Of(s rollback.Decision) RollbackDecisionV1 {
	return RollbackDecisionV1{Action: string(s.Action), Image: rollbackImageV1Ptr(s.Image), Why: s.Why, LoopEnds: s.LoopEnds}
}

func rollbackDecisionV1Ptr(p *rollback.Decision) *RollbackDecisionV1 {
	if p == nil {
		return nil
	}
	v := rollbackDecisionV1Of(*p)
	return &v
}

// KeptRegionV1 is the v1 form of keptmem.Region.
type KeptRegionV1 struct {
	// Start is the region's physical address.
	Start uint64 `json:"start"`
	// Size is its length in bytes.
	Size uint64 `json:"size"`
}

// PreservedAreaV1 is the v1 form of preserve.Area.
type PreservedAreaV1 struct {
	// Name names the area (letters, digits, '.', '_', '-').
	Name string `json:"name"`
	// Offset is where the area starts on the device: the offset a
	// workload maps it at.
	Offset int64 `json:"offset"`
	// Size is its length in bytes, a multiple of 4096.
	Size int64 `json:"size"`
	// Cgroup is the workload's cgroup v2 path under the hierarchy's root
	// (e.g. "/work"), frozen before a fast reboot; absent: none.
	Cgroup string `json:"cgroup,omitempty"`
	// Generation is the generation that created the area.
	Generation int `json:"generation"`
	// Created is when it was created (second resolution).
	Created time.Time `json:"created"`
}
