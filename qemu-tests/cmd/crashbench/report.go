package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// sample is one measured crash or update reboot.
type sample struct {
	Method string `json:"method"`
	Round  int    `json:"round"`
	timing
	// Capture is the kdump kernel's capture command (kdump only).
	Capture time.Duration `json:"capture_ns,omitempty"`
}

// summary is one method over the rounds.
type summary struct {
	Method        string         `json:"method"`
	N             int            `json:"n"`
	ToCrashKernel scenario.Stat  `json:"to_crash_kernel"`
	CrashStage    *scenario.Stat `json:"crash_stage,omitempty"`
	// SecondJump is over the samples whose crash stage's "rebooting
	// through kexec" line arrived (two-stage).
	SecondJump *scenario.Stat `json:"second_jump,omitempty"`
	ToUser     scenario.Stat  `json:"to_user"`
	ToDaemon   scenario.Stat  `json:"to_daemon"`
	ToReady    scenario.Stat  `json:"to_ready"`
	// ToArmed is over the samples whose production re-armed the crash
	// path (nil if none did); RearmLoads are the loads those re-arms
	// used, sorted.
	ToArmed    *scenario.Stat `json:"to_armed,omitempty"`
	RearmLoads []string       `json:"rearm_loads,omitempty"`
	// UserVsKdump and DaemonVsKdump are the medians over the kdump
	// anchor's (0 without the anchor).
	UserVsKdump   float64 `json:"to_user_vs_kdump,omitempty"`
	DaemonVsKdump float64 `json:"to_daemon_vs_kdump,omitempty"`
	// FromTrigger counts samples timed from the trigger: the panic (or
	// update request) line did not arrive.
	FromTrigger int `json:"from_trigger,omitempty"`
}

// summarize gives the median and range per method, in the order of names.
func summarize(names []string, samples []sample) []summary {
	var out []summary
	for _, n := range names {
		var kernel, stage, second, user, daemon, ready, armed []time.Duration
		var loads []string
		missing := 0
		for _, s := range samples {
			if s.Method != n {
				continue
			}
			kernel, user, daemon, ready = append(kernel, s.ToCrashKernel), append(user, s.ToUser), append(daemon, s.ToDaemon), append(ready, s.ToReady)
			if s.CrashStage > 0 {
				stage = append(stage, s.CrashStage)
			}
			if s.SecondJump > 0 {
				second = append(second, s.SecondJump)
			}
			if s.ToArmed > 0 {
				armed = append(armed, s.ToArmed)
				if s.RearmLoad != "" && !slices.Contains(loads, s.RearmLoad) {
					loads = append(loads, s.RearmLoad)
				}
			}
			if s.From == fromTrigger {
				missing++
			}
		}
		if len(user) == 0 {
			continue
		}
		sm := summary{Method: n, N: len(user), ToCrashKernel: scenario.Stats(kernel), ToUser: scenario.Stats(user),
			ToDaemon: scenario.Stats(daemon), ToReady: scenario.Stats(ready), FromTrigger: missing}
		if len(stage) > 0 {
			st := scenario.Stats(stage)
			sm.CrashStage = &st
		}
		if len(second) > 0 {
			st := scenario.Stats(second)
			sm.SecondJump = &st
		}
		if len(armed) > 0 {
			st := scenario.Stats(armed)
			sm.ToArmed = &st
			slices.Sort(loads)
			sm.RearmLoads = loads
		}
		out = append(out, sm)
	}
	var anchor *summary
	for i := range out {
		if out[i].Method == methodKdump {
			anchor = &out[i]
		}
	}
	if anchor != nil {
		for i := range out {
			out[i].UserVsKdump = ratio(out[i].ToUser.Median, anchor.ToUser.Median)
			out[i].DaemonVsKdump = ratio(out[i].ToDaemon.Median, anchor.ToDaemon.Median)
		}
	}
	return out
}

func ratio(a, b time.Duration) float64 {
	if b <= 0 {
		return 0
	}
	return float64(a) / float64(b)
}

// goal is one of issue 10's targets, checked against the medians.
type goal struct {
	What string `json:"what"`
	// Met is nil when the run lacks a method the goal compares.
	Met *bool  `json:"met"`
	Got string `json:"got"`
}

// goals checks, for every crash method run: direct <= the update downtime
// of the same run, two-stage <= 0.8x the kdump anchor (panic -> production
// userspace), and for the methods armed with segments the jumps to the
// next kernel's first line <= 1 s (the panic's, and the two-stage crash
// stage's kexec into production when its line arrived).
func goals(sum []summary) []goal {
	by := map[string]summary{}
	for _, s := range sum {
		by[s.Method] = s
	}
	var out []goal
	cmp := func(what string, a, b string, factor float64) {
		g := goal{What: what}
		sa, okA := by[a]
		sb, okB := by[b]
		if okA && okB {
			lim := time.Duration(factor * float64(sb.ToUser.Median))
			met := sa.ToUser.Median <= lim
			g.Met = &met
			g.Got = fmt.Sprintf("%.2fs vs %.2fs (limit %.2fs)", sa.ToUser.Median.Seconds(), sb.ToUser.Median.Seconds(), lim.Seconds())
		}
		out = append(out, g)
	}
	for _, s := range sum {
		switch crashMethods[s.Method].shape {
		case shapeDirect:
			cmp(s.Method+": panic -> production userspace <= the update's request -> userspace", s.Method, methodUpdate, 1)
		case shapeTwoStage:
			cmp(s.Method+": panic -> production userspace <= 0.8x kdump's", s.Method, methodKdump, 0.8)
		}
	}
	for _, s := range sum {
		if crashMethods[s.Method].load != loadSegments {
			continue
		}
		met := s.ToCrashKernel.Median <= time.Second
		out = append(out, goal{What: s.Method + ": panic -> the crash kernel's first line <= 1 s", Met: &met,
			Got: fmt.Sprintf("%.2fs", s.ToCrashKernel.Median.Seconds())})
		if s.SecondJump != nil {
			met := s.SecondJump.Median <= time.Second
			out = append(out, goal{What: s.Method + ": crash stage's kexec -> production's first line <= 1 s", Met: &met,
				Got: fmt.Sprintf("%.2fs", s.SecondJump.Median.Seconds())})
		}
	}
	return out
}

func printSummary(w io.Writer, kernel string, rounds int, capture string, sum []summary) {
	fmt.Fprintf(w, "\ncrash path, Debian kernel %s, QEMU TCG q35 4 CPUs 2 GiB, one VM, %d rounds; median [min-max] seconds from the panic line\n", kernel, rounds)
	fmt.Fprintf(w, "(update: from the reboot request; kdump capture: %s)\n\n", capture)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tload\t-> crash kernel's first line\tcrash kernel -> production kernel\t(crash stage's kexec -> production kernel)\t-> production userspace\t-> daemon answering\t-> armed again (re-arm load)\t-> ready\tuserspace vs kdump\tdaemon vs kdump")
	for _, s := range sum {
		stage := "-"
		if s.CrashStage != nil {
			stage = s.CrashStage.String()
		}
		second := "-"
		if s.SecondJump != nil {
			second = s.SecondJump.String()
		}
		armed := "-"
		if s.ToArmed != nil {
			armed = fmt.Sprintf("%s (%s)", s.ToArmed, strings.Join(s.RearmLoads, ","))
		}
		load := crashMethods[s.Method].load
		if load == "" {
			load = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Method, load, s.ToCrashKernel, stage, second, s.ToUser, s.ToDaemon, armed, s.ToReady,
			ratioString(s.UserVsKdump), ratioString(s.DaemonVsKdump))
	}
	tw.Flush()
	for _, s := range sum {
		if s.FromTrigger > 0 {
			fmt.Fprintf(w, "%s: %d of %d samples timed from the trigger (the panic or request line did not arrive)\n", s.Method, s.FromTrigger, s.N)
		}
	}
	fmt.Fprintln(w, "\ngoals (issue 10):")
	for _, g := range goals(sum) {
		state := "n/a (method not run)"
		if g.Met != nil {
			state = map[bool]string{true: "met", false: "NOT met"}[*g.Met]
		}
		fmt.Fprintf(w, "  %-84s %s", g.What, state)
		if g.Got != "" {
			fmt.Fprintf(w, ": %s", g.Got)
		}
		fmt.Fprintln(w)
	}
}

func ratioString(r float64) string {
	if r <= 0 {
		return "-"
	}
	return fmt.Sprintf("%.2fx", r)
}
