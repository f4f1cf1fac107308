package cli

import (
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
)

// statusV1 is `fastreboot status --json`.
type statusV1 struct {
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
	Timeline statusTimelineV1 `json:"timeline"`
	// State is the generation's saved state (nil if none was saved).
	State *generationStateV1 `json:"state,omitempty"`
	// CPUs: online now, and whether the CPUs of the previous generation
	// all came back (a CPU missing is a problem).
	CPUs *cpuStatusV1 `json:"cpus,omitempty"`
	// Preflight is whether this kernel can kexec, and what is loaded.
	Preflight preflightV1 `json:"preflight"`
	// Agent is the daemon's answer; nil when no daemon runs.
	Agent *agentInfoV1 `json:"agent,omitempty"`
	// Problems are what status --check fails on.
	Problems []string `json:"problems,omitempty"`
	// Crash is the crash path: armed or not, and the last crash's evidence.
	Crash *crashStatusReportV1 `json:"crash,omitempty"`
	// Trust is the trust root manifests are checked against (the daemon's
	// when one answers, else this command's); absent when none is set:
	// then manifests need no signature.
	Trust *trustInfoV1 `json:"trust,omitempty"`
}

// statusTimelineV1 is the previous generation's timeline with this
// generation's kernel start and resume.
type statusTimelineV1 struct {
	timelineV1
	// KernelStart is when this kernel started (now minus /proc/uptime).
	KernelStart time.Time `json:"kernel_start,omitzero"`
	// Resumed is when this generation's userspace resumed the handoff.
	Resumed time.Time `json:"resumed,omitzero"`
}

func statusDoc(r *statusReport) statusV1 {
	d := statusV1{
		Schema:     schemaStatus,
		Generation: r.Generation,
		Reason:     string(r.Reason),
		Manifest:   r.Manifest,
		Timeline: statusTimelineV1{
			timelineV1:  timelineV1Of(r.Timeline.Timeline),
			KernelStart: r.Timeline.KernelStart,
			Resumed:     r.Timeline.Resumed,
		},
		State:     generationStateV1Ptr(r.State),
		Preflight: preflightV1Of(r.Preflight),
		Agent:     agentInfoV1Ptr(r.Agent),
		Problems:  slices.Clone(r.Problems),
		Crash:     crashStatusReportV1Ptr(r.Crash),
		Trust:     trustInfoV1Ptr(r.Trust),
	}
	if r.CPUs != nil {
		c := cpuStatusV1Of(*r.CPUs)
		d.CPUs = &c
	}
	return d
}

// stageV1 is `fastreboot stage --json`.
type stageV1 struct {
	Schema string `json:"schema"`
	stageReportV1
}

func stageDoc(r *fastreboot.StageReport) stageV1 {
	return stageV1{Schema: schemaStage, stageReportV1: stageReportV1Of(*r)}
}

// rebootV1 is `fastreboot reboot --json`: the plan (printed before the
// jump, or instead of it with --dry-run).
type rebootV1 struct {
	Schema string `json:"schema"`
	rebootPlanV1
}

func rebootDoc(p fastreboot.RebootPlan) rebootV1 {
	return rebootV1{Schema: schemaReboot, rebootPlanV1: rebootPlanV1Of(p)}
}

// cacheLsV1 is `fastreboot cache ls --json`.
type cacheLsV1 struct {
	Schema string `json:"schema"`
	cacheListingV1
}

func cacheLsDoc(l *agent.CacheListing) cacheLsV1 {
	return cacheLsV1{Schema: schemaCacheLs, cacheListingV1: cacheListingV1Of(*l)}
}

// cacheVerifyV1 is `fastreboot cache verify --json`.
type cacheVerifyV1 struct {
	Schema string `json:"schema"`
	verifyReportV1
}

func cacheVerifyDoc(r *modcache.VerifyReport) cacheVerifyV1 {
	return cacheVerifyV1{Schema: schemaCacheVerify, verifyReportV1: verifyReportV1Of(*r)}
}

// cacheSyncV1 is `fastreboot cache sync --json`.
type cacheSyncV1 struct {
	Schema string `json:"schema"`
	syncReportV1
}

func cacheSyncDoc(r *modcache.SyncReport) cacheSyncV1 {
	return cacheSyncV1{Schema: schemaCacheSync, syncReportV1: syncReportV1Of(*r)}
}

// cacheEvictV1 is `fastreboot cache evict --json`.
type cacheEvictV1 struct {
	Schema string `json:"schema"`
	evictReportV1
}

func cacheEvictDoc(r *modcache.EvictReport) cacheEvictV1 {
	return cacheEvictV1{Schema: schemaCacheEvict, evictReportV1: evictReportV1Of(*r)}
}

// manifestDiffV1 is `fastreboot manifest diff --json`.
type manifestDiffDocV1 struct {
	Schema string `json:"schema"`
	manifestDiffV1
}

func manifestDiffDoc(d bootimage.ManifestDiff) manifestDiffDocV1 {
	return manifestDiffDocV1{Schema: schemaManifestDiff, manifestDiffV1: manifestDiffV1Of(d)}
}

// manifestValidateV1 is `fastreboot manifest validate --json`.
type manifestValidateV1 struct {
	Schema string `json:"schema"`
	// Manifest is the path as given.
	Manifest string `json:"manifest"`
	// Modules is the number of modules it names.
	Modules int `json:"modules"`
	// Content is what reading and checking every module found (--content).
	Content *syncReportV1 `json:"content,omitempty"`
}

func manifestValidateDoc(path string, modules int, content *modcache.SyncReport) manifestValidateV1 {
	d := manifestValidateV1{Schema: schemaManifestValidate, Manifest: path, Modules: modules}
	if content != nil {
		c := syncReportV1Of(*content)
		d.Content = &c
	}
	return d
}

// keyVerifyV1 is `fastreboot key verify --json` (printed only when the
// signature is good; a bad one is an error document).
type keyVerifyV1 struct {
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

func keyVerifyDoc(path string, m *bootimage.Manifest, keyID string, trust *manifestsig.TrustRoot) keyVerifyV1 {
	return keyVerifyV1{Schema: schemaKeyVerify, Manifest: path, Name: m.Name, KeyID: keyID, TrustRoot: trust.Path, Modules: len(m.Modules)}
}

// crashArmV1 is `fastreboot crash arm --json`.
type crashArmV1 struct {
	Schema string `json:"schema"`
	crashArmReportV1
}

func crashArmDoc(r *crashpath.ArmReport) crashArmV1 {
	return crashArmV1{Schema: schemaCrashArm, crashArmReportV1: crashArmReportV1Of(*r)}
}

// crashEstimateV1 is `fastreboot crash estimate --json`.
type crashEstimateV1 struct {
	Schema string `json:"schema"`
	crashEstimateReportV1
}

func crashEstimateDoc(r *crashpath.EstimateReport) crashEstimateV1 {
	return crashEstimateV1{Schema: schemaCrashEstimate, crashEstimateReportV1: crashEstimateReportV1Of(*r)}
}

// crashStatusV1 is `fastreboot crash status --json` and, after the unload,
// `fastreboot crash disarm --json`.
type crashStatusV1 struct {
	Schema string `json:"schema"`
	crashStatusReportV1
}

func crashStatusDoc(schema string, r *crashpath.StatusReport) crashStatusV1 {
	return crashStatusV1{Schema: schema, crashStatusReportV1: crashStatusReportV1Of(*r)}
}

// crashLastV1 is `fastreboot crash last --json`.
type crashLastV1 struct {
	Schema string `json:"schema"`
	crashEvidenceV1
}

func crashLastDoc(ev *crashhandler.Evidence) crashLastV1 {
	return crashLastV1{Schema: schemaCrashLast, crashEvidenceV1: crashEvidenceV1Of(*ev)}
}

// crashRecoverV1 is `fastreboot crash recover --json`.
type crashRecoverV1 struct {
	Schema string `json:"schema"`
	recoverReportV1
}

func crashRecoverDoc(r *crashpath.RecoverReport) crashRecoverV1 {
	return crashRecoverV1{Schema: schemaCrashRecover, recoverReportV1: recoverReportV1Of(*r)}
}

// errorV1 is what a command that fails before printing its report prints
// under --json.
type errorV1 struct {
	Schema string `json:"schema"`
	// Error says what failed.
	Error errorBodyV1 `json:"error"`
}

type errorBodyV1 struct {
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

func errorDoc(command, message string, kinds []string, code int) errorV1 {
	return errorV1{Schema: schemaError, Error: errorBodyV1{Command: command, Message: message, Kinds: slices.Clone(kinds), ExitCode: code}}
}

func generationStateV1Ptr(p *fastreboot.State) *generationStateV1 {
	if p == nil {
		return nil
	}
	v := generationStateV1Of(*p)
	return &v
}

func agentInfoV1Ptr(p *agent.Info) *agentInfoV1 {
	if p == nil {
		return nil
	}
	v := agentInfoV1Of(*p)
	return &v
}

func crashStatusReportV1Ptr(p *crashpath.StatusReport) *crashStatusReportV1 {
	if p == nil {
		return nil
	}
	v := crashStatusReportV1Of(*p)
	return &v
}

// entriesV1 is `fastreboot entries --json`.
type entriesV1 struct {
	Schema string `json:"schema"`
	// Default is the id of the entry stage --default stages, absent when
	// there is none; DefaultReason the rule that picked it.
	Default       string `json:"default,omitempty"`
	DefaultReason string `json:"default_reason,omitempty"`
	// Entries are the boot entries: BLS in the specification's order, then
	// GRUB's in menu order, then Debian's links.
	Entries []bootEntryV1 `json:"entries"`
	// Problems are findings that are not an entry's (a file not parsed, a
	// default naming no entry, an include not followed).
	Problems []string `json:"problems,omitempty"`
}

func entriesDoc(l *bootentry.List) entriesV1 {
	d := entriesV1{Schema: schemaEntries, Entries: []bootEntryV1{}}
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
