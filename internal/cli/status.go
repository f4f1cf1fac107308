package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// statusReport is what `fastreboot status --json` prints.
type statusReport struct {
	Generation int               `json:"generation"`
	Reason     fastreboot.Reason `json:"reason"`
	// Manifest names the image this generation runs, if known.
	Manifest string `json:"manifest,omitempty"`
	// Timeline: the previous generation's stage times (from the handoff),
	// when this kernel started (now minus uptime) and when this
	// generation's userspace resumed the handoff.
	Timeline timeline `json:"timeline"`
	// State is the generation's saved state (nil if none was saved).
	State *fastreboot.State `json:"state,omitempty"`
	// CPUs: online now, and whether the CPUs of the previous generation
	// all came back (a CPU missing is a problem).
	CPUs      *cpuStatus        `json:"cpus,omitempty"`
	Preflight fastreboot.Report `json:"preflight"`
	// Agent is the daemon's answer; nil when no daemon runs.
	Agent    *agent.Info `json:"agent,omitempty"`
	Problems []string    `json:"problems,omitempty"`
	// Crash is the crash path: armed or not, and the last crash's evidence.
	Crash *crashpath.StatusReport `json:"crash,omitempty"`
	// Trust is the trust root manifests are checked against (the daemon's
	// when one answers); nil when none is set.
	Trust *agent.TrustInfo `json:"trust,omitempty"`
	// RebootPath is how `fastreboot reboot` reboots here: "systemd"
	// (systemctl kexec: services stopped, file systems unmounted first) or
	// "direct" (sync(2) and reboot(2) at once: no service manager).
	RebootPath string `json:"reboot_path"`
	// Rollback is the daemon's boot assessment (agent.Info.Rollback), in
	// its v1 form already: a field born with the schemas, it has no older
	// shape to keep, and the tests decode the document into this type.
	Rollback *RollbackInfoV1 `json:"rollback,omitempty"`
}

type timeline struct {
	fastreboot.Timeline
	KernelStart time.Time `json:"kernel_start,omitzero"`
	Resumed     time.Time `json:"resumed,omitzero"`
}

func cmdStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags("status")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (schema fastreboot.status.v1, docs/json.md)")
	check := fs.Bool("check", false, "exit 3 when a problem is found")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("status takes no arguments, got %q", pos)
	}
	rep := statusReport{Generation: 1, Reason: fastreboot.ReasonCold, RebootPath: rebootPath(e.root)}
	st, err := fastreboot.LoadState(e.stateDir)
	switch {
	case err == nil:
		rep.State = st
		rep.Generation, rep.Reason = st.Generation, st.Reason
		rep.Timeline.Timeline, rep.Timeline.Resumed = st.Timeline, st.Resumed
		if st.Manifest != nil {
			rep.Manifest = st.Manifest.Name
		}
		if st.RehydrateError != "" {
			rep.Problems = append(rep.Problems, "rehydration: "+st.RehydrateError)
		}
		if st.Trust != nil && st.Trust.Error != "" {
			rep.Problems = append(rep.Problems, "the handoff's manifest is not trusted, its carried modules were not adopted: "+st.Trust.Error)
		}
	case errors.Is(err, os.ErrNotExist):
		// No state saved: no daemon ran Resume in this generation.
	default:
		rep.Problems = append(rep.Problems, err.Error())
	}
	cpus, cpuProblem := cpuStatusOf(e.root, rep.State)
	rep.CPUs = cpus
	if cpuProblem != "" {
		rep.Problems = append(rep.Problems, cpuProblem)
	}
	if up, err := uptime(e.root); err == nil {
		rep.Timeline.KernelStart = time.Now().Add(-up).Round(time.Millisecond)
	}
	rep.Preflight = fastreboot.Preflight(fastreboot.PreflightOptions{Root: e.root, Probe: e.cfg.machine.Probe})
	for _, c := range rep.Preflight.Checks {
		if !c.OK {
			rep.Problems = append(rep.Problems, fmt.Sprintf("preflight %s: %s", c.Name, c.Detail))
		}
	}
	if !e.noDaemon {
		if c, err := e.dial(); err == nil {
			if in, err := c.Info(ctx); err == nil {
				rep.Agent = in
				for _, f := range in.Cache.Adoption.Failures {
					rep.Problems = append(rep.Problems, "carried module failed its verification: "+f)
				}
				rep.Trust = in.Trust
				rep.Rollback = rollbackInfoV1Ptr(in.Rollback)
			} else {
				rep.Problems = append(rep.Problems, err.Error())
			}
		}
	}
	if rep.Agent == nil {
		// No daemon: the trust root this command would use.
		trust, err := e.trustRoot()
		switch {
		case err != nil:
			rep.Problems = append(rep.Problems, err.Error())
		case trust != nil:
			rep.Trust = &agent.TrustInfo{Root: trust.Path, Keys: trust.KeyIDs()}
			if st := rep.State; st != nil && st.Manifest != nil {
				if id, err := fastreboot.VerifyOrigin(trust, st.Origin, st.Manifest); err != nil {
					rep.Trust.RunningError = err.Error()
				} else {
					rep.Trust.RunningSignedBy = id
				}
			}
		}
	}
	if cs, err := crashpath.Status(e.root, e.stateDir, rep.State); err == nil && (cs.Supported || cs.Last != nil) {
		rep.Crash = cs
		rep.Problems = append(rep.Problems, rearmProblems(cs, rep.Agent)...)
	}
	if *asJSON {
		if err := printJSON(e.stdout, statusDoc(&rep)); err != nil {
			return err
		}
	} else {
		printStatus(e, &rep)
	}
	if *check && len(rep.Problems) > 0 {
		return problemError{fmt.Errorf("%d problem(s): %s", len(rep.Problems), strings.Join(rep.Problems, "; "))}
	}
	return nil
}

func printStatus(e *env, r *statusReport) {
	w := e.stdout
	fmt.Fprintf(w, "generation %d, reason %s", r.Generation, r.Reason)
	if r.Manifest != "" {
		fmt.Fprintf(w, ", image %s", r.Manifest)
	}
	fmt.Fprintln(w)
	t := r.Timeline
	if !t.StageStart.IsZero() {
		fmt.Fprintf(w, "  staged by the previous generation: %s .. %s (%s)\n",
			t.StageStart.Format(time.RFC3339Nano), t.StageEnd.Format(time.RFC3339Nano), t.StageEnd.Sub(t.StageStart).Round(time.Millisecond))
	}
	if !t.KernelStart.IsZero() {
		fmt.Fprintf(w, "  kernel started:  %s\n", t.KernelStart.Format(time.RFC3339Nano))
	}
	if !t.Resumed.IsZero() {
		fmt.Fprintf(w, "  userspace resumed: %s\n", t.Resumed.Format(time.RFC3339Nano))
	}
	if s := r.State; s != nil && s.Carried > 0 {
		how := "hashed while copied"
		if s.Rehydrated.Unverified > 0 {
			how = fmt.Sprintf("%d adopted unverified", s.Rehydrated.Unverified)
		}
		from := "the initrd"
		if k := s.Kept; s.Carrier == fastreboot.CarryKept.String() && k != nil {
			from = fmt.Sprintf("the kept region %s (%s, sequence %d)", k.Region, orNone(k.Device), k.Sequence)
		}
		fmt.Fprintf(w, "  carrier %s: %d modules carried in %s; adopted %d (%s) in %s (%s)\n",
			orNone(s.Carrier), s.Carried, from, s.Rehydrated.Modules, human(s.Rehydrated.Bytes), s.RehydrateTime.Round(time.Millisecond), how)
	}
	if s := r.State; s != nil && s.CarriedLost > 0 {
		fmt.Fprintf(w, "  daemon restarted %s: the %d carried modules an earlier daemon rehydrated died with its cache (a stage reads them from storage)\n",
			s.Restarted.Format(time.RFC3339), s.CarriedLost)
	}
	printCPUStatus(w, r.CPUs)
	if t := r.Trust; t != nil {
		fmt.Fprintf(w, "trust root: %s (keys %s): only signed manifests are staged, synced or armed\n", t.Root, strings.Join(t.Keys, ", "))
		if t.RunningSignedBy != "" {
			fmt.Fprintf(w, "  running image signed by key %s\n", t.RunningSignedBy)
		} else if t.RunningError != "" {
			fmt.Fprintf(w, "  running image not trusted: %s\n", t.RunningError)
		}
	} else {
		fmt.Fprintln(w, "trust root: none (manifests need no signature)")
	}
	p := r.Preflight
	fmt.Fprintf(w, "kexec: image loaded %s, crash image loaded %s, lockdown %s\n", yesNo(p.KexecLoaded), yesNo(p.CrashLoaded), orUnknown(p.Lockdown))
	if r.RebootPath == rebootViaSystemd {
		fmt.Fprintln(w, "reboot path: systemd (fastreboot reboot runs systemctl kexec: services stopped, file systems unmounted; --force jumps at once)")
	} else {
		fmt.Fprintln(w, "reboot path: direct (no service manager: fastreboot reboot syncs and jumps at once)")
	}
	for _, c := range p.Checks {
		mark := "ok  "
		if !c.OK {
			mark = "FAIL"
		}
		fmt.Fprintf(w, "  %s %-24s %s\n", mark, c.Name, c.Detail)
	}
	if a := r.Agent; a != nil {
		s := a.Cache
		fmt.Fprintf(w, "cache (daemon pid %d): %d modules, %s held (+%s overhead); read from storage %s, rehydrated %s, derived %s; hits %d, misses %d\n",
			a.PID, s.Modules, human(s.BytesHeld), human(s.OverheadBytes), human(s.BytesRead), human(s.BytesRehydrated), human(s.BytesAdded), s.Hits, s.Misses)
		if ad := s.Adoption; ad.Modules > 0 {
			fmt.Fprintf(w, "carried modules adopted unverified: %d (%s): %d verified, %d pending, %d failed (%s hashing)\n",
				ad.Modules, human(ad.Bytes), ad.Verified, ad.Pending, ad.Failed, ad.VerifyTime.Round(time.Millisecond))
		}
		for _, warn := range a.Warnings {
			fmt.Fprintf(w, "warning: %s\n", warn)
		}
		if st := a.Staged; st != nil {
			fmt.Fprintf(w, "staged: %s for generation %d (%s), initrd %s, loaded %s with %s\n", st.Manifest, st.Generation, st.Reason, human(st.InitrdBytes), yesNo(st.Loaded), loadName(st.Load))
		}
		if k := a.KernelELF; k != nil {
			switch k.State {
			case agent.KernelELFReady:
				fmt.Fprintf(w, "decompressed kernel for --load=segments: ready, sha256 %s, %s (decompressed in %s)\n", k.ELF.SHA256[:12], human(k.ELF.Size), k.Took.Round(time.Millisecond))
			case agent.KernelELFFailed:
				fmt.Fprintf(w, "decompressed kernel for --load=segments: failed: %s\n", k.Error)
			default:
				fmt.Fprintf(w, "decompressed kernel for --load=segments: %s\n", k.State)
			}
		}
	} else {
		fmt.Fprintln(w, "cache: no daemon running (start `fastreboot daemon` to keep the cache)")
	}
	if r.Rollback != nil {
		printRollback(w, r.Rollback, time.Now())
	} else if r.Agent == nil {
		fmt.Fprintln(w, "boot assessment: kept by the daemon, and none is running")
	}
	if r.Crash != nil {
		printCrashStatus(w, r.Crash)
	}
	for _, p := range r.Problems {
		fmt.Fprintf(w, "problem: %s\n", p)
	}
}

// rearmProblems checks, when a crash path is armed, that the generation a
// crash boots into (crashhandler.NextCmdline of the armed image) and the
// generation the staged image boots could re-arm it: their command lines
// must ask for a crashkernel= of at least what the armed image needs.
func rearmProblems(cs *crashpath.StatusReport, in *agent.Info) []string {
	st := cs.State
	if st == nil {
		return nil
	}
	ram := st.MemoryMap.RAMBytes()
	var out []string
	next := crashhandler.NextCmdline(st.Cmdline, st.Mode, st.MemoryMap)
	if err := crashhandler.CheckRearm(next, st.Sizing, ram, cs.ReservationBytes); err != nil {
		out = append(out, fmt.Sprintf("armed crash image %s: %v", st.Name, err))
	}
	if in != nil && in.Staged != nil && in.Staged.Loaded && in.Staged.Cmdline != "" {
		err := crashhandler.CheckRearm(in.Staged.Cmdline, st.Sizing, ram, cs.ReservationBytes)
		var re *crashhandler.RearmError
		if errors.As(err, &re) {
			re.Which = "the generation it boots"
		}
		if err != nil {
			out = append(out, fmt.Sprintf("staged image %s: %v", in.Staged.Manifest, err))
		}
	}
	return out
}

// uptime reads root/proc/uptime.
func uptime(root string) (time.Duration, error) {
	b, err := os.ReadFile(filepath.Join(root, "proc/uptime"))
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0, fmt.Errorf("%s: empty", filepath.Join(root, "proc/uptime"))
	}
	s, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", filepath.Join(root, "proc/uptime"), err)
	}
	return time.Duration(s * float64(time.Second)), nil
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// orNone is s, or "none" when it is empty.
func orNone(s string) string {
	if s == "" {
		return "none"
	}
	return s
}
