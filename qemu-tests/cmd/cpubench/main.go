// Command cpubench measures, in one QEMU session, what each CPU policy of the
// update reboot costs (fastreboot reboot --stop-cpus=kernel|hotplug):
//
//   - request -> jump: from the line `fastreboot reboot` prints when it is
//     asked to reboot to the old kernel's last line, "kexec_core: Starting
//     new kernel", in host time. kernel_kexec() prints it after
//     device_shutdown() and migrate_to_reboot_cpu(), just before
//     machine_shutdown(): with the hotplug policy the secondaries are
//     already unplugged (by us, inside this interval); with the kernel
//     policy stop_other_cpus() parks them right after the line;
//   - jump -> new kernel: to the next kernel's "Linux version" line
//     (machine_shutdown with the kernel's own CPU stop, the purgatory's
//     digest check, the decompression), in host time;
//   - the next kernel bringing all CPUs up, from its own printk timestamps:
//     its first line to "smp: Brought up N nodes, M CPUs", and the SMP
//     bring-up itself ("x86: Booting SMP configuration:" to that line).
//
// Each round updates to the release not running (v1 <-> v2), alternating
// the policies; every generation raises the console log level (u-root's
// init sets 5, which hides the kexec line) before rebooting. It prints the
// median and range of every interval per policy.
//
// It is a benchmark, not a test: under TCG on shared cores the numbers move
// with the host's load; compare the policies within one run.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"regexp"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

var (
	jumpRE   = regexp.MustCompile(`kexec_core: Starting new kernel`)
	smpRE    = regexp.MustCompile(`smp: Brought up \d+ nodes?, (\d+) CPUs?`)
	bootSMP  = regexp.MustCompile(`x86: Booting SMP configuration:`)
	printkRE = regexp.MustCompile(`^\[\s*(\d+\.\d+)\]`)
)

// sample is one reboot.
type sample struct {
	Policy string `json:"policy"`
	Round  int    `json:"round"`
	// RequestToJump and JumpToKernel are host times; CPUsUp and SMPBringUp
	// come from the new kernel's printk clock.
	RequestToJump time.Duration `json:"request_to_jump_ns"`
	JumpToKernel  time.Duration `json:"jump_to_kernel_ns"`
	CPUsUp        time.Duration `json:"kernel_start_to_cpus_up_ns"`
	SMPBringUp    time.Duration `json:"smp_bring_up_ns"`
	CPUs          string        `json:"cpus"`
	// LineLost: the old generation's last line never reached the
	// console, so RequestToJump counts from the command. JumpLost: the
	// old kernel's "Starting new kernel" line never did, so the jump is
	// unknown and the sample counts for CPUsUp and SMPBringUp only.
	LineLost bool `json:"line_lost,omitempty"`
	JumpLost bool `json:"jump_lost,omitempty"`
}

func main() {
	rounds := flag.Int("rounds", 3, "reboots per policy")
	cpus := flag.Int("cpus", 4, "guest CPUs (-smp)")
	policies := flag.String("policies", "kernel,hotplug", "policies, comma separated")
	asJSON := flag.Bool("json", false, "print the samples and the summary as JSON")
	echo := flag.Bool("console", false, "echo the guest console to stderr")
	flag.Parse()
	if err := run(*rounds, *cpus, strings.Split(*policies, ","), *asJSON, *echo); err != nil {
		fmt.Fprintf(os.Stderr, "cpubench: %v\n", err)
		os.Exit(1)
	}
}

func run(rounds, cpus int, policies []string, asJSON, echo bool) error {
	k, err := harness.FindKernel()
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "fastreboot-cpubench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	fmt.Fprintln(os.Stderr, "cpubench: building the image")
	s, err := scenario.Prepare(context.Background(), k, scenario.Options{Dir: dir,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return err
	}
	opts := s.VMOptions()
	opts.Name = "cpubench"
	opts.CPUs = cpus
	if echo {
		opts.Echo = os.Stderr
	}
	vm, boot, stalled, err := harness.StartBoot(opts, 5*time.Minute)
	if stalled != "" {
		fmt.Fprintf(os.Stderr, "cpubench: the first cold boot stalled and was retried on a fresh QEMU: %s\n", stalled)
	}
	if vm != nil {
		defer vm.Close()
	}
	if err != nil {
		return err
	}
	g := &scenario.Guest{VM: vm}
	fmt.Fprintf(os.Stderr, "cpubench: cold boot: userspace at %.2fs, cpus %s; console log %s\n", boot.StartAt.Seconds(), boot.CPUs, vm.LogPath())
	if err := g.MountStorage(); err != nil {
		return err
	}
	if _, err := g.Run("fastreboot cache sync " + scenario.MountPoint + "/" + scenario.ManifestV1); err != nil {
		return err
	}
	running := "v1"
	var samples []sample
	for round := 1; round <= rounds; round++ {
		for _, p := range policies {
			to := map[string]string{"v1": "v2", "v2": "v1"}[running]
			smp, err := once(g, p, to)
			if err != nil {
				return fmt.Errorf("round %d %s: %w (log %s)", round, p, err, vm.LogPath())
			}
			smp.Round = round
			samples = append(samples, *smp)
			fmt.Fprintf(os.Stderr, "cpubench: round %d %-8s request->jump %6.3fs  jump->kernel %6.2fs  kernel start->%s CPUs up %6.3fs (SMP bring-up %6.3fs)\n",
				round, p, smp.RequestToJump.Seconds(), smp.JumpToKernel.Seconds(), smp.CPUs, smp.CPUsUp.Seconds(), smp.SMPBringUp.Seconds())
			running = to
		}
	}
	sum := summarize(policies, samples)
	if asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(struct {
			Kernel  string    `json:"kernel"`
			CPUs    int       `json:"cpus"`
			Samples []sample  `json:"samples"`
			Summary []summary `json:"summary"`
		}{k.Version, cpus, samples, sum})
	}
	printSummary(os.Stdout, k.Version, cpus, rounds, sum)
	return nil
}

// once stages the image of release to and reboots into it with policy.
func once(g *scenario.Guest, policy, to string) (*sample, error) {
	if err := g.MountStorage(); err != nil && !strings.Contains(err.Error(), "busy") {
		return nil, err
	}
	if _, err := g.Run("fastreboot stage " + scenario.MountPoint + "/manifest-" + to + ".json"); err != nil {
		return nil, err
	}
	// u-root's init sets the console log level to 5: let KERN_NOTICE
	// (the kexec line) and KERN_INFO through.
	if _, err := g.Run("echo 8 > /proc/sys/kernel/printk"); err != nil {
		return nil, err
	}
	r, err := g.RebootWith("fastreboot reboot --stop-cpus="+policy, scenario.RebootingRE, 5*time.Minute)
	if err != nil {
		return nil, err
	}
	if r.Boot.Release != to {
		return nil, fmt.Errorf("booted release %s, want %s", r.Boot.Release, to)
	}
	smp := &sample{Policy: policy, CPUs: r.Boot.CPUs, LineLost: r.LineLost}
	var jumpAt, kernelAt time.Duration
	var t0, tSMP, tUp float64 = -1, -1, -1
	for _, l := range g.VM.Lines() {
		if l.T < r.Requested || l.T > r.Boot.StartAt {
			continue
		}
		switch {
		case jumpAt == 0 && jumpRE.MatchString(l.Text):
			jumpAt = l.T
		case kernelAt == 0 && harness.KernelStartRE.MatchString(l.Text):
			kernelAt = l.T
			t0 = printkTime(l.Text)
		case kernelAt > 0 && tSMP < 0 && bootSMP.MatchString(l.Text):
			tSMP = printkTime(l.Text)
		case kernelAt > 0 && tUp < 0 && smpRE.MatchString(l.Text):
			tUp = printkTime(l.Text)
		}
	}
	if kernelAt == 0 || t0 < 0 || tUp < 0 {
		return nil, fmt.Errorf("console lacks a marker of the next kernel: kernel at %v, printk t0 %v, CPUs up %v", kernelAt, t0, tUp)
	}
	// The old kernel's last line is best effort: a kexec can stop the
	// CPUs before it leaves the UART.
	if jumpAt == 0 {
		smp.JumpLost = true
	} else {
		smp.RequestToJump = jumpAt - r.Requested
		smp.JumpToKernel = kernelAt - jumpAt
	}
	smp.CPUsUp = seconds(tUp - t0)
	if tSMP >= 0 {
		smp.SMPBringUp = seconds(tUp - tSMP)
	}
	return smp, nil
}

func printkTime(line string) float64 {
	m := printkRE.FindStringSubmatch(line)
	if m == nil {
		return -1
	}
	f, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return -1
	}
	return f
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

type summary struct {
	Policy        string        `json:"policy"`
	N             int           `json:"n"`
	RequestToJump scenario.Stat `json:"request_to_jump"`
	JumpToKernel  scenario.Stat `json:"jump_to_kernel"`
	CPUsUp        scenario.Stat `json:"kernel_start_to_cpus_up"`
	SMPBringUp    scenario.Stat `json:"smp_bring_up"`
}

func summarize(policies []string, samples []sample) []summary {
	var out []summary
	for _, p := range policies {
		var rj, jk, up, smp []time.Duration
		for _, s := range samples {
			if s.Policy == p {
				up, smp = append(up, s.CPUsUp), append(smp, s.SMPBringUp)
				if !s.JumpLost {
					rj, jk = append(rj, s.RequestToJump), append(jk, s.JumpToKernel)
				}
			}
		}
		if len(up) == 0 {
			continue
		}
		out = append(out, summary{Policy: p, N: len(up), RequestToJump: scenario.Stats(rj), JumpToKernel: scenario.Stats(jk), CPUsUp: scenario.Stats(up), SMPBringUp: scenario.Stats(smp)})
	}
	return out
}

func printSummary(w io.Writer, kernel string, cpus, rounds int, sum []summary) {
	fmt.Fprintf(w, "\nCPU policies of the update reboot, Debian kernel %s, QEMU TCG q35 %d CPUs, one session, %d rounds; median [min-max] seconds\n\n", kernel, cpus, rounds)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "policy\trequest -> jump\tjump -> new kernel\tnew kernel: start -> all CPUs up\tof which SMP bring-up")
	for _, s := range sum {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Policy, s.RequestToJump.String(), s.JumpToKernel.String(), s.CPUsUp.String(), s.SMPBringUp.String())
	}
	tw.Flush()
}
