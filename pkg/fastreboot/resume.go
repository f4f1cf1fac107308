package fastreboot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// DefaultStateDir is where Resume saves the generation's State: the one
// state directory of the library, shared with the crash path
// (crashhandler.DefaultStateDir, on tmpfs).
const DefaultStateDir = crashhandler.DefaultStateDir

// StateFile is the name of the state file in the state directory.
const StateFile = "state.json"

// ResumeOptions configure Resume. The zero value reads the handoff from "/"
// and saves the state in DefaultStateDir.
type ResumeOptions struct {
	// Root is where the kernel unpacked the initramfs; "" means "/".
	Root string
	// StateDir receives state.json; "" means DefaultStateDir.
	StateDir string
	// Logger receives what Resume finds; nil discards.
	Logger *slog.Logger
	// Now is the clock; nil means time.Now.
	Now func() time.Time
	// EagerVerify hashes the carried modules while copying them into the
	// cache, inside Resume (cache.Rehydrate). By default Resume adopts them
	// without hashing (cache.Adopt): each is verified before its first use
	// (a Stage, a crash image, Verify), and the caller may verify them all
	// in the background with cache.VerifyPending.
	EagerVerify bool
	// Trust, when set, is the generation's trust root: the handoff's
	// manifest must carry a signature (Handoff.Origin) that verifies
	// against it and covers the handoff manifest's modules (VerifyOrigin).
	// If it does not, no carried module is adopted (State.Trust says why):
	// the generation still runs, and reads what it needs from storage,
	// where every manifest it uses is checked again. Either way, every
	// adopted module's SHA-256 is checked against the manifest before it
	// is used (see EagerVerify).
	Trust *manifestsig.TrustRoot
}

// TrustState is what Resume found of the handoff manifest's signature
// under a trust root.
type TrustState struct {
	// Root is the trust root's file or directory.
	Root string `json:"root"`
	// SignedBy is the id of the key whose signature verified; empty when
	// none did.
	SignedBy string `json:"signed_by,omitempty"`
	// Error says why the handoff's manifest was not trusted (unsigned,
	// unknown key, bad signature); its carried modules were then not
	// adopted.
	Error string `json:"error,omitempty"`
}

// State is what a generation knows about how it started. Resume saves it
// as JSON so that a separate status process can read it with LoadState.
type State struct {
	// Generation counts kernels since the cold boot, which is 1.
	Generation int    `json:"generation"`
	Reason     Reason `json:"reason"`
	// Timeline is the previous generation's, from the handoff; zero on a
	// cold boot.
	Timeline Timeline `json:"timeline"`
	// Resumed is when Resume ran in this generation.
	Resumed time.Time `json:"resumed"`
	// Manifest is the boot image this generation runs, nil on a cold boot
	// (no handoff says what the firmware booted).
	Manifest *bootimage.Manifest `json:"manifest,omitempty"`
	// Carried is the number of modules the handoff carried; Rehydrated
	// what entered the cache from them, in RehydrateTime (the adoption:
	// copied and sealed; Rehydrated.Unverified of them not hashed yet,
	// see ResumeOptions.EagerVerify and modcache.Stats.Adoption).
	Carried       int                      `json:"carried"`
	Rehydrated    modcache.RehydrateReport `json:"rehydrated"`
	RehydrateTime time.Duration            `json:"rehydrate_ns"`
	// RehydrateError is set when some carried modules could not be
	// rehydrated; they are missing from the cache and a later Sync reads
	// them from storage.
	RehydrateError string `json:"rehydrate_error,omitempty"`
	// Carrier is how the handoff carried the modules: "initrd" (its
	// modules/ files), "kept" (the kept region, Kept) or "none"; empty on
	// a cold boot.
	Carrier string `json:"carrier,omitempty"`
	// Kept is the kept region the modules were adopted from (Carrier
	// "kept"), as the handoff named it and the device found.
	Kept *KeptState `json:"kept,omitempty"`
	// Restarted is when Resume last ran again in this boot with a cache
	// (a restarted daemon). The modules rehydrated before lived in the
	// previous process's cache and are gone (their handoff files were
	// consumed): Rehydrated is then zero, and CarriedLost counts them; a
	// later Sync reads them from storage.
	Restarted   time.Time `json:"restarted,omitzero"`
	CarriedLost int       `json:"carried_lost,omitempty"`
	// CPUs compares the CPUs online when the previous generation staged
	// this image (the handoff's record) with those online when Resume ran;
	// nil when the handoff has no record. CPUsError is set when a recorded
	// CPU did not come back, or when the CPUs could not be read.
	CPUs      *cpustop.Report `json:"cpus,omitempty"`
	CPUsError string          `json:"cpus_error,omitempty"`
	// CPURecord is the handoff's record itself, so that a crash stage
	// running on fewer CPUs can pass it on (StageOptions.CPURecord).
	CPURecord *cpustop.Record `json:"cpu_record,omitempty"`
	// Origin is the handoff's manifest origin (its file and signed
	// bytes), so that a restage of this image carries it on; nil when the
	// handoff has none.
	Origin *ManifestOrigin `json:"origin,omitempty"`
	// Rollback is the handoff's boot assessment (Handoff.Rollback) as it
	// was written, before this generation applies it; nil when none.
	Rollback *rollback.State `json:"rollback,omitempty"`
	// Trust is the check of Origin's signature against
	// ResumeOptions.Trust; nil without a trust root.
	Trust *TrustState `json:"trust,omitempty"`
}

// Resume starts a generation: it reads the handoff under opts.Root
// (ReadHandoff), adopts into cache the carried modules in the modules/
// directory next to it (Root/fastreboot/modules, or Root/run/fastreboot/handoff/modules
// after an initramfs moved it there) (cache.Adopt: size checked, copied and sealed,
// their digests verified later, before each is first used; cache.Rehydrate,
// which hashes them here, with opts.EagerVerify; either reads no storage and
// removes the files as they enter the cache), and saves the resulting State in
// opts.StateDir. Without a handoff the state is generation 1, reason
// "cold". A nil cache skips rehydration.
//
// A handoff written with the kept carrier (Handoff.Kept) carries no
// module file: Resume finds the kept region's device under opts.Root
// (keptmem.FindDevice; it must exist by then: the daemon loads nd_e820
// and nd_pmem first), opens the index in its cache part (keptmem.Open)
// and adopts the modules only when the index is the one the handoff names
// (sequence, SHA-256, module count), with cache.AdoptSections: copied
// into sealed memfds, each hashed before its first use as for the
// initrd's files. A missing device, an index written since, a torn or
// corrupt one adopt nothing, and State.RehydrateError says why; the
// modules are then read from storage. State.Carrier names the carrier.
//
// A failed rehydration does not fail Resume: the generation is still known,
// the modules that verified are cached, and State.RehydrateError says what
// is missing. Likewise State.CPUs says whether every CPU online when the
// handoff was written came back, and State.CPUsError names those that did
// not. An unusable handoff (wrapping ErrHandoff) or a state that
// cannot be saved does fail it.
//
// Resume is idempotent within a boot: if the state directory already holds
// the state of this handoff (same generation and stage end time), nothing
// is rehydrated again and that state is returned, as it is if cache is nil
// or nothing was rehydrated; otherwise (a restarted daemon, whose new cache
// holds none of the modules rehydrated before) saved with Restarted set and
// the lost modules moved from Rehydrated to CarriedLost.
func Resume(ctx context.Context, cache *modcache.Cache, opts ResumeOptions) (*State, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.StateDir == "" {
		opts.StateDir = DefaultStateDir
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	clock := opts.Now
	if clock == nil {
		clock = time.Now
	}

	h, err := ReadHandoff(opts.Root)
	if err != nil && !errors.Is(err, ErrNoHandoff) {
		return nil, fmt.Errorf("resume: %w", err)
	}
	if prev, perr := LoadState(opts.StateDir); perr == nil && sameStart(prev, h) {
		log.Info("resume: already resumed in this boot", "generation", prev.Generation, "state_dir", opts.StateDir)
		if cache == nil || prev.Rehydrated.Modules == 0 {
			return prev, nil
		}
		return restarted(ctx, cache, prev, h, opts, clock, log)
	}

	st := &State{Generation: 1, Reason: ReasonCold, Resumed: clock()}
	if h == nil {
		log.Info("resume: no handoff, cold boot", "root", opts.Root)
	} else {
		st.Generation = h.Generation
		st.Reason = h.Reason
		st.Timeline = h.Timeline
		m := h.Manifest
		st.Manifest = &m
		st.Carried = len(h.Carried)
		switch {
		case h.Kept != nil:
			st.Carrier, st.Carried = CarryKept.String(), h.Kept.Modules
		case len(h.Carried) > 0:
			st.Carrier = CarryInitrd.String()
		default:
			st.Carrier = CarryNone.String()
		}
		// The kernel brought every CPU it could up before init ran
		// (smp_init), so what is online now is what came back.
		st.CPURecord = h.CPUs
		if st.CPUs, err = checkCPUs(opts.Root, h.CPUs, log); err != nil {
			st.CPUsError = fmt.Sprintf("checking CPUs: %v", err)
		} else if st.CPUs != nil && st.CPUs.Err() != nil {
			st.CPUsError = st.CPUs.Err().Error()
		}
		st.Origin = h.Origin
		st.Rollback = h.Rollback
		adopt := true
		if opts.Trust != nil {
			st.Trust = &TrustState{Root: opts.Trust.Path}
			if st.Trust.SignedBy, err = VerifyOrigin(opts.Trust, h.Origin, &h.Manifest); err != nil {
				st.Trust.Error = err.Error()
				adopt = false
				log.Warn("resume: the handoff's manifest is not trusted; its carried modules are not adopted", "err", err)
				// Nothing of them will be used: give their RAM back.
				if rerr := os.RemoveAll(filepath.Join(opts.Root, HandoffModulesDir)); rerr != nil {
					log.Warn("resume: removing the untrusted carried modules", "err", rerr)
				}
			}
		}
		if cache != nil && h.Kept != nil && adopt {
			t := clock()
			st.Rehydrated, err = adoptKept(ctx, cache, opts.Root, h, opts.EagerVerify, st)
			st.RehydrateTime = clock().Sub(t)
			if err != nil {
				st.RehydrateError = err.Error()
				log.Warn("resume: the modules in the kept region were not adopted; they are read from storage", "err", err)
			}
		}
		if cache != nil && len(h.Carried) > 0 && adopt {
			t := clock()
			hdir, _ := FindHandoff(opts.Root)
			dir := filepath.Join(hdir, "modules")
			rehydrate := cache.Adopt
			if opts.EagerVerify {
				rehydrate = cache.Rehydrate
			}
			st.Rehydrated, err = rehydrate(ctx, dir, h.CarriedManifest())
			st.RehydrateTime = clock().Sub(t)
			if err != nil {
				st.RehydrateError = err.Error()
				log.Warn("resume: some carried modules were not rehydrated", "err", err)
			}
		}
		resumeKernelELFs(h, opts, st, log)
		log.Info("resume", "generation", st.Generation, "reason", st.Reason, "manifest", h.Manifest.Name,
			"carried", st.Carried, "rehydrated_modules", st.Rehydrated.Modules, "rehydrated_bytes", st.Rehydrated.Bytes,
			"unverified", st.Rehydrated.Unverified, "took", st.RehydrateTime)
	}
	if err := SaveState(opts.StateDir, st); err != nil {
		return st, fmt.Errorf("resume: %w", err)
	}
	return st, nil
}

// restarted is Resume run again in the boot prev describes, with a cache
// (a daemon restarted): the modules the first Resume rehydrated lived in
// the cache of a process that is gone. Modules the handoff carried in the
// kept region are still there: when the region still holds the index the
// handoff names (no stage has written it since), they are adopted again,
// hashed before use as the first time. Otherwise (the initrd carrier,
// whose handoff files were consumed, or a region written again) this
// cache holds none of them and the state says so (Rehydrated zero,
// CarriedLost counting them), rather than reporting modules rehydrated
// that no cache holds. Either way Restarted is set and the state saved.
func restarted(ctx context.Context, cache *modcache.Cache, prev *State, h *Handoff, opts ResumeOptions, clock func() time.Time, log *slog.Logger) (*State, error) {
	st := *prev
	st.Rehydrated, st.RehydrateTime = modcache.RehydrateReport{}, 0
	st.Restarted = clock()
	trusted := prev.Trust == nil || prev.Trust.Error == ""
	if h != nil && h.Kept != nil && trusted {
		t := clock()
		rep, err := adoptKept(ctx, cache, opts.Root, h, opts.EagerVerify, &st)
		if err == nil || rep.Modules > 0 {
			st.Rehydrated, st.RehydrateTime, st.RehydrateError = rep, clock().Sub(t), ""
			if err != nil {
				st.RehydrateError = err.Error()
			}
			log.Info("resume: restarted within the boot; the carried modules adopted again from the kept region",
				"generation", st.Generation, "modules", rep.Modules, "bytes", rep.Bytes, "took", st.RehydrateTime)
			if err := SaveState(opts.StateDir, &st); err != nil {
				return &st, fmt.Errorf("resume: %w", err)
			}
			return &st, nil
		}
		log.Warn("resume: restarted within the boot; the kept region no longer holds the handoff's index", "err", err)
	}
	st.CarriedLost += prev.Rehydrated.Modules
	log.Warn("resume: restarted within the boot; the carried modules died with the previous process's cache, a stage reads them from storage",
		"generation", st.Generation, "lost", prev.Rehydrated.Modules)
	if err := SaveState(opts.StateDir, &st); err != nil {
		return &st, fmt.Errorf("resume: %w", err)
	}
	return &st, nil
}

// sameStart reports whether prev is the saved state of the boot h describes
// (h nil: a cold boot).
func sameStart(prev *State, h *Handoff) bool {
	if h == nil {
		return prev.Generation == 1 && prev.Reason == ReasonCold
	}
	return prev.Generation == h.Generation && prev.Reason == h.Reason &&
		prev.Timeline.StageEnd.Equal(h.Timeline.StageEnd)
}

// SaveState writes s as dir/state.json, atomically (write to a temporary
// file, then rename), creating dir if needed.
func SaveState(dir string, s *State) error {
	js, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := writeFileAtomic(dir, StateFile, append(js, '\n')); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}

// LoadState reads dir/state.json as saved by Resume.
func LoadState(dir string) (*State, error) {
	p := filepath.Join(dir, StateFile)
	b, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return &s, nil
}
