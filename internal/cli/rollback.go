package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// cmdBless makes the running generation's image, on trial,
// last-known-good (agent.Service.Bless).
func cmdBless(ctx context.Context, e *env, args []string) error {
	fs := newFlags("bless")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	ifTrial := fs.Bool("if-trial", false, "succeed, saying so, when nothing is on trial (for a unit that runs at every boot: fastreboot-bless.service)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bless takes no arguments, got %q", pos)
	}
	if *ifTrial && *asJSON {
		return usagef("--if-trial prints text only: a program reads --json and its error kind rollback.not_on_trial")
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.Bless(ctx, agent.BlessRequest{})
	if err != nil && *ifTrial && errors.Is(err, rollback.ErrNotOnTrial) {
		fmt.Fprintf(e.stdout, "fastreboot: nothing to bless: %v\n", err)
		return nil
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, blessDoc(rep))
	}
	w := e.stdout
	fmt.Fprintf(w, "fastreboot: blessed generation %d: %s is last-known-good\n", rep.Generation, rep.Good.Label())
	if rep.Fallback != nil {
		fmt.Fprintf(w, "  fallback: %s (a crash loop of %s boots it)\n", rep.Fallback.Label(), rep.Good.Label())
	} else {
		fmt.Fprintf(w, "  fallback: none (a crash loop of %s reboots through the firmware)\n", rep.Good.Label())
	}
	rearmFailed, restageFailed := false, false
	for _, warn := range rep.Warnings {
		rearmFailed = rearmFailed || strings.HasPrefix(warn, "re-arming")
		restageFailed = restageFailed || strings.HasPrefix(warn, "restaging")
	}
	switch {
	case rep.Rearmed:
		fmt.Fprintln(w, "  crash path: armed again: a crash now recovers into the blessed image")
	case rearmFailed:
		fmt.Fprintln(w, "  crash path: re-arming failed (see the warning)")
	default:
		fmt.Fprintln(w, "  crash path: not armed through this agent: nothing to re-arm")
	}
	switch {
	case rep.Restaged:
		fmt.Fprintln(w, "  staged image: staged again under the new assessment")
	case restageFailed:
		fmt.Fprintln(w, "  staged image: restaging failed (see the warning)")
	default:
		fmt.Fprintln(w, "  staged image: none staged through this agent: nothing to restage")
	}
	printWarnings(e.stderr, rep.Warnings)
	return nil
}

// cmdRollback ends the running generation's trial: it stages
// last-known-good with reason rollback (agent.Service.Rollback) and, with
// --reboot, the agent jumps into it.
func cmdRollback(ctx context.Context, e *env, args []string) error {
	fs := newFlags("rollback")
	why := fs.String("why", "", "the `TEXT` the history records as the reason (default \"asked by an operator\")")
	reboot := fs.Bool("reboot", false, "jump into last-known-good once staged: the daemon reboots as fastreboot reboot does (systemctl kexec under systemd)")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("rollback takes no arguments, got %q", pos)
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.Rollback(ctx, agent.RollbackRequest{Why: *why, Reboot: *reboot})
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, rollbackDoc(rep))
	}
	w := e.stdout
	fmt.Fprintf(w, "fastreboot: rolling back to last-known-good %s: %s\n", rep.Good.Label(), rep.Why)
	if st := rep.Staged; st != nil {
		fmt.Fprintf(w, "  staged %s for generation %d (%s), loaded %s with %s\n", st.Manifest, st.Generation, st.Reason, yesNo(st.Loaded), loadName(st.Load))
	}
	if rep.Rebooting {
		fmt.Fprintln(w, "  rebooting into it now")
	} else {
		fmt.Fprintln(w, "  `fastreboot reboot` jumps into it")
	}
	return nil
}

// trialFlags are stage's flags for the boot assessment: what the staged
// generation must do to be blessed when it goes on trial, and the
// crash-loop policy.
type trialFlags struct {
	fs            *flag.FlagSet
	deadline      time.Duration
	health        string
	healthTimeout time.Duration
	maxCrashes    int
	window        time.Duration
}

func addTrialFlags(fs *flag.FlagSet, f *trialFlags) {
	f.fs = fs
	fs.DurationVar(&f.deadline, "trial-deadline", 0, fmt.Sprintf("`DURATION` within which the staged generation, when on trial (an image other than last-known-good), must be blessed once its daemon starts, or the daemon rolls back (0: no deadline; else %s to %s)", rollback.MinDeadline, rollback.MaxDeadline))
	fs.StringVar(&f.health, "health", "", "a `COMMAND` the staged generation's daemon runs when it is on trial: exit 0 blesses, anything else rolls back; split on white space, without a shell (anything more complex belongs in a script)")
	fs.DurationVar(&f.healthTimeout, "health-timeout", 0, fmt.Sprintf("`DURATION` the --health command may take (default %s)", rollback.DefaultHealthTimeout))
	fs.IntVar(&f.maxCrashes, "max-crashes", 0, fmt.Sprintf("`K`: from the staged generation on, the K-th crash of one image within --crash-window leaves it for the fallback image, or the firmware (1 to %d; default %d, or the running generation's)", rollback.MaxMaxCrashes, rollback.DefaultMaxCrashes))
	fs.DurationVar(&f.window, "crash-window", 0, fmt.Sprintf("`DURATION` in which --max-crashes crashes make a crash loop (%s to %s; default %s, or the running generation's)", rollback.MinWindow, rollback.MaxWindow, rollback.DefaultWindow))
}

// given reports whether flag name was on the command line.
func (f *trialFlags) given(name string) bool {
	found := false
	f.fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}

// any reports whether any of the flags was given.
func (f *trialFlags) any() bool {
	for _, n := range []string{"trial-deadline", "health", "health-timeout", "max-crashes", "crash-window"} {
		if f.given(n) {
			return true
		}
	}
	return false
}

// apply validates the flags (rollback's Validate, one flag at a time so
// that the usage error names it) and sets req.Trial when a trial flag was
// given and req.Policy when a policy flag was (the other one of
// --max-crashes and --crash-window from rollback.DefaultPolicy).
func (f *trialFlags) apply(req *agent.StageRequest) error {
	var t rollback.TrialOptions
	trial := false
	if f.given("trial-deadline") {
		trial, t.Deadline = true, f.deadline
		if err := (rollback.TrialOptions{Deadline: f.deadline}).Validate(); err != nil {
			return usagef("--trial-deadline %s: %v", f.deadline, err)
		}
	}
	if f.given("health") {
		trial, t.Health = true, strings.Fields(f.health)
		if len(t.Health) == 0 {
			return usagef("--health %q: %v", f.health, (rollback.TrialOptions{Health: []string{f.health}}).Validate())
		}
	}
	if f.given("health-timeout") {
		trial, t.HealthTimeout = true, f.healthTimeout
		if err := (rollback.TrialOptions{Health: t.Health, HealthTimeout: f.healthTimeout}).Validate(); err != nil {
			return usagef("--health-timeout %s: %v", f.healthTimeout, err)
		}
	}
	if trial {
		if err := t.Validate(); err != nil {
			return usagef("%v", err)
		}
		req.Trial = &t
	}
	if f.given("max-crashes") || f.given("crash-window") {
		p := rollback.DefaultPolicy()
		if f.given("max-crashes") {
			p.MaxCrashes = f.maxCrashes
			if err := (rollback.Policy{MaxCrashes: f.maxCrashes, Window: rollback.DefaultWindow}).Validate(); err != nil {
				return usagef("--max-crashes %d: %v", f.maxCrashes, err)
			}
		}
		if f.given("crash-window") {
			p.Window = f.window
			if err := (rollback.Policy{MaxCrashes: rollback.DefaultMaxCrashes, Window: f.window}).Validate(); err != nil {
				return usagef("--crash-window %s: %v", f.window, err)
			}
		}
		if err := p.Validate(); err != nil {
			return usagef("%v", err)
		}
		req.Policy = &p
	}
	return nil
}

// printStagedTrial says whether the generation rep staged goes on trial.
// The StageReport does not say: it is what rollback.State.Stage, which the
// agent applied, decides for the staged image under the running
// generation's assessment (Info after the stage, which leaves that
// assessment as it was). Nothing is printed when it cannot be known (no
// assessment, a manifest this command cannot read).
func printStagedTrial(ctx context.Context, e *env, svc agent.Service, req agent.StageRequest, rep *fastreboot.StageReport) {
	in, err := svc.Info(ctx)
	if err != nil || in.Rollback == nil {
		return
	}
	st := in.Rollback.State
	if req.Policy != nil {
		if st, err = st.WithPolicy(*req.Policy); err != nil {
			return
		}
	}
	w := e.stdout
	if req.Policy != nil {
		fmt.Fprintf(w, "  crash-loop policy: the %s crash of one image within %s leaves it (from generation %d on)\n", ordinal(st.Policy.MaxCrashes), st.Policy.Window, rep.Generation)
	}
	var m *bootimage.Manifest
	switch {
	case req.Inline != nil:
		m = req.Inline
	case req.Manifest != "":
		if m, err = bootimage.Load(req.Manifest); err != nil {
			e.log.Info("not saying whether the staged image goes on trial", "err", err)
			return
		}
	case in.Rollback.OnTrial:
		// The running image, on trial: it stays on trial.
		tr := *st.Trial
		if req.Trial != nil {
			tr.TrialOptions = *req.Trial
		}
		fmt.Fprintf(w, "  still on trial: last-known-good %s; %s\n", st.Good.Label(), trialTerms(tr.TrialOptions))
		return
	default:
		return
	}
	next, err := st.Stage(rep.Generation, m, string(rep.Reason), req.Trial, e.now())
	if err != nil {
		return
	}
	switch {
	case next.Trial == nil:
		fmt.Fprintf(w, "  not on trial: %s is last-known-good\n", next.Good.Label())
		if req.Trial != nil {
			fmt.Fprintln(w, "  (its trial flags apply only to an image on trial)")
		}
	default:
		fmt.Fprintf(w, "  on trial: last-known-good %s; %s\n", next.Good.Label(), trialTerms(next.Trial.TrialOptions))
	}
}

// trialTerms says what a trial ends with: "deadline D; health CMD".
func trialTerms(t rollback.TrialOptions) string {
	deadline, health := "none", "none"
	if t.Deadline > 0 {
		deadline = t.Deadline.String()
	}
	if len(t.Health) > 0 {
		health = strings.Join(t.Health, " ")
		if t.HealthTimeout > 0 {
			health += fmt.Sprintf(" (timeout %s)", t.HealthTimeout)
		}
	}
	s := "deadline " + deadline + "; health " + health
	if t.Deadline <= 0 && len(t.Health) == 0 {
		s += ": on trial until `fastreboot bless`"
	}
	return s
}

// historyShown is how many of the last history events status prints.
const historyShown = 5

// printRollback prints status's boot assessment section.
func printRollback(w io.Writer, r *RollbackInfoV1, now time.Time) {
	label := func(im *RollbackImageV1) string {
		if im == nil {
			return "none"
		}
		if im.Name == "" {
			return im.ID
		}
		return im.Name + "@" + im.ID
	}
	tr := r.Trial
	switch {
	case r.OnTrial && tr != nil:
		trialLabel := tr.ID
		if tr.Name != "" {
			trialLabel = tr.Name + "@" + tr.ID
		}
		fmt.Fprintf(w, "boot assessment: generation %d on trial: %s (staged %s); `fastreboot bless` makes it last-known-good\n", r.Generation, trialLabel, tr.Since.Format(time.RFC3339))
	default:
		fmt.Fprintf(w, "boot assessment: generation %d not on trial\n", r.Generation)
	}
	if g := r.Good; g != nil {
		fmt.Fprintf(w, "  last-known-good: %s (generation %d, by %s, since %s)\n", label(g), g.Generation, orUnknown(g.By), g.Since.Format(time.RFC3339))
	} else {
		fmt.Fprintln(w, "  last-known-good: none known")
	}
	if r.Fallback != nil {
		fmt.Fprintf(w, "  fallback:        %s (generation %d, by %s)\n", label(r.Fallback), r.Fallback.Generation, orUnknown(r.Fallback.By))
	} else {
		fmt.Fprintln(w, "  fallback:        none (a crash loop of last-known-good reboots through the firmware)")
	}
	if r.OnTrial && tr != nil {
		switch {
		case !r.Deadline.IsZero() && r.Deadline.After(now):
			fmt.Fprintf(w, "  deadline:        %s (%s left)\n", r.Deadline.Format(time.RFC3339), r.Deadline.Sub(now).Round(time.Second))
		case !r.Deadline.IsZero():
			fmt.Fprintf(w, "  deadline:        %s (passed %s ago)\n", r.Deadline.Format(time.RFC3339), now.Sub(r.Deadline).Round(time.Second))
		default:
			fmt.Fprintln(w, "  deadline:        none (on trial until `fastreboot bless`)")
		}
		switch h := r.Health; {
		case h != nil:
			line := fmt.Sprintf("%q: %s", strings.Join(h.Command, " "), h.State)
			if h.State != agent.HealthRunning {
				line += fmt.Sprintf(", exit %d after %s", h.ExitCode, h.Took.Round(time.Millisecond))
			}
			if h.Error != "" {
				line += ": " + h.Error
			}
			fmt.Fprintf(w, "  health command:  %s\n", line)
		case len(tr.Health) > 0:
			fmt.Fprintf(w, "  health command:  %q: not started\n", strings.Join(tr.Health, " "))
		default:
			fmt.Fprintln(w, "  health command:  none")
		}
	} else if tr != nil {
		fmt.Fprintf(w, "  trial:           generation %d, not this one\n", tr.Generation)
	}
	fmt.Fprintf(w, "  next crash:      %s: %s\n", r.NextCrash.Action, r.NextCrash.Why)
	n := 0
	for _, c := range r.Crashes {
		if now.Sub(c) < r.Policy.Window {
			n++
		}
	}
	fmt.Fprintf(w, "  crashes:         %d of this image within the last %s (policy: the %s within %s leaves it)\n", n, r.Policy.Window, ordinal(r.Policy.MaxCrashes), r.Policy.Window)
	if r.RollingBack != "" {
		fmt.Fprintf(w, "  rolling back:    %s\n", r.RollingBack)
	}
	printHistory(w, "  history", r.History)
	if pb := r.PreviousBoot; pb != nil {
		fmt.Fprintf(w, "  previous boot:   %s\n", pb.Ended)
		printHistory(w, "  previous boot's history", pb.History)
	}
}

// printHistory prints the newest historyShown events of hist under title.
func printHistory(w io.Writer, title string, hist []RollbackEventV1) {
	if len(hist) == 0 {
		return
	}
	shown := hist[max(len(hist)-historyShown, 0):]
	fmt.Fprintf(w, "%s (last %d of %d):\n", title, len(shown), len(hist))
	for _, ev := range shown {
		line := fmt.Sprintf("    %s generation %d %s", ev.At.Format(time.RFC3339), ev.Generation, ev.Reason)
		if ev.Image != "" {
			line += " " + ev.Image
		}
		if ev.Note != "" {
			line += ": " + ev.Note
		}
		fmt.Fprintln(w, line)
	}
}

// ordinal is "1st", "2nd", "3rd", "4th", ...
func ordinal(n int) string {
	suffix := "th"
	switch {
	case n%100 >= 11 && n%100 <= 13:
	case n%10 == 1:
		suffix = "st"
	case n%10 == 2:
		suffix = "nd"
	case n%10 == 3:
		suffix = "rd"
	}
	return fmt.Sprintf("%d%s", n, suffix)
}

// rebootFunc is how an agent of this command jumps into an image it
// staged itself (a rollback: `rollback --reboot`, or a trial's missed
// deadline or failed health command in the daemon): the path `fastreboot
// reboot` takes. Under systemd, systemctl kexec (services stopped, file
// systems unmounted, then the loaded image); else sync(2) and reboot(2)
// at once. Nothing loaded is refused, never a firmware reboot.
func (e *env) rebootFunc() func(ctx context.Context) error {
	return func(ctx context.Context) error {
		opts := e.cfg.machine
		opts.Root, opts.Logger = e.root, e.log
		m := fastreboot.New(nil, opts)
		ro := fastreboot.RebootOptions{Fallback: fastreboot.FallbackRefuse}
		if rebootPath(e.root) == rebootViaSystemd {
			plan, err := m.PlanReboot(ro)
			if err != nil {
				return err
			}
			thaw, err := freezePreserved(ctx, e, false)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.stderr, "fastreboot: rebooting through %s with systemctl %s at %s\n", plan.Mode, systemctlVerb(plan), time.Now().UTC().Format(time.RFC3339Nano))
			if err := runSystemctl(ctx, e, systemctlVerb(plan)); err != nil {
				thaw()
				return err
			}
			return nil
		}
		thaw, err := freezePreserved(ctx, e, false)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "fastreboot: rebooting through kexec at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
		drain(e.stderr)
		if err := m.Reboot(ctx, ro); err != nil {
			thaw()
			return err
		}
		return nil
	}
}
