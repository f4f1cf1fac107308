// Command bench measures, in one QEMU session on the same boot image, the
// update reboot done several ways: fastreboot (kexec_file_load, cache
// carried into the next generation), fastreboot-nocarry (the cost of
// carrying made visible), segments (kexec_load of the cached decompressed
// kernel, no purgatory digest), kexec-tools (`kexec -l` then `kexec -e`:
// the legacy kexec_load with kexec-tools' purgatory, which checks the
// segments' SHA-256) as the side-by-side anchor, and kexec-tools-file
// (`kexec -s -l`: kexec_file_load) for context.
// Each round updates to the image not running (v1 <-> v2, same sizes), so
// every method loads an image of the same size. For each method it reports
// the median (and range) of every phase: staging, reboot request -> the new
// kernel's first line, kernel -> userspace, the whole downtime, and the
// bytes read from the disk while staging.
//
// It is a benchmark, not a test: run it through scripts/bench.sh.
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
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// A method stages an image and reboots into it.
type method struct {
	name string
	// stage returns the guest command that loads the image of release rel.
	stage func(rel string) string
	// fastreboot methods warm the cache with the running image first (a
	// real system filled it at boot) and report the tool's own numbers.
	fastreboot bool
	reboot     string
	marker     *regexp.Regexp
}

var kexecMarker = regexp.MustCompile(`^BENCH_KEXEC_EXEC`)

func methods(cmdline string) map[string]method {
	manifest := func(rel string) string {
		return scenario.MountPoint + "/manifest-" + rel + ".json"
	}
	return map[string]method{
		"fastreboot": {name: "fastreboot", fastreboot: true,
			stage:  func(rel string) string { return "fastreboot stage " + manifest(rel) + " --json" },
			reboot: "fastreboot reboot", marker: scenario.RebootingRE},
		"fastreboot-nocarry": {name: "fastreboot-nocarry", fastreboot: true,
			stage:  func(rel string) string { return "fastreboot stage --no-carry " + manifest(rel) + " --json" },
			reboot: "fastreboot reboot", marker: scenario.RebootingRE},
		"segments": {name: "segments", fastreboot: true,
			stage:  func(rel string) string { return "fastreboot stage --load=segments " + manifest(rel) + " --json" },
			reboot: "fastreboot reboot", marker: scenario.RebootingRE},
		"kexec-tools":      kexecTools("kexec-tools", "-l", cmdline),
		"kexec-tools-file": kexecTools("kexec-tools-file", "-s -l", cmdline),
	}
}

// kexecTools is Debian's kexec loading with flags (-l: kexec_load, -s -l:
// kexec_file_load), then `kexec -e`.
func kexecTools(name, flags, cmdline string) method {
	return method{name: name,
		stage: func(rel string) string {
			return fmt.Sprintf("/usr/sbin/kexec %s %s/%s --initrd=%s/initrd-%s.img --append=%q",
				flags, scenario.MountPoint, scenario.KernelFile, scenario.MountPoint, rel, cmdline)
		},
		reboot: "echo BENCH_KEXEC_EXEC; /usr/sbin/kexec -e", marker: kexecMarker}
}

// sample is one reboot.
type sample struct {
	Method       string        `json:"method"`
	Round        int           `json:"round"`
	To           string        `json:"to_release"`
	Stage        time.Duration `json:"stage_ns"`
	ToKernel     time.Duration `json:"to_kernel_ns"`
	KernelToUser time.Duration `json:"kernel_to_user_ns"`
	Downtime     time.Duration `json:"downtime_ns"`
	DiskRead     int64         `json:"disk_bytes_read"`
	ToolRead     int64         `json:"tool_bytes_read,omitempty"`
	InitrdBytes  int64         `json:"initrd_bytes,omitempty"`
	CPUs         string        `json:"cpus"`
	// LineLost: the old generation's last line never reached the
	// console, so the downtime counts from the command.
	LineLost bool `json:"line_lost,omitempty"`
}

func main() {
	rounds := flag.Int("rounds", 5, "reboots per method")
	list := flag.String("methods", "fastreboot,fastreboot-nocarry,segments,kexec-tools,kexec-tools-file",
		"methods, comma separated (fastreboot, fastreboot-nocarry, segments, kexec-tools, kexec-tools-file)")
	asJSON := flag.Bool("json", false, "print every sample and the summary as JSON")
	echo := flag.Bool("console", false, "echo the guest console")
	flag.Parse()
	if err := run(*rounds, strings.Split(*list, ","), *asJSON, *echo); err != nil {
		fmt.Fprintf(os.Stderr, "bench: %v\n", err)
		os.Exit(1)
	}
}

func run(rounds int, names []string, asJSON, echo bool) error {
	log := os.Stderr
	k, err := harness.FindKernel()
	if err != nil {
		return err
	}
	extra, err := kexecToolsFiles()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fastreboot-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(log, "bench: building the image (base piece, modules, kexec-tools, disk)")
	s, err := scenario.Prepare(context.Background(), k, scenario.Options{Dir: dir, ExtraFiles: extra,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	// kexec-tools takes one initrd file per image: put v1's on the disk too.
	all := methods(s.Cmdline)
	var ms []method
	for _, n := range names {
		m, ok := all[n]
		if !ok {
			return fmt.Errorf("unknown method %q", n)
		}
		ms = append(ms, m)
	}
	opts := s.VMOptions()
	opts.Name = "bench"
	if echo {
		opts.Echo = log
	}
	vm, boot, stalled, err := harness.StartBoot(opts, 5*time.Minute)
	if stalled != "" {
		fmt.Fprintf(log, "bench: the first cold boot stalled and was retried on a fresh QEMU: %s\n", stalled)
	}
	if vm != nil {
		defer vm.Close()
	}
	if err != nil {
		return err
	}
	g := &scenario.Guest{VM: vm}
	fmt.Fprintf(log, "bench: cold boot: QEMU start -> userspace %.2fs; console log %s\n", boot.StartAt.Seconds(), vm.LogPath())
	running := "v1"
	var samples []sample
	for round := 1; round <= rounds; round++ {
		for _, m := range ms {
			to := map[string]string{"v1": "v2", "v2": "v1"}[running]
			smp, err := once(g, m, running, to)
			if err != nil {
				return fmt.Errorf("round %d %s: %w (log %s)", round, m.name, err, vm.LogPath())
			}
			smp.Round = round
			samples = append(samples, *smp)
			fmt.Fprintf(log, "bench: round %d %-18s stage %6.2fs  request->kernel %6.2fs  kernel->user %6.2fs  downtime %6.2fs  disk read %s\n",
				round, m.name, smp.Stage.Seconds(), smp.ToKernel.Seconds(), smp.KernelToUser.Seconds(), smp.Downtime.Seconds(), scenario.Human(smp.DiskRead))
			running = to
		}
	}
	sum := summarize(names, samples)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Kernel  string    `json:"kernel"`
			Samples []sample  `json:"samples"`
			Summary []summary `json:"summary"`
		}{k.Version, samples, sum})
	}
	printSummary(os.Stdout, k.Version, rounds, sum)
	return nil
}

// once stages the image of release to with m and reboots into it.
func once(g *scenario.Guest, m method, running, to string) (*sample, error) {
	if err := settle(g); err != nil {
		return nil, err
	}
	if err := g.MountStorage(); err != nil {
		return nil, err
	}
	smp := &sample{Method: m.name, To: to}
	if m.fastreboot {
		// A real system filled its cache when it booted: do that here,
		// outside the measurement.
		if _, err := g.Run("fastreboot cache sync " + scenario.MountPoint + "/manifest-" + running + ".json"); err != nil {
			return nil, err
		}
	}
	before, err := g.DiskReadBytes()
	if err != nil {
		return nil, err
	}
	start := g.VM.Elapsed()
	out, err := g.Run(m.stage(to))
	if err != nil {
		return nil, err
	}
	smp.Stage = g.VM.Elapsed() - start
	after, err := g.DiskReadBytes()
	if err != nil {
		return nil, err
	}
	smp.DiskRead = after - before
	if m.fastreboot {
		var rep cli.StageV1
		if err := scenario.DecodeJSON(out, &rep); err != nil {
			return nil, err
		}
		smp.ToolRead, smp.InitrdBytes = rep.Sync.BytesRead, rep.InitrdBytes
	}
	r, err := g.RebootWith(m.reboot, m.marker, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	if r.Boot.Release != to {
		return nil, fmt.Errorf("booted release %s, want %s", r.Boot.Release, to)
	}
	smp.ToKernel, smp.KernelToUser, smp.Downtime, smp.CPUs, smp.LineLost = r.ToKernel(), r.KernelToUser(), r.Downtime(), r.Boot.CPUs, r.LineLost
	if m.fastreboot {
		var st cli.StatusV1
		if err := g.FastrebootJSON("status", &st); err != nil {
			return nil, err
		}
	}
	return smp, nil
}

// settle waits until the daemon has no background work (after a segments
// reboot it derives the decompressed kernel again), so that no method's
// staging or reboot shares the CPUs with it.
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

// kexecToolsFiles returns Debian's kexec binary and the shared libraries it
// needs, for the initramfs.
func kexecToolsFiles() ([]harness.File, error) {
	files, err := harness.HostBinaries("/usr/sbin/kexec")
	if err != nil {
		return nil, fmt.Errorf("kexec-tools: %w (apt-get install kexec-tools)", err)
	}
	return files, nil
}

type summary struct {
	Method       string        `json:"method"`
	N            int           `json:"n"`
	Stage        scenario.Stat `json:"stage"`
	ToKernel     scenario.Stat `json:"to_kernel"`
	KernelToUser scenario.Stat `json:"kernel_to_user"`
	Downtime     scenario.Stat `json:"downtime"`
	DiskRead     int64         `json:"median_disk_bytes_read"`
	VsKexecTools float64       `json:"downtime_vs_kexec_tools,omitempty"`
}

func summarize(names []string, samples []sample) []summary {
	var out []summary
	for _, n := range names {
		var st, tk, ku, dt []time.Duration
		var dr []int64
		for _, s := range samples {
			if s.Method == n {
				st, tk, ku, dt = append(st, s.Stage), append(tk, s.ToKernel), append(ku, s.KernelToUser), append(dt, s.Downtime)
				dr = append(dr, s.DiskRead)
			}
		}
		if len(dt) == 0 {
			continue
		}
		slices.Sort(dr)
		out = append(out, summary{Method: n, N: len(dt), Stage: scenario.Stats(st), ToKernel: scenario.Stats(tk), KernelToUser: scenario.Stats(ku), Downtime: scenario.Stats(dt), DiskRead: dr[len(dr)/2]})
	}
	var anchor time.Duration
	for _, s := range out {
		if s.Method == "kexec-tools" {
			anchor = s.Downtime.Median
		}
	}
	for i := range out {
		if anchor > 0 {
			out[i].VsKexecTools = float64(out[i].Downtime.Median) / float64(anchor)
		}
	}
	return out
}

func printSummary(w io.Writer, kernel string, rounds int, sum []summary) {
	fmt.Fprintf(w, "\nupdate reboot, Debian kernel %s, QEMU TCG q35 4 CPUs 2 GiB, one session, %d rounds; median [min-max] seconds\n\n", kernel, rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "method\tstaging\trequest -> kernel\tkernel -> userspace\tdowntime (request -> userspace)\tvs kexec-tools\tdisk read while staging")
	for _, s := range sum {
		ratio := "-"
		if s.VsKexecTools > 0 {
			ratio = fmt.Sprintf("%.2fx", s.VsKexecTools)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Method, s.Stage.String(), s.ToKernel.String(), s.KernelToUser.String(), s.Downtime.String(), ratio, scenario.Human(s.DiskRead))
	}
	tw.Flush()
}
