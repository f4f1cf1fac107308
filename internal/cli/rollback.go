package cli

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// cmdBless makes the running generation's image, on trial,
// last-known-good (agent.Service.Bless).
func cmdBless(ctx context.Context, e *env, args []string) error {
	fs := newFlags("bless")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("bless takes no arguments, got %q", pos)
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.Bless(ctx, agent.BlessRequest{})
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
	if len(r.History) > 0 {
		hist := r.History[max(len(r.History)-historyShown, 0):]
		fmt.Fprintf(w, "  history (last %d of %d):\n", len(hist), len(r.History))
		for _, ev := range hist {
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
			fmt.Fprintf(e.stderr, "fastreboot: rebooting through %s with systemctl %s at %s\n", plan.Mode, systemctlVerb(plan), time.Now().UTC().Format(time.RFC3339Nano))
			return runSystemctl(ctx, e, systemctlVerb(plan))
		}
		fmt.Fprintf(e.stderr, "fastreboot: rebooting through kexec at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
		drain(e.stderr)
		return m.Reboot(ctx, ro)
	}
}
