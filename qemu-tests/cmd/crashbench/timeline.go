package main

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// Console lines the timeline is read from. Every time comes from what a
// kernel or userspace printed after the event, never from a line printed
// right before a jump (it may still sit in a buffer when the jump happens).
var (
	// kernelFirstRE is the first line every kernel prints (earlyprintk is on
	// every command line), at printk time 0. It may follow a shell prompt;
	// a log line quoted in JSON output (a `"` before it) is not a kernel.
	// (nor one frguest echoes from dmesg, "<6>[...").
	kernelFirstRE = regexp.MustCompile(`(?:^|[^">])\[ *0\.000000\] Linux version \d`)
	cmdlineRE     = regexp.MustCompile(`\] Kernel command line: (.*)$`)
	panicRE       = regexp.MustCompile(`\] Kernel panic - not syncing`)
	daemonRE      = regexp.MustCompile(`^frguest: daemon=started`)
	// armRE is frguest's report of the start-up re-arm (`fastreboot crash
	// arm --auto`, before FRGUEST_READY): state, then the command's
	// output on one line.
	armRE = regexp.MustCompile(`^FRGUEST_CRASH_ARM (\S+) took=\S+s: (.*)$`)
	// armLoadRE is the load method `crash arm` says it armed with.
	armLoadRE = regexp.MustCompile(`loaded with the (\S+) method`)
	// rebootingRE is fastreboot's line before reboot(2): a best effort
	// start of a jump, used only when it arrived.
	rebootingRE = regexp.MustCompile(`^fastreboot: rebooting through kexec`)
)

// bootSeen is one kernel's run on the console: from its first line to the
// next kernel's.
type bootSeen struct {
	KernelAt time.Duration
	Cmdline  string
	// StartAt (FRGUEST_START), DaemonAt (frguest: daemon=started: the
	// socket exists, so the daemon answers) and ReadyAt (FRGUEST_READY,
	// after the start-up re-arm) are 0 when not seen.
	StartAt, DaemonAt, ReadyAt time.Duration
	// Recover is the crash mode of the crash stage's first line
	// (harness.CrashStageRE: frguest's FRGUEST_RECOVER or the minimal
	// crash initramfs's "fastreboot: crash stage"; "" outside the crash
	// stage).
	Recover string
	// RebootingAt is when this kernel said it kexecs (0 if the line did
	// not arrive).
	RebootingAt time.Duration
	// ArmedAt is when frguest reported the start-up re-arm armed the
	// crash path (0: no re-arm, or it did not arm); ArmLoad is the load
	// method it said ("file (fallback)" for a segments arm that fell back
	// to kexec_file_load). Arm is the whole report of a re-arm that did
	// not arm (failed, or nothing to re-arm).
	ArmedAt time.Duration
	ArmLoad string
	Arm     string
}

// timeline is what the console showed from a trigger on.
type timeline struct {
	// PanicAt is the crashed kernel's panic line, or the trigger when the
	// line did not arrive before the next kernel (PanicSeen false).
	PanicAt   time.Duration
	PanicSeen bool
	// Before is the old kernel's "rebooting through kexec" line (update).
	RebootingAt time.Duration
	Boots       []bootSeen
}

// readTimeline splits the console lines arriving at or after from into the
// kernels that ran.
func readTimeline(lines []harness.Line, from time.Duration) timeline {
	tl := timeline{PanicAt: from}
	var cur *bootSeen
	for _, l := range lines {
		if l.T < from {
			continue
		}
		if kernelFirstRE.MatchString(l.Text) {
			tl.Boots = append(tl.Boots, bootSeen{KernelAt: l.T})
			cur = &tl.Boots[len(tl.Boots)-1]
			continue
		}
		if cur == nil {
			switch {
			case !tl.PanicSeen && panicRE.MatchString(l.Text):
				tl.PanicAt, tl.PanicSeen = l.T, true
			case rebootingRE.MatchString(l.Text):
				tl.RebootingAt = l.T
			}
			continue
		}
		switch {
		case cur.Cmdline == "" && cmdlineRE.MatchString(l.Text):
			cur.Cmdline = cmdlineRE.FindStringSubmatch(l.Text)[1]
		case cur.StartAt == 0 && harness.StartRE.MatchString(l.Text):
			cur.StartAt = l.T
		case cur.Recover == "" && harness.CrashStageRE.MatchString(l.Text):
			cur.Recover = harness.CrashStageRE.FindStringSubmatch(l.Text)[1]
		case cur.DaemonAt == 0 && daemonRE.MatchString(l.Text):
			cur.DaemonAt = l.T
		case cur.ReadyAt == 0 && harness.ReadyRE.MatchString(l.Text):
			cur.ReadyAt = l.T
		case cur.ArmedAt == 0 && cur.Arm == "" && armRE.MatchString(l.Text):
			m := armRE.FindStringSubmatch(l.Text)
			if m[1] != "ok" || !strings.Contains(m[2], "crash path armed") {
				cur.Arm = m[1] + ": " + m[2]
				continue
			}
			cur.ArmedAt = l.T
			switch lm := armLoadRE.FindStringSubmatch(m[2]); {
			case strings.Contains(m[2], "loaded with kexec_file_load instead"):
				cur.ArmLoad = "file (fallback)"
			case lm != nil:
				cur.ArmLoad = lm[1]
			}
		case rebootingRE.MatchString(l.Text):
			cur.RebootingAt = l.T
		}
	}
	return tl
}

// The shapes of what follows a trigger.
type shape int

const (
	// shapeDirect: the crash kernel is production (its crash stage says
	// mode=direct, then the daemon).
	shapeDirect shape = iota
	// shapeTwoStage: a crash kernel (its crash stage says mode=two-stage)
	// that kexecs into production.
	shapeTwoStage
	// shapeKdump: a kdump kernel (its command line carries kdumpWord),
	// then a firmware reboot into production.
	shapeKdump
	// shapeUpdate: a fastreboot update reboot into production.
	shapeUpdate
)

// kdumpWord marks the kdump kernel's command line (frguest ignores it).
const kdumpWord = "crashbench.kdump"

// What a timing counts from.
const (
	fromPanic   = "panic"
	fromRequest = "request"
	fromTrigger = "trigger"
)

// errTimeline is a console that does not show the expected kernels.
var errTimeline = errors.New("unexpected console timeline")

// timing is one measured crash (or update) from the console.
type timing struct {
	// From is what the times count from: "panic" (the crashed kernel's
	// panic line), "request" (the update's "rebooting through kexec"
	// line) or "trigger" (when the bench typed the command: that line did
	// not arrive).
	From string `json:"from"`
	// ToCrashKernel: panic -> the next kernel's first line (update: the
	// reboot request -> the new kernel).
	ToCrashKernel time.Duration `json:"to_crash_kernel_ns"`
	// CrashStage: crash kernel's first line -> production kernel's first
	// line (two-stage, kdump; 0 for direct and update).
	CrashStage time.Duration `json:"crash_stage_ns,omitempty"`
	// SecondJump: the crash stage's "rebooting through kexec" line ->
	// production's first line, when that line arrived (two-stage).
	SecondJump time.Duration `json:"second_jump_ns,omitempty"`
	// ToUser: panic -> production's FRGUEST_START.
	ToUser time.Duration `json:"to_user_ns"`
	// ToDaemon: panic -> production's daemon answering.
	ToDaemon time.Duration `json:"to_daemon_ns"`
	// ToReady: panic -> production's FRGUEST_READY (after the start-up
	// re-arm of the crash path, if any).
	ToReady time.Duration `json:"to_ready_ns"`
	// ToArmed: panic -> production's start-up re-arm reported the crash
	// path armed again (0: production did not re-arm, e.g. after the
	// kdump anchor's cold boot). RearmLoad is the load it armed with.
	ToArmed   time.Duration `json:"to_armed_ns,omitempty"`
	RearmLoad string        `json:"rearm_load,omitempty"`
}

// measure checks that tl shows the kernels of shape sh and returns the
// times. Extra kernels, a missing marker or a crash kernel of the wrong kind
// are errors: a number is only reported for the jumps it proves.
func measure(tl timeline, sh shape) (timing, error) {
	bs := tl.Boots
	need := map[shape]int{shapeDirect: 1, shapeTwoStage: 2, shapeKdump: 2, shapeUpdate: 1}[sh]
	if len(bs) != need {
		return timing{}, fmt.Errorf("%w: %d kernels started after the trigger, want %d", errTimeline, len(bs), need)
	}
	crash, prod := bs[0], bs[len(bs)-1]
	from := tl.PanicAt
	t := timing{From: fromTrigger}
	if tl.PanicSeen && sh != shapeUpdate {
		t.From = fromPanic
	}
	switch sh {
	case shapeDirect:
		if crash.Recover != "direct" {
			return t, fmt.Errorf("%w: the crash kernel ran no direct crash stage (crash stage mode=%q)", errTimeline, crash.Recover)
		}
	case shapeTwoStage:
		if crash.Recover != "two-stage" {
			return t, fmt.Errorf("%w: the first kernel ran no two-stage crash stage (crash stage mode=%q)", errTimeline, crash.Recover)
		}
		if prod.Recover != "" {
			return t, fmt.Errorf("%w: the second kernel is a crash kernel too (mode %s)", errTimeline, prod.Recover)
		}
		if crash.RebootingAt > 0 {
			t.SecondJump = prod.KernelAt - crash.RebootingAt
		}
	case shapeKdump:
		if !hasWord(crash.Cmdline, kdumpWord) {
			return t, fmt.Errorf("%w: the first kernel is not the kdump kernel (command line %q)", errTimeline, crash.Cmdline)
		}
		if crash.StartAt == 0 {
			return t, fmt.Errorf("%w: the kdump kernel reached no userspace", errTimeline)
		}
		if hasWord(prod.Cmdline, kdumpWord) || prod.Recover != "" {
			return t, fmt.Errorf("%w: the second kernel is not production (command line %q, crash mode %q)", errTimeline, prod.Cmdline, prod.Recover)
		}
	case shapeUpdate:
		if crash.Recover != "" {
			return t, fmt.Errorf("%w: the update booted a crash kernel (mode %s)", errTimeline, crash.Recover)
		}
		if tl.RebootingAt > 0 {
			// The request line arrived: it is closer to the jump than
			// the trigger (the command's own start-up).
			from, t.From = tl.RebootingAt, fromRequest
		}
	}
	if (sh == shapeDirect || sh == shapeTwoStage) && prod.ArmedAt == 0 {
		// A crash must leave the machine protected again (issue 10).
		return t, fmt.Errorf("%w: production did not re-arm the crash path (FRGUEST_CRASH_ARM %q)", errTimeline, prod.Arm)
	}
	if prod.StartAt == 0 || prod.DaemonAt == 0 || prod.ReadyAt == 0 {
		return t, fmt.Errorf("%w: production incomplete: userspace at %v, daemon at %v, ready at %v (0: not seen)", errTimeline, prod.StartAt, prod.DaemonAt, prod.ReadyAt)
	}
	t.ToCrashKernel = crash.KernelAt - from
	if len(bs) == 2 {
		t.CrashStage = prod.KernelAt - crash.KernelAt
	}
	t.ToUser, t.ToDaemon, t.ToReady = prod.StartAt-from, prod.DaemonAt-from, prod.ReadyAt-from
	if prod.ArmedAt > 0 {
		t.ToArmed, t.RearmLoad = prod.ArmedAt-from, prod.ArmLoad
	}
	return t, nil
}

// hasWord tells whether the kernel command line has the parameter word
// (alone or as word=value); init's arguments after "--" do not count.
func hasWord(cmdline, word string) bool {
	params, _ := bootimage.SplitCmdline(cmdline)
	for _, f := range params {
		if f == word || strings.HasPrefix(f, word+"=") {
			return true
		}
	}
	return false
}
