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
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

const crashUsage = `fastreboot crash arm [MANIFEST] [--mode two-stage|direct] [--auto]
                   [--append WORD]... [--panic-timeout N] [--no-faults] [--allow-no-rearm]
                   [--load segments|file] [--initrd minimal|image] [--json]
fastreboot crash estimate [MANIFEST] [--mode two-stage|direct] [--load segments|file]
                   [--initrd minimal|image] [--json]
fastreboot crash disarm [--json]
fastreboot crash status [--json]
fastreboot crash last [--save DIR] [--json]
fastreboot crash recover [--evidence-dir DIR] [--no-reboot] [--json]`

// cmdCrash runs the crash path's subcommands.
func cmdCrash(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("crash needs a subcommand:\n%s", crashUsage)
	}
	switch args[0] {
	case "arm":
		return crashArm(ctx, e, args[1:])
	case "estimate":
		return crashEstimate(ctx, e, args[1:])
	case "disarm":
		return crashDisarm(ctx, e, args[1:])
	case "status":
		return crashStatus(ctx, e, args[1:])
	case "last":
		return crashLast(ctx, e, args[1:])
	case "recover":
		return crashRecover(ctx, e, args[1:])
	}
	return usagef("unknown crash subcommand %q:\n%s", args[0], crashUsage)
}

func crashArm(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash arm")
	choice := addCrashChoiceFlags(fs)
	auto := fs.Bool("auto", false, "arm again as the handoff records (mode, initrd), or do nothing when nothing was armed")
	var appendWords stringList
	fs.Var(&appendWords, "append", "`WORDS` to add to the crash kernel's command line (repeatable)")
	panicTimeout := fs.Int("panic-timeout", 0, "panic=N for the crash kernel: reboot through the firmware N seconds after a panic of its own (0: the default)")
	noFaults := fs.Bool("no-faults", false, "do not route faults (NMI, oops, hung task, lockups) to panic")
	allowNoRearm := fs.Bool("allow-no-rearm", false, "arm even when the generation after a crash could not re-arm (no or too small crashkernel=)")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("crash arm takes at most one manifest, got %q", pos)
	}
	req := agent.CrashArmRequest{Auto: *auto, PanicTimeout: *panicTimeout, NoFaults: *noFaults, AllowNoRearm: *allowNoRearm}
	if req.Mode, req.Load, req.Initrd, err = choice.parse(); err != nil {
		return err
	}
	for _, w := range appendWords {
		req.Append = append(req.Append, strings.Fields(w)...)
	}
	if len(pos) == 1 {
		req.Manifest = pos[0]
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.CrashArm(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, crashArmDoc(rep))
	}
	printWarnings(e.stderr, rep.Warnings)
	if !rep.Armed {
		fmt.Fprintf(e.stdout, "crash path not armed: %s\n", rep.Why)
		return nil
	}
	st := rep.State
	fmt.Fprintf(e.stdout, "crash path armed: mode %s, image %s (%s), reservation %s (needs %s), memory map from %s, took %s\n",
		st.Mode, st.Name, human(st.ImageBytes), human(st.ReservationBytes), human(st.Sizing.Total), rep.MemoryMapFrom, ms(rep.Took))
	if rep.Initrd == crashpath.InitrdMinimal {
		fmt.Fprintln(e.stdout, "crash initrd: minimal (fastreboot as /init and the carried modules)")
	}
	if st.LoadFallback != "" {
		fmt.Fprintf(e.stdout, "loaded with kexec_file_load instead of kexec_load: %s\n", st.LoadFallback)
	} else if st.Load != "" {
		fmt.Fprintf(e.stdout, "loaded with the %s method\n", st.Load)
	}
	if d := rep.Decision; d != nil {
		if d.Action == rollback.ActionRollback && d.Image != nil {
			fmt.Fprintf(e.stdout, "a crash boots: %s (reason rollback): %s\n", d.Image.Label(), d.Why)
		} else {
			fmt.Fprintf(e.stdout, "a crash boots: the running image again (reason %s): %s\n", d.Action, d.Why)
		}
	}
	return nil
}

// crashEstimate prints the crashkernel= the armed image or a manifest
// needs, like kdumpctl estimate.
func crashEstimate(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash estimate")
	choice := addCrashChoiceFlags(fs)
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 1 {
		return usagef("crash estimate takes at most one manifest, got %q", pos)
	}
	var req agent.CrashEstimateRequest
	if req.Mode, req.Load, req.Initrd, err = choice.parse(); err != nil {
		return err
	}
	if len(pos) == 1 {
		req.Manifest = pos[0]
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.CrashEstimate(ctx, req)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, crashEstimateDoc(rep))
	}
	printEstimate(e.stdout, rep)
	return nil
}

// crashChoiceFlags are the --mode, --load and --initrd flags that crash arm
// and crash estimate share.
type crashChoiceFlags struct{ mode, load, initrd *string }

func addCrashChoiceFlags(fs *flag.FlagSet) crashChoiceFlags {
	return crashChoiceFlags{
		mode:   fs.String("mode", "", "crash mode: two-stage (a crash kernel keeps the evidence and reboots into production) or direct (the crash kernel is production); default two-stage, or what is armed"),
		load:   fs.String("load", "", "segments (kexec_load of the kernel decompressed ahead of time; file under lockdown) or file (kexec_file_load); default segments"),
		initrd: fs.String("initrd", "", "the crash image's initrd: minimal (fastreboot as /init and the carried modules; two-stage only) or image (production's); default minimal for two-stage"),
	}
}

// parse checks the flags' values.
func (c crashChoiceFlags) parse() (crashhandler.Mode, crashhandler.LoadMethod, crashpath.Initrd, error) {
	mode := crashhandler.Mode(*c.mode)
	switch mode {
	case "", crashhandler.ModeTwoStage, crashhandler.ModeDirect:
	default:
		return "", "", "", usagef("--mode %q: want %s or %s", mode, crashhandler.ModeTwoStage, crashhandler.ModeDirect)
	}
	m, err := crashhandler.ParseLoadMethod(*c.load)
	if err != nil {
		return "", "", "", usagef("--load: %v", err)
	}
	i, err := parseInitrdFlag(*c.initrd, mode)
	if err != nil {
		return "", "", "", err
	}
	return mode, m, i, nil
}

// parseInitrdFlag checks --initrd: "" (the request's default: the choice
// the handoff records, else minimal in two-stage mode and image in direct
// mode), image or minimal, and minimal only with two-stage (or the default
// mode, which the agent checks once it knows it).
func parseInitrdFlag(s string, mode crashhandler.Mode) (crashpath.Initrd, error) {
	if s == "" {
		return "", nil
	}
	c, err := crashpath.ParseInitrd(s)
	if err != nil {
		return "", usagef("--initrd: %v", err)
	}
	if c == crashpath.InitrdMinimal && mode == crashhandler.ModeDirect {
		return "", usagef("--initrd %s: only for --mode %s (a direct crash kernel is production and runs its initrd)", c, crashhandler.ModeTwoStage)
	}
	return c, nil
}

func printEstimate(w io.Writer, rep *crashpath.EstimateReport) {
	from := "the armed image"
	if rep.From != "armed" {
		from = "built from the cache, not loaded"
	}
	fmt.Fprintf(w, "image:        %s (%s), kernel %s, initrd %s\n", rep.Name, from, human(rep.KernelBytes), human(rep.InitrdBytes))
	if rep.Initrd != "" {
		fmt.Fprintf(w, "crash initrd: %s\n", rep.Initrd)
	}
	fmt.Fprintf(w, "needs:        %s in %s mode (%s)\n", rep.Crashkernel, rep.Mode, rep.Breakdown)
	switch {
	case !rep.Supported:
		fmt.Fprintln(w, "reservation:  none: this kernel has no crash kexec")
	case rep.ReservationBytes == 0:
		fmt.Fprintln(w, "reservation:  none (no crashkernel= on the running kernel's command line)")
	case rep.Fits:
		fmt.Fprintf(w, "reservation:  %s: fits\n", human(rep.ReservationBytes))
	default:
		fmt.Fprintf(w, "reservation:  %s: too small\n", human(rep.ReservationBytes))
	}
	if ck := rep.NextCrashkernel; ck.Word != "" {
		fmt.Fprintf(w, "after crash:  the next generation boots with %s (%s)\n", ck.Word, human(ck.Size))
	} else {
		fmt.Fprintln(w, "after crash:  the next generation boots without crashkernel=")
	}
	for _, p := range rep.Problems {
		fmt.Fprintf(w, "problem:      %s\n", p)
	}
}

func crashDisarm(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash disarm")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("crash disarm takes no arguments, got %q", pos)
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	rep, err := svc.CrashDisarm(ctx)
	if err != nil {
		return err
	}
	printWarnings(e.stderr, rep.Warnings)
	if *asJSON {
		return printJSON(e.stdout, crashStatusDoc(schemaCrashDisarm, rep))
	}
	fmt.Fprintln(e.stdout, "crash path disarmed; fault-routing sysctls restored")
	return nil
}

func crashStatus(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash status")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("crash status takes no arguments, got %q", pos)
	}
	// The status is read from /sys, /proc and the state directory: no
	// daemon is needed.
	rep, err := crashpath.Status(e.root, e.stateDir, nil)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, crashStatusDoc(schemaCrashStatus, rep))
	}
	printCrashStatus(e.stdout, rep)
	return nil
}

func printCrashStatus(w io.Writer, rep *crashpath.StatusReport) {
	armed := "not armed"
	if rep.Armed {
		armed = "armed"
	}
	mode := string(rep.Mode)
	if mode == "" {
		mode = "-"
	}
	fmt.Fprintf(w, "crash path:   %s (mode %s), reservation %s, generation %d (%s)\n",
		armed, mode, human(rep.ReservationBytes), rep.Generation, rep.Reason)
	if st := rep.State; st != nil && st.Firmware {
		fmt.Fprintln(w, "firmware:     no crash image (a crash loop's decision): a fault still panics, and the panic reboots through the firmware")
	}
	if st := rep.State; st != nil && st.Load != "" {
		fmt.Fprintf(w, "loaded with:  %s\n", st.Load)
		if st.LoadFallback != "" {
			fmt.Fprintf(w, "fallback:     %s\n", st.LoadFallback)
		}
	}
	var routed []string
	for _, f := range rep.Faults {
		if f.Routed {
			routed = append(routed, strings.TrimPrefix(f.Name, "kernel."))
		}
	}
	fmt.Fprintf(w, "routed:       %s\n", strings.Join(routed, " "))
	if rep.Last != nil {
		printEvidence(w, rep.Last)
	}
}

// printWarnings writes each warning as "warning: ..." (on stderr).
func printWarnings(w io.Writer, warnings []string) {
	for _, s := range warnings {
		fmt.Fprintf(w, "warning: %s\n", s)
	}
}

func printEvidence(w io.Writer, ev *crashhandler.Evidence) {
	var where []string
	if ev.Generation > 0 {
		where = append(where, fmt.Sprintf("generation %d", ev.Generation))
	}
	if ev.Mode != "" {
		where = append(where, "mode "+string(ev.Mode))
	}
	if ev.Source != "" {
		where = append(where, "from "+ev.Source)
	}
	if ev.KernelRelease != "" {
		where = append(where, "kernel "+ev.KernelRelease)
	}
	reason := ev.Reason
	if reason == "" {
		reason = "cause unknown"
	}
	cpu := ""
	if ev.CPU >= 0 {
		cpu = fmt.Sprintf(" on CPU %d", ev.CPU)
	}
	fmt.Fprintf(w, "last crash:   %s%s at %s (%s)\n", reason, cpu, ev.Time.Format(time.RFC3339), strings.Join(where, ", "))
	if ev.Cause != "" {
		fmt.Fprintf(w, "cause:        %s\n", ev.Cause)
	}
	switch ev.ProductionKernel {
	case "elf":
		fmt.Fprintf(w, "reloaded:     production's decompressed kernel, from the crashed kernel's memory\n")
	case "compressed":
		fmt.Fprintf(w, "reloaded:     production's compressed kernel (%s)\n", ev.ProductionKernelWhy)
	}
	for _, p := range ev.Problems {
		fmt.Fprintf(w, "problem:      %s\n", p)
	}
}

func crashLast(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash last")
	save := fs.String("save", "", "also write the evidence (log, report) into this directory")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("crash last takes no arguments, got %q", pos)
	}
	ev := crashpath.LastCrash(e.root, e.stateDir)
	if ev == nil {
		return errors.New("no crash recorded: this system has not recovered from a crash since it booted through the firmware")
	}
	if *save != "" {
		if err := ev.Save(*save); err != nil {
			return err
		}
	}
	if *asJSON {
		return printJSON(e.stdout, crashLastDoc(ev))
	}
	printEvidence(e.stdout, ev)
	for _, l := range ev.Log {
		fmt.Fprintln(e.stdout, l)
	}
	return nil
}

// crashRecover is the crash stage: run by init in a kernel the crash path
// started, before anything else.
func crashRecover(ctx context.Context, e *env, args []string) error {
	fs := newFlags("crash recover")
	evDir := fs.String("evidence-dir", "", "where to keep the evidence (default: under the state directory)")
	noReboot := fs.Bool("no-reboot", false, "two-stage: restage production but do not kexec into it")
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("crash recover takes no arguments, got %q", pos)
	}
	opts := crashpath.Config{Root: e.root, StateDir: e.stateDir, Logger: e.log, MachineOptions: e.cfg.machine}
	rep, err := crashpath.Recover(ctx, opts, crashpath.RecoverOptions{EvidenceDir: *evDir})
	if rep != nil {
		if *asJSON {
			printJSON(e.stdout, crashRecoverDoc(rep))
		} else {
			if rep.EvidenceError != "" {
				fmt.Fprintf(e.stdout, "no evidence: %s\n", rep.EvidenceError)
			}
			if rep.Evidence != nil {
				printEvidence(e.stdout, rep.Evidence)
			}
			fmt.Fprintf(e.stdout, "crash recover: mode %s, evidence read in %s, memory map check %s, took %s\n",
				rep.Mode, ms(rep.EvidenceAt), rep.MemoryMapCheck, ms(rep.Took))
			printWarnings(e.stderr, rep.Warnings)
		}
	}
	if err != nil {
		return err
	}
	if rep.Mode == crashhandler.ModeDirect || *noReboot {
		return nil
	}
	mopts := e.cfg.machine
	mopts.Root, mopts.Logger = e.root, e.log
	mc := fastreboot.New(nil, mopts)
	fmt.Fprintf(e.stdout, "fastreboot: rebooting through kexec at %s\n", time.Now().UTC().Format(time.RFC3339Nano))
	drain(e.stdout)
	return mc.Reboot(ctx, fastreboot.RebootOptions{})
}
