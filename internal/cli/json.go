package cli

import (
	"encoding/hex"
	"slices"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootentry"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// The --json output is a contract of its own (docs/json.md): every command
// prints one document whose first field, "schema", names its shape and
// version. Version 1 documents keep the field names the output had before
// the schemas existed, so programs that read those keep working. Adding a
// field keeps the version; renaming, removing or retyping one, or changing
// what it means, makes a new version.
const (
	schemaStatus           = "fastreboot.status.v1"
	schemaStage            = "fastreboot.stage.v1"
	schemaReboot           = "fastreboot.reboot.v1"
	schemaCacheLs          = "fastreboot.cache.ls.v1"
	schemaCacheVerify      = "fastreboot.cache.verify.v1"
	schemaCacheSync        = "fastreboot.cache.sync.v1"
	schemaCacheEvict       = "fastreboot.cache.evict.v1"
	schemaManifestDiff     = "fastreboot.manifest.diff.v1"
	schemaManifestValidate = "fastreboot.manifest.validate.v1"
	schemaCrashArm         = "fastreboot.crash.arm.v1"
	schemaCrashEstimate    = "fastreboot.crash.estimate.v1"
	schemaCrashDisarm      = "fastreboot.crash.disarm.v1"
	schemaCrashStatus      = "fastreboot.crash.status.v1"
	schemaCrashLast        = "fastreboot.crash.last.v1"
	schemaCrashRecover     = "fastreboot.crash.recover.v1"
	schemaKeyVerify        = "fastreboot.key.verify.v1"
	schemaError            = "fastreboot.error.v1"
	schemaEntries          = "fastreboot.entries.v1"
	schemaPreserveLs       = "fastreboot.preserve.ls.v1"
	schemaBless            = "fastreboot.bless.v1"
	schemaRollback         = "fastreboot.rollback.v1"
	schemaKeptPlan         = "fastreboot.kept.plan.v1"
	schemaKeptStatus       = "fastreboot.kept.status.v1"
)

// StatusV1 is `fastreboot status --json`.
type StatusV1 struct {
	Schema string `json:"schema"`
	// Generation counts kernels since the cold boot, which is 1.
	Generation int `json:"generation"`
	// Reason is why this generation booted: cold, update, manual or crash.
	Reason string `json:"reason"`
	// Manifest names the image this generation runs, if known.
	Manifest string `json:"manifest,omitempty"`
	// Timeline: the previous generation's stage times (from the handoff),
	// when this kernel started (now minus uptime) and when this
	// generation's userspace resumed the handoff.
	Timeline StatusTimelineV1 `json:"timeline"`
	// State is the generation's saved state (nil if none was saved).
	State *GenerationStateV1 `json:"state,omitempty"`
	// CPUs: online now, and whether the CPUs of the previous generation
	// all came back (a CPU missing is a problem).
	CPUs *CpuStatusV1 `json:"cpus,omitempty"`
	// Preflight is whether this kernel can kexec, and what is loaded.
	Preflight PreflightV1 `json:"preflight"`
	// Agent is the daemon's answer; nil when no daemon runs.
	Agent *AgentInfoV1 `json:"agent,omitempty"`
	// Problems are what status --check fails on.
	Problems []string `json:"problems,omitempty"`
	// Crash is the crash path: armed or not, and the last crash's evidence.
	Crash *CrashStatusReportV1 `json:"crash,omitempty"`
	// Trust is the trust root manifests are checked against (the daemon's
	// when one answers, else this command's); absent when none is set:
	// then manifests need no signature.
	Trust *TrustInfoV1 `json:"trust,omitempty"`
	// RebootPath is how `fastreboot reboot` reboots here: "systemd"
	// (systemctl kexec: services stopped, file systems unmounted first) or
	// "direct" (sync(2) and reboot(2) at once: no service manager).
	RebootPath string `json:"reboot_path"`
	// Rollback is the boot assessment the daemon keeps: last-known-good,
	// the trial, the crash-loop policy and count, what the next crash
	// boots, the history; absent when no daemon answers.
	Rollback *RollbackInfoV1 `json:"rollback,omitempty"`
}

// StatusTimelineV1 is the previous generation's timeline with this
// generation's kernel start and resume.
type StatusTimelineV1 struct {
	TimelineV1
	// KernelStart is when this kernel started (now minus /proc/uptime).
	KernelStart time.Time `json:"kernel_start,omitzero"`
	// Resumed is when this generation's userspace resumed the handoff.
	Resumed time.Time `json:"resumed,omitzero"`
}

func statusDoc(r *statusReport) StatusV1 {
	d := StatusV1{
		Schema:     schemaStatus,
		Generation: r.Generation,
		Reason:     string(r.Reason),
		Manifest:   r.Manifest,
		Timeline: StatusTimelineV1{
			TimelineV1:  timelineV1Of(r.Timeline.Timeline),
			KernelStart: r.Timeline.KernelStart,
			Resumed:     r.Timeline.Resumed,
		},
		State:      generationStateV1Ptr(r.State),
		Preflight:  preflightV1Of(r.Preflight),
		Agent:      agentInfoV1Ptr(r.Agent),
		Problems:   slices.Clone(r.Problems),
		Crash:      crashStatusReportV1Ptr(r.Crash),
		Trust:      trustInfoV1Ptr(r.Trust),
		RebootPath: r.RebootPath,
		Rollback:   r.Rollback,
	}
	if r.CPUs != nil {
		c := cpuStatusV1Of(*r.CPUs)
		d.CPUs = &c
	}
	return d
}

// StageV1 is `fastreboot stage --json`.
type StageV1 struct {
	Schema string `json:"schema"`
	StageReportV1
}

func stageDoc(r *fastreboot.StageReport) StageV1 {
	return StageV1{Schema: schemaStage, StageReportV1: stageReportV1Of(*r)}
}

// RebootV1 is `fastreboot reboot --json`: the plan (printed before the
// jump, or instead of it with --dry-run).
type RebootV1 struct {
	Schema string `json:"schema"`
	RebootPlanV1
}

func rebootDoc(p fastreboot.RebootPlan) RebootV1 {
	return RebootV1{Schema: schemaReboot, RebootPlanV1: rebootPlanV1Of(p)}
}

// CacheLsV1 is `fastreboot cache ls --json`.
type CacheLsV1 struct {
	Schema string `json:"schema"`
	CacheListingV1
}

func cacheLsDoc(l *agent.CacheListing) CacheLsV1 {
	return CacheLsV1{Schema: schemaCacheLs, CacheListingV1: cacheListingV1Of(*l)}
}

// CacheVerifyV1 is `fastreboot cache verify --json`.
type CacheVerifyV1 struct {
	Schema string `json:"schema"`
	VerifyReportV1
}

func cacheVerifyDoc(r *modcache.VerifyReport) CacheVerifyV1 {
	return CacheVerifyV1{Schema: schemaCacheVerify, VerifyReportV1: verifyReportV1Of(*r)}
}

// CacheSyncV1 is `fastreboot cache sync --json`.
type CacheSyncV1 struct {
	Schema string `json:"schema"`
	SyncReportV1
}

func cacheSyncDoc(r *modcache.SyncReport) CacheSyncV1 {
	return CacheSyncV1{Schema: schemaCacheSync, SyncReportV1: syncReportV1Of(*r)}
}

// CacheEvictV1 is `fastreboot cache evict --json`.
type CacheEvictV1 struct {
	Schema string `json:"schema"`
	EvictReportV1
}

func cacheEvictDoc(r *modcache.EvictReport) CacheEvictV1 {
	return CacheEvictV1{Schema: schemaCacheEvict, EvictReportV1: evictReportV1Of(*r)}
}

// ManifestDiffV1 is `fastreboot manifest diff --json`.
type ManifestDiffDocV1 struct {
	Schema string `json:"schema"`
	ManifestDiffV1
}

func manifestDiffDoc(d bootimage.ManifestDiff) ManifestDiffDocV1 {
	return ManifestDiffDocV1{Schema: schemaManifestDiff, ManifestDiffV1: manifestDiffV1Of(d)}
}

// ManifestValidateV1 is `fastreboot manifest validate --json`.
type ManifestValidateV1 struct {
	Schema string `json:"schema"`
	// Manifest is the path as given.
	Manifest string `json:"manifest"`
	// Modules is the number of modules it names.
	Modules int `json:"modules"`
	// Content is what reading and checking every module found (--content).
	Content *SyncReportV1 `json:"content,omitempty"`
}

func manifestValidateDoc(path string, modules int, content *modcache.SyncReport) ManifestValidateV1 {
	d := ManifestValidateV1{Schema: schemaManifestValidate, Manifest: path, Modules: modules}
	if content != nil {
		c := syncReportV1Of(*content)
		d.Content = &c
	}
	return d
}

// KeyVerifyV1 is `fastreboot key verify --json` (printed only when the
// signature is good; a bad one is an error document).
type KeyVerifyV1 struct {
	Schema string `json:"schema"`
	// Manifest is the path as given; its signature is Manifest + ".sig".
	Manifest string `json:"manifest"`
	// Name is the manifest's own name.
	Name string `json:"name,omitempty"`
	// KeyID names the key that signed it (the first 8 bytes of the SHA-256
	// of the raw ed25519 public key, in hex).
	KeyID string `json:"key_id"`
	// TrustRoot is the key file or directory the key was found in.
	TrustRoot string `json:"trust_root"`
	// Modules is the number of modules the signature covers by digest.
	Modules int `json:"modules"`
}

func keyVerifyDoc(path string, m *bootimage.Manifest, keyID string, trust *manifestsig.TrustRoot) KeyVerifyV1 {
	return KeyVerifyV1{Schema: schemaKeyVerify, Manifest: path, Name: m.Name, KeyID: keyID, TrustRoot: trust.Path, Modules: len(m.Modules)}
}

// CrashArmV1 is `fastreboot crash arm --json`.
type CrashArmV1 struct {
	Schema string `json:"schema"`
	CrashArmReportV1
}

func crashArmDoc(r *crashpath.ArmReport) CrashArmV1 {
	return CrashArmV1{Schema: schemaCrashArm, CrashArmReportV1: crashArmReportV1Of(*r)}
}

// CrashEstimateV1 is `fastreboot crash estimate --json`.
type CrashEstimateV1 struct {
	Schema string `json:"schema"`
	CrashEstimateReportV1
}

func crashEstimateDoc(r *crashpath.EstimateReport) CrashEstimateV1 {
	return CrashEstimateV1{Schema: schemaCrashEstimate, CrashEstimateReportV1: crashEstimateReportV1Of(*r)}
}

// CrashStatusV1 is `fastreboot crash status --json` and, after the unload,
// `fastreboot crash disarm --json`.
type CrashStatusV1 struct {
	Schema string `json:"schema"`
	CrashStatusReportV1
}

func crashStatusDoc(schema string, r *crashpath.StatusReport) CrashStatusV1 {
	return CrashStatusV1{Schema: schema, CrashStatusReportV1: crashStatusReportV1Of(*r)}
}

// CrashLastV1 is `fastreboot crash last --json`.
type CrashLastV1 struct {
	Schema string `json:"schema"`
	CrashEvidenceV1
}

func crashLastDoc(ev *crashhandler.Evidence) CrashLastV1 {
	return CrashLastV1{Schema: schemaCrashLast, CrashEvidenceV1: crashEvidenceV1Of(*ev)}
}

// CrashRecoverV1 is `fastreboot crash recover --json`.
type CrashRecoverV1 struct {
	Schema string `json:"schema"`
	RecoverReportV1
}

func crashRecoverDoc(r *crashpath.RecoverReport) CrashRecoverV1 {
	return CrashRecoverV1{Schema: schemaCrashRecover, RecoverReportV1: recoverReportV1Of(*r)}
}

// BlessV1 is `fastreboot bless --json`.
type BlessV1 struct {
	Schema string `json:"schema"`
	// Generation is the generation blessed: its image is last-known-good.
	Generation int `json:"generation"`
	// Good is the new last-known-good image.
	Good RollbackImageV1 `json:"good"`
	// Fallback is the last-known-good image before it, where a crash
	// loop of Good goes; absent when there was none.
	Fallback *RollbackImageV1 `json:"fallback,omitempty"`
	// Rearmed is true when the daemon had armed the crash path and armed
	// it again, so that a crash now recovers into the blessed image.
	Rearmed bool `json:"rearmed"`
	// Restaged is true when the daemon had staged an image (under the
	// trial's assessment) and staged it again under the new one.
	Restaged bool `json:"restaged"`
	// Warnings say what failed after the bless itself: a re-arm or a
	// restage.
	Warnings []string `json:"warnings,omitempty"`
}

func blessDoc(r *agent.BlessReport) BlessV1 {
	d := BlessV1{
		Schema: schemaBless, Generation: r.Generation, Fallback: rollbackImageV1Ptr(r.Fallback),
		Rearmed: r.Rearmed, Restaged: r.Restaged, Warnings: slices.Clone(r.Warnings),
	}
	if r.Good != nil {
		d.Good = rollbackImageV1Of(*r.Good)
	}
	return d
}

// RollbackV1 is `fastreboot rollback --json`.
type RollbackV1 struct {
	Schema string `json:"schema"`
	// Good is the last-known-good image staged, reason rollback.
	Good RollbackImageV1 `json:"good"`
	// Why is what the history records ("asked by an operator" unless
	// --why says).
	Why string `json:"why"`
	// Staged is the stage of Good.
	Staged *StageReportV1 `json:"staged,omitempty"`
	// Rebooting is true when the reboot into it was started (--reboot).
	Rebooting bool `json:"rebooting"`
}

func rollbackDoc(r *agent.RollbackReport) RollbackV1 {
	d := RollbackV1{Schema: schemaRollback, Why: r.Why, Staged: stageReportV1Ptr(r.Staged), Rebooting: r.Rebooting}
	if r.Good != nil {
		d.Good = rollbackImageV1Of(*r.Good)
	}
	return d
}

// ErrorV1 is what a command that fails before printing its report prints
// under --json.
type ErrorV1 struct {
	Schema string `json:"schema"`
	// Error says what failed.
	Error ErrorBodyV1 `json:"error"`
}

type ErrorBodyV1 struct {
	// Command is the subcommand that failed ("stage", "crash", ...).
	Command string `json:"command"`
	// Message is the error, as printed on stderr.
	Message string `json:"message"`
	// Kinds names the sentinel errors it wraps, for programs that act on
	// the kind of failure rather than its wording.
	Kinds []string `json:"kinds,omitempty"`
	// ExitCode is the process's exit code.
	ExitCode int `json:"exit_code"`
}

func errorDoc(command, message string, kinds []string, code int) ErrorV1 {
	return ErrorV1{Schema: schemaError, Error: ErrorBodyV1{Command: command, Message: message, Kinds: slices.Clone(kinds), ExitCode: code}}
}

func generationStateV1Ptr(p *fastreboot.State) *GenerationStateV1 {
	if p == nil {
		return nil
	}
	v := generationStateV1Of(*p)
	return &v
}

func agentInfoV1Ptr(p *agent.Info) *AgentInfoV1 {
	if p == nil {
		return nil
	}
	v := agentInfoV1Of(*p)
	return &v
}

func crashStatusReportV1Ptr(p *crashpath.StatusReport) *CrashStatusReportV1 {
	if p == nil {
		return nil
	}
	v := crashStatusReportV1Of(*p)
	return &v
}

// EntriesV1 is `fastreboot entries --json`.
type EntriesV1 struct {
	Schema string `json:"schema"`
	// Default is the id of the entry stage --default stages, absent when
	// there is none; DefaultReason the rule that picked it.
	Default       string `json:"default,omitempty"`
	DefaultReason string `json:"default_reason,omitempty"`
	// Entries are the boot entries: BLS in the specification's order, then
	// GRUB's in menu order, then Debian's links.
	Entries []BootEntryV1 `json:"entries"`
	// Problems are findings that are not an entry's (a file not parsed, a
	// default naming no entry, an include not followed).
	Problems []string `json:"problems,omitempty"`
}

func entriesDoc(l *bootentry.List) EntriesV1 {
	d := EntriesV1{Schema: schemaEntries, Entries: []BootEntryV1{}}
	if l.Default >= 0 && l.Default < len(l.Entries) {
		d.Default, d.DefaultReason = l.Entries[l.Default].ID, l.DefaultReason
	}
	for i, e := range l.Entries {
		d.Entries = append(d.Entries, bootEntryV1Of(e, i == l.Default))
	}
	for _, p := range l.Problems {
		if p != nil {
			d.Problems = append(d.Problems, p.Error())
		}
	}
	return d
}

// KeptPlanV1 is `fastreboot kept plan --json`: where a new kept memory
// region goes and the words that keep it.
type KeptPlanV1 struct {
	Schema string `json:"schema"`
	// Region is the planned region; CacheSize the part of it at its start
	// that holds the module cache, PreserveSize the part at its end given
	// to preserved workload areas (fastreboot.preserve=).
	Region       KeptRegionV1 `json:"region"`
	CacheSize    int64        `json:"cache_size"`
	PreserveSize int64        `json:"preserve_size,omitempty"`
	// Words are the words to add to the boot loader's command line:
	// memmap=SIZE!START, and fastreboot.preserve=SIZE when areas are kept.
	Words []string `json:"words"`
	// MemoryMapFrom is the memory map the region was placed in: "handoff"
	// (the one recorded while healthy) or "firmware" (this boot's).
	MemoryMapFrom string `json:"memory_map_from"`
	// Avoided are the ranges the region was kept out of: the crashkernel=
	// reservation, the RAM the running kernel does not use (the ramoops
	// region, a kept region).
	Avoided []AvoidedRangeV1 `json:"avoided,omitempty"`
	// Running is the region the running command line keeps already;
	// absent when none.
	Running *KeptRegionV1 `json:"running,omitempty"`
}

func keptPlanDoc(r *keptPlanReport) KeptPlanV1 {
	d := KeptPlanV1{
		Schema: schemaKeptPlan, Region: keptRegionV1Of(r.Layout.Region),
		CacheSize: r.Layout.CacheSize, PreserveSize: r.Layout.AreasSize,
		Words: slices.Clone(r.Words), MemoryMapFrom: r.MemoryMapFrom,
		Avoided: avoidedRangeV1s(r.Avoided),
	}
	if r.Running != nil {
		v := keptRegionV1Of(*r.Running)
		d.Running = &v
	}
	return d
}

// KeptStatusV1 is `fastreboot kept status --json`: the kept memory region
// of the running command line, its device and its index.
type KeptStatusV1 struct {
	Schema string `json:"schema"`
	// Region is the running command line's region (absent: it keeps
	// none); CacheSize the module cache's part, PreserveSize the
	// preserved areas' part.
	Region       *KeptRegionV1 `json:"region,omitempty"`
	CacheSize    int64         `json:"cache_size,omitempty"`
	PreserveSize int64         `json:"preserve_size,omitempty"`
	// Device is the region's block device; DeviceError says why none
	// was found.
	Device      string `json:"device,omitempty"`
	DeviceError string `json:"device_error,omitempty"`
	// Index is the header of the index the region holds; absent when it
	// holds no valid one, and IndexError says why.
	Index      *KeptIndexV1 `json:"index,omitempty"`
	IndexError string       `json:"index_error,omitempty"`
}

// KeptIndexV1 is the v1 form of keptmem.Header, with what the index
// holds.
type KeptIndexV1 struct {
	// Sequence counts the region's writes; Generation is the writer's.
	Sequence   uint64 `json:"sequence"`
	Generation uint64 `json:"generation"`
	// Modules and Bytes are what the index holds.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
	// SHA256 is the index's digest (lowercase hex), as a handoff names it.
	SHA256 string `json:"index_sha256"`
}

func keptStatusDoc(r *keptStatusReport) KeptStatusV1 {
	d := KeptStatusV1{Schema: schemaKeptStatus, Device: r.Device, DeviceError: r.DeviceError, IndexError: r.IndexError}
	if l := r.Layout; l != nil {
		v := keptRegionV1Of(l.Region)
		d.Region, d.CacheSize, d.PreserveSize = &v, l.CacheSize, l.AreasSize
	}
	if h := r.Header; h != nil {
		d.Index = &KeptIndexV1{Sequence: h.Sequence, Generation: h.Generation, Modules: r.Modules, Bytes: r.Bytes, SHA256: hex.EncodeToString(h.IndexSHA256[:])}
	}
	return d
}

// PreserveLsV1 is `fastreboot preserve ls --json`.
type PreserveLsV1 struct {
	Schema string `json:"schema"`
	// Device is the kept region's block device, e.g. "/dev/pmem0".
	Device string `json:"device"`
	// Region is the kept region (memmap=SIZE!START).
	Region KeptRegionV1 `json:"region"`
	// AreasOffset is where the areas part starts on the device: the
	// module cache's part is before it.
	AreasOffset int64 `json:"areas_offset"`
	// AreasSize is the areas part's size in bytes (fastreboot.preserve=SIZE).
	AreasSize int64 `json:"areas_size"`
	// FreeBytes is what no area takes after the table; LargestFreeBytes
	// is the largest area that can still be created.
	FreeBytes        int64 `json:"free_bytes"`
	LargestFreeBytes int64 `json:"largest_free_bytes"`
	// Areas are the preserved areas, by offset.
	Areas []PreservedAreaV1 `json:"areas"`
}

func preserveLsDoc(l *preserveListing) PreserveLsV1 {
	lay := l.Location.Layout
	d := PreserveLsV1{
		Schema:      schemaPreserveLs,
		Device:      l.Location.Device,
		Region:      KeptRegionV1{Start: lay.Region.Start, Size: lay.Region.Size},
		AreasOffset: lay.CacheSize, AreasSize: lay.AreasSize,
		FreeBytes: l.Free, LargestFreeBytes: l.LargestFree,
		Areas: []PreservedAreaV1{},
	}
	for _, a := range l.Areas {
		d.Areas = append(d.Areas, PreservedAreaV1{Name: a.Name, Offset: a.Offset, Size: a.Size,
			Cgroup: a.Cgroup, Generation: a.Generation, Created: a.Created})
	}
	return d
}
