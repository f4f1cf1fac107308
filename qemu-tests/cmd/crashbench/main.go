// Command crashbench measures, in one QEMU session on the same boot image,
// how long a crash keeps the machine down, done several ways:
//
//   - direct-seg and direct: `fastreboot crash arm --mode direct --load
//     segments` (kexec_load(KEXEC_ON_CRASH) of the kernel decompressed
//     ahead of time, `crash arm`'s default) and `--load file`
//     (kexec_file_load), the crash kernel is production;
//   - two-stage-seg and two-stage: `fastreboot crash arm --mode two-stage`
//     with `--load segments` and `--load file`, a crash kernel (running
//     the minimal crash initramfs, two-stage mode's default: fastreboot as
//     /init) saves the evidence and kexecs into production;
//   - kdump: the anchor, what kdump-tools does: kexec-tools' `kexec -p` of
//     the same kernel and initrd with `nr_cpus=1 reset_devices irqpoll`, in
//     the kdump kernel a capture (kexec-tools' vmcore-dmesg of /proc/vmcore
//     to a disk, i.e. `makedumpfile --dump-dmesg`; with --kdump-capture=full
//     also every page of /proc/vmcore read), then a firmware reboot
//     (sysrq b) into production;
//   - update: a fastreboot update reboot (`fastreboot stage` then
//     `fastreboot reboot`), the reference downtime.
//
// Each crash is `echo c > /proc/sysrq-trigger`. From the console timestamps
// it reports panic -> the next kernel's first line, panic -> production's
// userspace (FRGUEST_START), panic -> production's daemon answering
// (frguest's daemon=started: the socket appears once the daemon serves) and
// panic -> the crash path armed again (frguest's start-up `crash arm
// --auto`, confirmed by `crash status` before the next crash), median
// [min-max] over the rounds, with ratios against the kdump anchor.
// Every jump is proved by what the next kernel prints (its first line, its
// command line, the crash stage's marker), never by a line printed right
// before a kexec.
//
// It is a benchmark, not a test: run it through scripts/crashbench.sh.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// Method names.
const (
	methodDirect   = "direct"
	methodTwoStage = "two-stage"
	methodKdump    = "kdump"
	methodUpdate   = "update"
)

// A crashMethod is what is armed before the trigger and what the console
// must show after it.
type crashMethod struct {
	shape shape
	// mode and load are `crash arm --mode` and `--load`. Every crash
	// method names its load: `crash arm` defaults to segments, and a
	// table row must say which system call armed it.
	mode, load string
}

// The crash arm load methods (`crash arm --load`).
const (
	loadSegments = "segments"
	loadFile     = "file"
)

// crashMethods are the methods --methods may name. A crash arm variant is
// one line here.
var crashMethods = map[string]crashMethod{
	// kexec_load(KEXEC_ON_CRASH) of the kernel decompressed ahead of
	// time: what `crash arm` does by default.
	"direct-seg":    {shape: shapeDirect, mode: "direct", load: loadSegments},
	"two-stage-seg": {shape: shapeTwoStage, mode: "two-stage", load: loadSegments},
	// kexec_file_load(KEXEC_FILE_ON_CRASH) of the bzImage.
	methodDirect:   {shape: shapeDirect, mode: "direct", load: loadFile},
	methodTwoStage: {shape: shapeTwoStage, mode: "two-stage", load: loadFile},
	methodKdump:    {shape: shapeKdump},
	methodUpdate:   {shape: shapeUpdate},
}

// defaultMethods runs the anchor first: it ends in a cold boot, the state
// it needs (see coldBoot), so round 1 needs no extra reboot. The product's
// default (segments) comes before the file methods.
const defaultMethods = methodKdump + "," + methodUpdate + ",direct-seg,two-stage-seg," + methodDirect + "," + methodTwoStage

// Guest paths.
const (
	kexecBin       = "/usr/sbin/kexec"
	vmcoreDmesgBin = "/usr/sbin/vmcore-dmesg"
	scratchDir     = "/scratch"
	// pstoreCmdline is the crash tests' ramoops region (see
	// qemu-tests/crash_test.go): the evidence of a direct-mode crash.
	pstoreCmdline = "memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers"
	// earlyConsole makes every kernel's first line reach the console at
	// once: the kernel's start is what the timeline is read from.
	earlyConsole = "earlyprintk=ttyS0,115200"
	// kdumpAppend is what kdump-tools appends for its kernel (Debian's
	// KDUMP_CMDLINE_APPEND, without the systemd unit and nousb), the
	// marker, and frguest without the daemon: a kdump initramfs runs the
	// capture, not the services.
	kdumpAppend = "nr_cpus=1 reset_devices irqpoll uroot.uinitargs=-daemon=off " + kdumpWord
)

type config struct {
	rounds       int
	methods      []string
	asJSON, echo bool
	crashkernel  string
	capture      string
	pstore       bool
}

func main() {
	var c config
	flag.IntVar(&c.rounds, "rounds", 3, "crashes per method")
	list := flag.String("methods", defaultMethods, "methods, comma separated ("+strings.Join(methodNames(), ", ")+")")
	flag.BoolVar(&c.asJSON, "json", false, "print every sample, the summary and the goals as JSON")
	flag.BoolVar(&c.echo, "console", false, "echo the guest console")
	flag.StringVar(&c.crashkernel, "crashkernel", "416M", "the cold boot's crashkernel= (big enough for two-stage)")
	flag.StringVar(&c.capture, "kdump-capture", "dmesg", "what the kdump kernel captures: dmesg (vmcore-dmesg to a disk) or full (also reads all of /proc/vmcore)")
	flag.BoolVar(&c.pstore, "pstore", true, "give the VM the crash tests' ramoops region (direct mode's evidence)")
	flag.Parse()
	c.methods = strings.Split(*list, ",")
	if err := run(c); err != nil {
		fmt.Fprintf(os.Stderr, "crashbench: %v\n", err)
		os.Exit(1)
	}
}

func methodNames() []string {
	var out []string
	for n := range crashMethods {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

func run(c config) error {
	log := os.Stderr
	for _, n := range c.methods {
		if _, ok := crashMethods[n]; !ok {
			return fmt.Errorf("unknown method %q (want one of %s)", n, strings.Join(methodNames(), ", "))
		}
	}
	if c.rounds < 1 {
		return fmt.Errorf("--rounds %d: want at least 1", c.rounds)
	}
	if c.capture != "dmesg" && c.capture != "full" {
		return fmt.Errorf("--kdump-capture %q: want dmesg or full", c.capture)
	}
	k, err := harness.FindKernel()
	if err != nil {
		return err
	}
	extra, err := harness.HostBinaries(kexecBin, vmcoreDmesgBin)
	if err != nil {
		return fmt.Errorf("kexec-tools: %w (apt-get install kexec-tools)", err)
	}
	dir, err := os.MkdirTemp("", "fastreboot-crashbench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(log, "crashbench: building the image (base piece, modules, kexec-tools, disks)")
	cmdline := "crashkernel=" + c.crashkernel + " " + earlyConsole
	var mods []string
	if c.pstore {
		cmdline += " " + pstoreCmdline
		mods = []string{"ramoops"}
	}
	s, err := scenario.Prepare(context.Background(), k, scenario.Options{Dir: dir, ExtraFiles: extra, Cmdline: cmdline,
		Modules: mods, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	scratch := filepath.Join(dir, "scratch.img")
	if err := harness.BuildDisk(scratch, 64<<20, harness.File{Path: "README", Data: []byte("kdump captures\n")}); err != nil {
		return err
	}
	opts := s.VMOptions()
	opts.Name = "crashbench"
	opts.Disks = append(opts.Disks, harness.Disk{Path: scratch})
	// The kdump anchor ends in a firmware reboot.
	opts.AllowReboot = true
	// As the crash tests: physical APIC destination mode (see
	// harness.CrashVMMaxCPUs); still 4 CPUs.
	opts.MaxCPUs = harness.CrashVMMaxCPUs
	if c.echo {
		opts.Echo = log
	}
	vm, boot, stalled, err := harness.StartBoot(opts, 5*time.Minute)
	if stalled != "" {
		fmt.Fprintf(log, "crashbench: the first cold boot stalled and was retried on a fresh QEMU: %s\n", stalled)
	}
	if vm != nil {
		defer vm.Close()
	}
	if err != nil {
		return err
	}
	b := &bench{c: c, g: &scenario.Guest{VM: vm}, kdumpCmdline: kdumpCmdline(s.Cmdline)}
	fmt.Fprintf(log, "crashbench: cold boot: QEMU start -> userspace %.2fs, cpus %s; console log %s\n", boot.StartAt.Seconds(), boot.CPUs, vm.LogPath())
	var samples []sample
	for round := 1; round <= c.rounds; round++ {
		for _, n := range c.methods {
			smp, err := b.once(n)
			if err != nil {
				return fmt.Errorf("round %d %s: %w (console log %s)", round, n, err, vm.LogPath())
			}
			smp.Round = round
			samples = append(samples, *smp)
			capture := ""
			if smp.Capture > 0 {
				capture = fmt.Sprintf(", capture %.2fs", smp.Capture.Seconds())
			}
			armed := ""
			if smp.ToArmed > 0 {
				armed = fmt.Sprintf(", armed again at %.2fs with %s", smp.ToArmed.Seconds(), smp.RearmLoad)
			}
			fmt.Fprintf(log, "crashbench: round %d %-14s -> crash kernel %6.2fs  stage %6.2fs  -> userspace %6.2fs  -> daemon %6.2fs  -> ready %6.2fs  (from the %s%s%s)\n",
				round, n, smp.ToCrashKernel.Seconds(), smp.CrashStage.Seconds(), smp.ToUser.Seconds(), smp.ToDaemon.Seconds(), smp.ToReady.Seconds(), smp.From, capture, armed)
		}
	}
	sum := summarize(c.methods, samples)
	if c.asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Kernel  string    `json:"kernel"`
			Capture string    `json:"kdump_capture"`
			Samples []sample  `json:"samples"`
			Summary []summary `json:"summary"`
			Goals   []goal    `json:"goals"`
		}{k.Version, c.capture, samples, sum, goals(sum)})
	}
	printSummary(os.Stdout, k.Version, c.rounds, captureWhat(c.capture), sum)
	return nil
}

func captureWhat(capture string) string {
	if capture == "full" {
		return "vmcore-dmesg to an ext4 disk, then all of /proc/vmcore read"
	}
	return "vmcore-dmesg of /proc/vmcore to an ext4 disk (makedumpfile --dump-dmesg)"
}

// bench drives the guest.
type bench struct {
	c            config
	g            *scenario.Guest
	kdumpCmdline string
}

// once prepares method n in the running production generation, triggers
// it and reads the timeline of the kernels that followed.
func (b *bench) once(n string) (*sample, error) {
	m := crashMethods[n]
	g, vm := b.g, b.g.VM
	if m.shape == shapeKdump {
		if err := b.coldBoot(); err != nil {
			return nil, err
		}
	}
	if err := settle(g); err != nil {
		return nil, err
	}
	if err := g.MountStorage(); err != nil {
		return nil, err
	}
	manifest := scenario.MountPoint + "/" + scenario.ManifestV1
	trigger := "echo c > /proc/sysrq-trigger"
	switch m.shape {
	case shapeDirect, shapeTwoStage:
		cmd := fmt.Sprintf("crash arm --mode %s --load %s", m.mode, m.load)
		var rep cli.CrashArmV1
		if err := g.FastrebootJSON(cmd+" "+manifest, &rep); err != nil {
			return nil, fmt.Errorf("fastreboot %s: %w", cmd, err)
		}
		if !rep.Armed || rep.State == nil || string(rep.State.Mode) != m.mode {
			return nil, fmt.Errorf("fastreboot %s: not armed in mode %s: %+v", cmd, m.mode, rep)
		}
		// A row labelled segments must not be a file image the arm fell
		// back to.
		if string(rep.State.Load) != m.load || rep.State.LoadFallback != "" {
			return nil, fmt.Errorf("fastreboot %s: armed with load %q (fallback: %q), want %s", cmd, rep.State.Load, rep.State.LoadFallback, m.load)
		}
	case shapeKdump:
		// One crash image at a time: fastreboot's goes (a generation
		// re-arms itself after a crash), kexec-tools' comes in.
		// (Its exit status does not matter: nothing may be armed.)
		if _, _, err := vm.Run("fastreboot crash disarm", 5*time.Minute); err != nil {
			return nil, err
		}
		load := fmt.Sprintf("%s -p %s/%s --initrd=%s/%s --append=%q", kexecBin, scenario.MountPoint, scenario.KernelFile,
			scenario.MountPoint, scenario.InitrdV1File, b.kdumpCmdline)
		if _, err := g.Run(load); err != nil {
			return nil, err
		}
		if out, err := g.Run("cat /sys/kernel/kexec_crash_loaded"); err != nil || !strings.Contains(scenario.StripKernelLines(out), "1") {
			return nil, fmt.Errorf("kexec -p: /sys/kernel/kexec_crash_loaded %q (%v), want 1", out, err)
		}
	case shapeUpdate:
		// A real system filled its cache when it booted: do that here,
		// outside the measurement, as cmd/bench does.
		if _, err := g.Run("fastreboot cache sync " + manifest); err != nil {
			return nil, err
		}
		if _, err := g.Run("fastreboot stage " + manifest); err != nil {
			return nil, err
		}
		trigger = "fastreboot reboot"
	}
	from := vm.Elapsed()
	if err := vm.SendLine(trigger); err != nil {
		return nil, err
	}
	smp := &sample{Method: n}
	if m.shape == shapeKdump {
		d, err := b.capture()
		if err != nil {
			return nil, err
		}
		smp.Capture = d
	}
	// Production's ready marker and shell: every shape ends there (a
	// two-stage crash stage kexecs before its own).
	if _, err := vm.Expect(5*time.Minute, harness.ReadyRE); err != nil {
		return nil, fmt.Errorf("production after %q: %w", trigger, err)
	}
	if err := vm.WaitPrompt(time.Minute); err != nil {
		return nil, err
	}
	t, err := measure(readTimeline(vm.Lines(), from), m.shape)
	if err != nil {
		return nil, err
	}
	smp.timing = t
	if t.ToArmed > 0 {
		if err := waitArmed(g); err != nil {
			return nil, err
		}
	}
	return smp, nil
}

// waitArmed waits until `crash status` says a crash image is loaded: the
// start-up re-arm the console reported must have left the crash path armed
// before the next method runs (and a crash path armed with segments may
// still be deriving its decompressed kernel when the console says ready).
func waitArmed(g *scenario.Guest) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st cli.CrashStatusV1
		if err := g.FastrebootJSON("crash status", &st); err != nil {
			return err
		}
		if st.Armed {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the start-up re-arm reported success but `crash status` says not armed after 5 minutes: %+v", st.CrashStatusReportV1)
		}
		time.Sleep(2 * time.Second)
	}
}

// coldBoot reboots through the firmware, outside the measurement, unless
// the running generation booted cold. kexec-tools places the kdump kernel in
// the RAM that /sys/firmware/memmap lists, and a generation the crash path
// started (or any kexec after it) lists there the e820 table its loader
// passed: for a crash kernel's kexec_file_load, only the crash kernel's own
// RAM. That rarely leaves a hole for the kernel in this generation's
// crashkernel= region: "Could not find a free area of memory of 0x3f98000
// bytes... locate_hole failed". A kdump setup runs on a machine booted
// through its firmware; so does the anchor.
func (b *bench) coldBoot() error {
	g, vm := b.g, b.g.VM
	var st cli.CrashStatusV1
	if err := g.FastrebootJSON("crash status", &st); err != nil {
		return err
	}
	if st.Reason == string(fastreboot.ReasonCold) {
		return nil
	}
	fmt.Fprintf(os.Stderr, "crashbench: generation %d (%s): %s; rebooting through the firmware before kdump (unmeasured)\n",
		st.Generation, st.Reason, firmwareMapRAM(g))
	if err := vm.SendLine("echo b > /proc/sysrq-trigger"); err != nil {
		return err
	}
	if _, err := vm.WaitBoot(5 * time.Minute); err != nil {
		return fmt.Errorf("cold boot before kdump: %w", err)
	}
	return nil
}

// firmwareMapRAM says, for the record, how much RAM /sys/firmware/memmap
// lists and where the crashkernel= region is (best effort).
func firmwareMapRAM(g *scenario.Guest) string {
	ends, err1 := g.Run("cat /sys/firmware/memmap/*/end")
	starts, err2 := g.Run("cat /sys/firmware/memmap/*/start")
	types, err3 := g.Run("cat /sys/firmware/memmap/*/type")
	crash, err4 := g.Run("grep -i 'crash kernel' /proc/iomem")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		return fmt.Sprintf("firmware map unknown (%v)", err)
	}
	var ram uint64
	st, en := strings.Fields(scenario.StripKernelLines(starts)), strings.Fields(scenario.StripKernelLines(ends))
	ty := strings.Split(strings.TrimSpace(scenario.StripKernelLines(types)), "\n")
	for i := range st {
		if i < len(en) && i < len(ty) && strings.TrimSpace(ty[i]) == "System RAM" {
			a, _ := strconv.ParseUint(st[i], 0, 64)
			z, _ := strconv.ParseUint(en[i], 0, 64)
			ram += z - a + 1
		}
	}
	return fmt.Sprintf("/sys/firmware/memmap lists %d MiB of RAM; /proc/iomem: %s", ram>>20, strings.TrimSpace(scenario.StripKernelLines(crash)))
}

// capture waits for the kdump kernel's shell, saves the crashed kernel's
// log from /proc/vmcore on the scratch disk (as kdump-tools would on its
// dump target) and reboots through the firmware. It returns how long the
// capture command ran.
func (b *bench) capture() (time.Duration, error) {
	vm := b.g.VM
	m, err := vm.Expect(5*time.Minute, harness.ReadyRE)
	if err != nil {
		return 0, fmt.Errorf("kdump kernel's userspace: %w", err)
	}
	if r, err := harness.ParseReady(m.Text); err != nil || r.Daemon != "off" {
		return 0, fmt.Errorf("kdump kernel: ready marker %q (%v), want daemon=off (frguest run with the kdump command line)", m.Text, err)
	}
	if err := vm.WaitPrompt(time.Minute); err != nil {
		return 0, err
	}
	cmd := fmt.Sprintf("mkdir -p %[1]s && mount -t ext4 /dev/vdb %[1]s && %[2]s /proc/vmcore > %[1]s/vmcore-dmesg.txt && sync && grep -c 'sysrq triggered crash' %[1]s/vmcore-dmesg.txt",
		scratchDir, vmcoreDmesgBin)
	if b.c.capture == "full" {
		cmd += " && cat /proc/vmcore > /dev/null"
	}
	start := vm.Elapsed()
	out, err := b.g.Run(cmd)
	if err != nil {
		return 0, fmt.Errorf("kdump capture: %w", err)
	}
	took := vm.Elapsed() - start
	if n, _ := strconv.Atoi(strings.TrimSpace(scenario.StripKernelLines(out))); n < 1 {
		return 0, fmt.Errorf("kdump capture: the crashed kernel's log has no panic line (grep said %q)", out)
	}
	if err := vm.SendLine("echo b > /proc/sysrq-trigger"); err != nil {
		return 0, err
	}
	return took, nil
}

// kdumpCmdline is the kdump kernel's command line made from production's,
// as kdump-tools makes it from /proc/cmdline: without the reservation and
// the memory and pstore words that belong to the crashed kernel, with
// kdumpAppend.
func kdumpCmdline(production string) string {
	var words []string
	for _, w := range strings.Fields(production) {
		k, _, _ := strings.Cut(w, "=")
		switch {
		case k == "crashkernel", k == "memmap", k == "crash_kexec_post_notifiers", strings.HasPrefix(k, "ramoops."):
			continue
		}
		words = append(words, w)
	}
	return strings.Join(append(words, strings.Fields(kdumpAppend)...), " ")
}

// settle waits until the daemon has no background work (after a segments
// reboot it derives the decompressed kernel again), so that no method's
// arming or crash shares the CPUs with it.
func settle(g *scenario.Guest) error {
	deadline := time.Now().Add(5 * time.Minute)
	for {
		var st cli.StatusV1
		if err := g.FastrebootJSON("status", &st); err != nil {
			return err
		}
		if st.Agent == nil || st.Agent.KernelELF == nil || st.Agent.KernelELF.State != string(agent.KernelELFPreparing) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the daemon is still preparing the decompressed kernel after 5 minutes")
		}
		time.Sleep(2 * time.Second)
	}
}
