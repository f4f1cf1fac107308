package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/statindex"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// imageFlags are the flags that describe a boot image by its files.
type imageFlags struct {
	kernel   string
	initrds  stringList
	cmdline  string
	appendTo string
	name     string
	entry    entryFlags
	noIndex  bool
	// hashed is what describing the files read (set by manifest).
	hashed *fastreboot.HashReport
}

func addImageFlags(fs *flag.FlagSet, f *imageFlags) {
	fs.StringVar(&f.kernel, "kernel", "", "the kernel (bzImage) of an image given by its files")
	fs.Var(&f.initrds, "initrd", "an initrd `PIECE`, in unpack order (repeatable)")
	fs.StringVar(&f.cmdline, "cmdline", "", "the command line of the image (default: the running one, see --append)")
	fs.StringVar(&f.appendTo, "append", "", "words added to the running command line's (or the boot entry's) kernel parameters, before any \"--\" (whose words go to init); instead of --cmdline")
	fs.StringVar(&f.name, "name", "", "the image's name (default: the boot entry's id with --entry or --default)")
	addEntryFlags(fs, &f.entry)
	fs.BoolVar(&f.noIndex, "no-index", false, "hash every file of an image given by its files or a boot entry: neither use nor update the stat index (its digests by device, inode, size and times, in /var/lib/fastreboot if that exists, else the state directory)")
}

// manifest builds the manifest the flags describe: each file is hashed and
// checked; the command line is --cmdline, or the boot entry's plus
// --append, or the running one (cleaned of loader words) plus --append.
// With --entry or --default the files and the command line are the boot
// entry's.
//
// The files' digests come from the stat index in the state directory for
// the files that did not change since it saw them (internal/statindex);
// the others are read and hashed, and with check their content is checked
// (staging leaves that to the cache, which checks every module it reads).
// What that read is in f.hashed.
func (f *imageFlags) manifest(ctx context.Context, e *env, check bool) (*bootimage.Manifest, error) {
	if f.cmdline != "" && f.appendTo != "" {
		return nil, usagef("give --cmdline or --append, not both")
	}
	kernel, initrds, name := f.kernel, []string(f.initrds), f.name
	base, running := "", true // the command line --append adds to: the running one, or base
	fromEntry := f.entry.given()
	switch {
	case fromEntry && (f.kernel != "" || len(f.initrds) > 0):
		return nil, usagef("give --entry/--default or --kernel/--initrd, not both")
	case fromEntry:
		en, err := f.entry.resolve(ctx, e)
		if err != nil {
			return nil, err
		}
		f.entry.entry = &en
		kernel, initrds, base, running = en.Kernel, en.Initrds, en.Cmdline, en.CmdlineFromRunning
		if name == "" {
			name = en.ID
		}
	case f.kernel == "":
		return nil, usagef("--kernel is required with --initrd/--cmdline/--append")
	}
	cmdline := f.cmdline
	if cmdline == "" {
		if running {
			b, err := os.ReadFile(filepath.Join(e.root, "proc/cmdline"))
			if err != nil {
				return nil, fmt.Errorf("reading the running command line: %w", err)
			}
			base = bootimage.CleanCmdline(strings.TrimSpace(string(b)))
		}
		cmdline = appendCmdline(base, f.appendTo)
	}
	kernel, err := filepath.Abs(kernel)
	if err != nil {
		return nil, err
	}
	paths := []string{kernel}
	for _, i := range initrds {
		a, err := filepath.Abs(i)
		if err != nil {
			return nil, err
		}
		paths = append(paths, a)
	}
	indexPath := e.statIndexPath()
	if f.noIndex {
		indexPath = ""
	}
	idx := statindex.Open(indexPath, e.now())
	m := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: name, Cmdline: cmdline}
	for i, p := range paths {
		role := bootimage.RoleInitrd
		if i == 0 {
			role = bootimage.RoleKernel
		}
		mod, err := idx.Module(p, role, check)
		if err == nil {
			m.Modules = append(m.Modules, mod)
			continue
		}
		if fromEntry {
			return nil, fmt.Errorf("boot entry %q: %w", f.entry.entry.ID, err)
		}
		return nil, err
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	rep := fastreboot.HashReport(idx.Report())
	f.hashed = &rep
	if !f.noIndex {
		if err := idx.Save(); err != nil {
			e.log.Info("the stat index was not saved: the next stage hashes these files again", "err", err)
		}
	}
	return m, nil
}

// appendCmdline adds the words of extra to the kernel parameters of
// cmdline: before its first "--", after which the kernel passes every word
// to init as an argument (a word appended after it would never reach the
// kernel). Init arguments extra itself gives (after its own "--") follow
// cmdline's.
func appendCmdline(cmdline, extra string) string {
	params, initArgs := bootimage.SplitCmdline(cmdline)
	more, moreInit := bootimage.SplitCmdline(extra)
	params = append(params, more...)
	if moreInit != "" && moreInit != "--" {
		if initArgs == "" {
			initArgs = moreInit
		} else {
			initArgs += " " + strings.TrimPrefix(moreInit, "-- ")
		}
	}
	return bootimage.JoinCmdline(params, initArgs)
}

func (f *imageFlags) given() bool {
	return f.kernel != "" || len(f.initrds) > 0 || f.cmdline != "" || f.appendTo != "" || f.entry.given()
}

func cmdStage(ctx context.Context, e *env, args []string) error {
	fs := newFlags("stage")
	var img imageFlags
	addImageFlags(fs, &img)
	current := fs.Bool("current", false, "restage what this generation runs, from the cache alone")
	dryRun := fs.Bool("dry-run", false, "build everything, load and reboot nothing")
	carry := fs.String("carry", fastreboot.CarryAuto.String(), "how the cache reaches the next kernel: auto (the kept region when this system keeps one, else the initrd), kept, initrd or none (it reads its modules from storage)")
	noCarry := fs.Bool("no-carry", false, "the same as --carry none")
	reason := fs.String("reason", string(fastreboot.ReasonUpdate), "why the next generation boots: update, manual or crash")
	load := fs.String("load", string(fastreboot.LoadFile), "file (kexec_file_load) or segments (kexec_load of the kernel decompressed once and cached; refused under lockdown)")
	var trial trialFlags
	addTrialFlags(fs, &trial)
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	method, err := fastreboot.ParseLoadMethod(*load)
	if err != nil {
		return usagef("--load: %v", err)
	}
	// Bad trial or policy values are refused before anything is read.
	var assess agent.StageRequest
	if err := trial.apply(&assess); err != nil {
		return err
	}
	req, err := stageRequest(ctx, e, pos, &img, *current)
	if err != nil {
		return err
	}
	carrier, err := fastreboot.ParseCarry(*carry)
	if err != nil {
		return usagef("--carry: %v", err)
	}
	if *noCarry {
		if set(fs, "carry") && carrier != fastreboot.CarryNone {
			return usagef("--no-carry and --carry %s disagree", carrier)
		}
		carrier = fastreboot.CarryNone
	}
	req.DryRun, req.Reason, req.Load = *dryRun, fastreboot.Reason(*reason), method
	if carrier != fastreboot.CarryAuto {
		req.Carry = carrier.String()
	}
	req.Trial, req.Policy = assess.Trial, assess.Policy
	if !req.Reason.Valid() || req.Reason == fastreboot.ReasonCold {
		// Only the firmware boots cold: Stage refuses that reason.
		return usagef("--reason %q: want update, manual or crash", *reason)
	}
	_, err = stage(ctx, e, req, *asJSON)
	return err
}

// stageRequest turns the positional manifest, the image flags or --current
// into a request.
func stageRequest(ctx context.Context, e *env, pos []string, img *imageFlags, current bool) (agent.StageRequest, error) {
	n := 0
	if len(pos) > 0 {
		n++
	}
	if img.given() {
		n++
	}
	if current {
		n++
	}
	switch {
	case len(pos) > 1:
		return agent.StageRequest{}, usagef("one manifest at a time, got %q", pos)
	case n == 0:
		return agent.StageRequest{}, usagef("give a MANIFEST, --kernel K --initrd I..., --default, --entry ID or --current")
	case n > 1:
		return agent.StageRequest{}, usagef("give only one of MANIFEST, --kernel/--initrd, --default/--entry, --current")
	case current:
		return agent.StageRequest{Current: true}, nil
	case len(pos) == 1:
		p, err := filepath.Abs(pos[0])
		return agent.StageRequest{Manifest: p}, err
	}
	m, err := img.manifest(ctx, e, false)
	if err != nil {
		return agent.StageRequest{}, err
	}
	return agent.StageRequest{Inline: m, Hashed: img.hashed}, nil
}

func stage(ctx context.Context, e *env, req agent.StageRequest, asJSON bool) (*fastreboot.StageReport, error) {
	svc, done, err := e.service(ctx)
	if err != nil {
		return nil, err
	}
	defer done()
	what := req.Manifest
	switch {
	case req.Current:
		what = "the running image (from the cache)"
	case req.Inline != nil && req.Inline.Name != "":
		what = req.Inline.Name + " (" + req.Inline.Kernel().Source + ")"
	case req.Inline != nil:
		what = "image of " + req.Inline.Kernel().Source
	}
	if !asJSON {
		fmt.Fprintf(e.stderr, "staging %s ...\n", what)
	}
	start := time.Now()
	rep, err := svc.Stage(ctx, req)
	if err != nil {
		return rep, err
	}
	if asJSON {
		return rep, printJSON(e.stdout, stageDoc(rep))
	}
	w := e.stdout
	verb := "loaded"
	if rep.DryRun {
		verb = "built (dry run, not loaded)"
	}
	fmt.Fprintf(w, "staged %s for generation %d (%s): %s in %s\n", rep.Manifest, rep.Generation, rep.Reason, verb, time.Since(start).Round(time.Millisecond))
	if s := rep.Segments; s != nil {
		how := "cached"
		if s.Decompressed {
			how = "decompressed in " + ms(s.DecompressTime)
		}
		fmt.Fprintf(w, "  load: segments (kexec_load): kernel ELF %s (%s, %s), entry %#x, %d segments, e820 from %s\n",
			s.KernelELF.SHA256[:12], human(s.KernelELF.Size), how, s.KernelEntry, len(s.Segments), s.MemoryMap)
	} else {
		fmt.Fprintf(w, "  load: %s\n", loadName(rep.Load))
	}
	if h := rep.Hashed; h != nil {
		fmt.Fprintf(w, "  digests: %d of %d files hashed (%s: %s), %d unchanged by the stat index\n",
			h.Hashed, h.Files, human(h.BytesRead), strings.Join(baseNames(h.Read), ", "), h.Hits)
	}
	fmt.Fprintf(w, "  read from storage: %s (%d modules: %s); from cache: %d modules\n",
		human(rep.Sync.BytesRead), rep.Sync.Misses, strings.Join(rep.Sync.Read, ", "), rep.Sync.Hits)
	if rep.Hashed != nil {
		fmt.Fprintf(w, "  read in all: %s (hashing %s + cache %s)\n", human(rep.BytesRead), human(rep.Hashed.BytesRead), human(rep.Sync.BytesRead))
	}
	for _, warn := range rep.Sync.Warnings {
		fmt.Fprintf(w, "  warning: %s\n", warn)
	}
	if k := rep.Kept; k != nil {
		fmt.Fprintf(w, "  initrd %s = pieces %s + padding %d B + handoff %s (carrier kept: %d modules, %s written to %s, sequence %d, in %s)\n",
			human(rep.InitrdBytes), human(rep.PiecesBytes), rep.PaddingBytes, human(rep.HandoffBytes), k.Modules, human(k.Bytes), k.Device, k.Sequence, k.Took.Round(time.Millisecond))
	} else {
		fmt.Fprintf(w, "  initrd %s = pieces %s + padding %d B + handoff %s (carrier %s: %d modules carried, %s)\n",
			human(rep.InitrdBytes), human(rep.PiecesBytes), rep.PaddingBytes, human(rep.HandoffBytes), rep.Carrier, rep.CarriedModules, human(rep.CarriedBytes))
	}
	if rep.CarrierWarning != "" {
		fmt.Fprintf(w, "  warning: %s\n", rep.CarrierWarning)
	}
	d := rep.Durations
	fmt.Fprintf(w, "  phases: validate %s, sync %s, assemble %s, handoff %s, %s %s\n",
		ms(d.Validate), ms(d.Sync), ms(d.Assemble), ms(d.Handoff), loadName(rep.Load), ms(d.Load))
	printStagedTrial(ctx, e, svc, req, rep)
	return rep, nil
}

func cmdReboot(ctx context.Context, e *env, args []string) (err error) {
	fs := newFlags("reboot")
	dryRun := fs.Bool("dry-run", false, "print the plan, sync and reboot nothing (a MANIFEST is staged as a dry run)")
	fallback := fs.String("fallback", "refuse", "when nothing is loaded: refuse, or firmware (reboot through the firmware)")
	stopCPUs := cpustop.DefaultPolicy
	fs.Var(&stopCPUs, "stop-cpus", "`POLICY`: kernel (the kernel stops the other CPUs) or hotplug (take them offline first, back online if the reboot fails)")
	force := fs.Bool("force", false, "jump at once (sync(2), reboot(2)) even under systemd, without stopping services or unmounting file systems")
	var trial trialFlags
	addTrialFlags(fs, &trial)
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var assess agent.StageRequest
	if err := trial.apply(&assess); err != nil {
		return err
	}
	if trial.any() && len(pos) == 0 {
		return usagef("--trial-deadline, --health, --health-timeout, --max-crashes and --crash-window are for the MANIFEST reboot stages first")
	}
	opts := e.cfg.machine
	opts.Root, opts.Logger = e.root, e.log
	ro := fastreboot.RebootOptions{DryRun: *dryRun, StopCPUs: stopCPUs}
	path := rebootPath(e.root)
	if *force {
		path = rebootDirect
	}
	switch *fallback {
	case "refuse":
		ro.Fallback = fastreboot.FallbackRefuse
	case "firmware":
		ro.Fallback = fastreboot.FallbackFirmware
	default:
		return usagef("--fallback %q: want refuse or firmware", *fallback)
	}
	if len(pos) > 1 {
		return usagef("one manifest at a time, got %q", pos)
	}
	var staged *fastreboot.StageReport
	if len(pos) == 1 {
		req, err := stageRequest(ctx, e, pos, &imageFlags{}, false)
		if err != nil {
			return err
		}
		req.DryRun = *dryRun
		req.Trial, req.Policy = assess.Trial, assess.Policy
		se := *e
		if *asJSON {
			se.stdout = io.Discard // the plan printed below holds the report
		}
		if staged, err = stage(ctx, &se, req, *asJSON); err != nil {
			return err
		}
	}
	m := fastreboot.New(nil, opts)
	plan, err := m.PlanReboot(ro)
	if err != nil && staged != nil && staged.DryRun && errors.Is(err, fastreboot.ErrNotLoaded) {
		// The image was built in a dry run (by the daemon or an agent of
		// this process, not by m), so it is not loaded: plan as if it were.
		plan.Cmd, plan.Mode, plan.Why, err = fastreboot.RebootKexec, "kexec", "", nil
		plan.StopCPUs = stopCPUs
	}
	if err != nil {
		return err
	}
	if plan.Staged == nil {
		plan.Staged = staged
	}
	if *asJSON {
		if err := printJSON(e.stdout, rebootDoc(plan)); err != nil {
			return err
		}
	} else if *dryRun && path == rebootViaSystemd {
		fmt.Fprintf(e.stdout, "fastreboot: dry run: would reboot through %s with systemctl %s%s\n", plan.Mode, systemctlVerb(plan), because(plan.Why))
	} else if *dryRun {
		fmt.Fprintf(e.stdout, "fastreboot: dry run: would sync and reboot through %s%s%s\n", plan.Mode, because(plan.Why), cpuNote(plan))
	} else if path == rebootViaSystemd {
		fmt.Fprintf(e.stdout, "fastreboot: rebooting through %s with systemctl %s at %s%s\n", plan.Mode, systemctlVerb(plan), time.Now().UTC().Format(time.RFC3339Nano), because(plan.Why))
	} else if plan.Mode == "kexec" {
		fmt.Fprintf(e.stdout, "fastreboot: rebooting through kexec at %s%s\n", time.Now().UTC().Format(time.RFC3339Nano), cpuNote(plan))
	} else {
		fmt.Fprintf(e.stdout, "fastreboot: rebooting through the firmware: %s\n", plan.Why)
	}
	if *dryRun {
		// m.Reboot would plan again, without the image staged above.
		return nil
	}
	if plan.Mode == "kexec" {
		// The workloads of preserved areas stop writing and what they
		// wrote is synced; a reboot that comes back thaws them.
		thaw, ferr := freezePreserved(ctx, e, *force)
		if ferr != nil {
			return ferr
		}
		defer func() {
			if err != nil {
				thaw()
			}
		}()
	}
	drain(e.stdout)
	if path == rebootViaSystemd {
		// systemd stops the services, unmounts the file systems and syncs,
		// then reboots into what is loaded: ours (see rebootViaSystemd).
		err = runSystemctl(ctx, e, systemctlVerb(plan))
		return err
	}
	err = m.Reboot(ctx, ro)
	return err
}

// systemctlVerb is the systemctl command of a reboot plan: kexec, or
// reboot when the plan goes through the firmware.
func systemctlVerb(plan fastreboot.RebootPlan) string {
	if plan.Mode == "kexec" {
		return "kexec"
	}
	return "reboot"
}

// persistentDir is where the stat index outlives the generation when the
// directory exists (a package creates it): the state directory is on
// tmpfs, and an index there starts empty after every reboot. The daemon
// keeps its boot record there too.
const persistentDir = agent.DefaultPersistDir

// statIndexPath is the stat index's file: in /var/lib/fastreboot (under
// the global --root) when that directory exists, else in the state
// directory.
func (e *env) statIndexPath() string {
	if dir := filepath.Join(e.root, persistentDir); isDir(dir) {
		return filepath.Join(dir, statindex.FileName)
	}
	return filepath.Join(e.stateDir, statindex.FileName)
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

func baseNames(paths []string) []string {
	var out []string
	for _, p := range paths {
		out = append(out, filepath.Base(p))
	}
	return out
}

func because(why string) string {
	if why == "" {
		return ""
	}
	return " (" + why + ")"
}

// loadName names the system call of a load method.
func loadName(m fastreboot.LoadMethod) string {
	if m == fastreboot.LoadSegments {
		return "kexec_load"
	}
	return "kexec_file_load"
}

func ms(d time.Duration) string { return d.Round(time.Millisecond).String() }

// set reports whether flag name was on fs's command line.
func set(fs *flag.FlagSet, name string) bool {
	found := false
	fs.Visit(func(fl *flag.Flag) { found = found || fl.Name == name })
	return found
}
