// Command demo is fastreboot's main job: it boots Debian's kernel in QEMU
// (TCG), fills the module cache from a virtio disk, stages an update that
// changes one of three initrd pieces, fast-reboots into it through kexec,
// shows the next generation's cache rehydrated without reading the disk,
// reboots once more from the cache alone, and prints a table of timings.
//
// Run it through scripts/demo.sh, which installs QEMU and fetches the kernel.
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
	"os/signal"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

func main() {
	console := flag.Bool("console", false, "echo the guest's serial console")
	asJSON := flag.Bool("json", false, "print the results as JSON on stdout (progress stays on stderr)")
	keep := flag.Bool("keep", false, "keep the work directory")
	flag.Usage = func() {
		fmt.Fprintf(os.Stderr, "usage: demo [--console] [--json] [--keep]\n\n")
		fmt.Fprintf(os.Stderr, "Boots Debian's kernel in QEMU and shows fastreboot's update path with its timings.\n")
		fmt.Fprintf(os.Stderr, "Needs qemu-system-x86_64 and the kernel from scripts/fetch-kernel.sh (scripts/demo.sh does both).\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	res, err := run(ctx, os.Stderr, *console, *keep)
	if err != nil {
		fmt.Fprintf(os.Stderr, "\ndemo failed: %v\n", err)
		os.Exit(1)
	}
	if *asJSON {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(res)
		return
	}
	printTable(os.Stdout, res)
}

// generation is what the demo measured of one generation.
type generation struct {
	Gen    int    `json:"generation"`
	How    string `json:"how"`
	Reason string `json:"reason"`
	// ToKernel is QEMU start (gen 1) or the reboot request -> the kernel's
	// first line; KernelToUser the kernel's first line -> userspace.
	ToKernel     time.Duration `json:"to_kernel_ns"`
	KernelToUser time.Duration `json:"kernel_to_user_ns"`
	Total        time.Duration `json:"to_userspace_ns"`
	CPUs         string        `json:"cpus"`
	Release      string        `json:"release"`
	// Staging that led to this generation, and what it read.
	Stage          time.Duration `json:"stage_ns,omitempty"`
	Load           time.Duration `json:"kexec_file_load_ns,omitempty"`
	ToolBytesRead  int64         `json:"tool_bytes_read"`
	DiskBytesRead  int64         `json:"disk_bytes_read"`
	CacheModules   int           `json:"cache_modules"`
	CacheHeld      int64         `json:"cache_bytes_held"`
	CacheOverhead  int64         `json:"cache_overhead_bytes"`
	Rehydrated     int64         `json:"cache_bytes_rehydrated"`
	CacheBytesRead int64         `json:"cache_bytes_read_from_storage"`
}

type result struct {
	Kernel      string       `json:"kernel"`
	Generations []generation `json:"generations"`
}

// progress prints a step and, until done is called, a line every few
// seconds so that long waits under TCG show they are alive.
func progress(w io.Writer, format string, args ...any) (done func(string)) {
	msg := fmt.Sprintf(format, args...)
	fmt.Fprintf(w, "==> %s\n", msg)
	start := time.Now()
	stop := make(chan struct{})
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				fmt.Fprintf(w, "    ... %s (%.0fs)\n", msg, time.Since(start).Seconds())
			}
		}
	}()
	return func(result string) {
		close(stop)
		<-finished
		fmt.Fprintf(w, "    %s [%.1fs]\n", result, time.Since(start).Seconds())
	}
}

func run(ctx context.Context, w io.Writer, echo, keep bool) (*result, error) {
	if err := harness.CheckQEMU(); err != nil {
		return nil, fmt.Errorf("%w (run scripts/install-deps.sh)", err)
	}
	k, err := harness.FindKernel()
	if err != nil {
		return nil, fmt.Errorf("%w (run scripts/fetch-kernel.sh)", err)
	}
	dir, err := os.MkdirTemp("", "fastreboot-demo-")
	if err != nil {
		return nil, err
	}
	if keep {
		fmt.Fprintf(w, "work directory: %s\n", dir)
	} else {
		defer os.RemoveAll(dir)
	}
	res := &result{Kernel: k.Version}

	done := progress(w, "building the boot image: u-root initramfs with fastreboot, Debian %s modules, storage disk (about a minute the first time)", k.Version)
	s, err := scenario.Prepare(ctx, k, scenario.Options{Dir: dir, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		return nil, err
	}
	done(fmt.Sprintf("image v1: kernel %s + base %s + kmods %s + site %s; update v2 changes only the site piece",
		scenario.Human(scenario.ModuleSize(s.V1, scenario.KernelFile)), scenario.Human(scenario.ModuleSize(s.V1, scenario.BaseFile)),
		scenario.Human(scenario.ModuleSize(s.V1, scenario.KmodsFile)), scenario.Human(scenario.ModuleSize(s.V1, scenario.SiteV1File))))

	opts := s.VMOptions()
	opts.Name = "demo"
	if echo {
		opts.Echo = w
	}
	done = progress(w, "cold boot: QEMU (TCG, q35, 4 CPUs, 2 GiB) -> Debian kernel -> u-root init -> fastreboot daemon")
	vm, boot, stalled, err := harness.StartBoot(opts, 5*time.Minute)
	if stalled != "" {
		fmt.Fprintf(w, "  the first cold boot stalled and was retried on a fresh QEMU: %s\n", stalled)
	}
	if vm != nil {
		defer vm.Close()
	}
	if err != nil {
		return nil, err
	}
	g := &scenario.Guest{VM: vm}
	done(fmt.Sprintf("generation 1 up: userspace %.1fs after QEMU started, CPUs %s, release %s", boot.StartAt.Seconds(), boot.CPUs, boot.Release))
	gen1 := generation{Gen: 1, How: "cold boot (QEMU firmware)", Reason: "cold", ToKernel: boot.KernelAt, KernelToUser: boot.StartAt - boot.KernelAt, Total: boot.StartAt, CPUs: boot.CPUs, Release: boot.Release}

	if err := g.MountStorage(); err != nil {
		return nil, err
	}
	done = progress(w, "filling the module cache from the disk (manifest v1)")
	var sync cli.CacheSyncV1
	if err := g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV1, &sync); err != nil {
		return nil, err
	}
	gen1.ToolBytesRead = sync.BytesRead
	done(fmt.Sprintf("cached %d modules, read %s from the disk", sync.Misses, scenario.Human(sync.BytesRead)))
	res.Generations = append(res.Generations, gen1)

	prev := gen1
	for _, step := range []struct {
		gen  int
		how  string
		args string
	}{
		{2, "update to v2", "stage " + scenario.MountPoint + "/" + scenario.ManifestV2},
		{3, "restage v2 from the cache", "stage --current"},
		{4, "restage v2 with --load=segments", "stage --current --load=segments"},
	} {
		before, err := g.DiskReadBytes()
		if err != nil {
			return nil, err
		}
		done = progress(w, "generation %d: fastreboot %s (read what changed, build the image in RAM, load it)", prev.Gen, step.args)
		var rep cli.StageV1
		if err := g.FastrebootJSON(step.args, &rep); err != nil {
			return nil, err
		}
		after, err := g.DiskReadBytes()
		if err != nil {
			return nil, err
		}
		read := "nothing read from the disk"
		if rep.Sync.BytesRead > 0 {
			read = fmt.Sprintf("read %s (%s), the disk read %s", scenario.Human(rep.Sync.BytesRead), strings.Join(rep.Sync.Read, ", "), scenario.Human(after-before))
		}
		loaded := fmt.Sprintf("kexec_file_load %.1fs", rep.Durations.Load.Seconds())
		if s := rep.Segments; s != nil {
			loaded = fmt.Sprintf("kexec_load %.1fs", rep.Durations.Load.Seconds())
			if s.Decompressed {
				loaded += fmt.Sprintf(", kernel decompressed once in %.1fs", s.DecompressTime.Seconds())
			}
		}
		done(fmt.Sprintf("staged in %.1fs (%s): %s; %d modules from the cache; initrd %s incl. handoff %s",
			rep.Durations.Total.Seconds(), loaded, read, rep.Sync.Hits, scenario.Human(rep.InitrdBytes), scenario.Human(rep.HandoffBytes)))

		done = progress(w, "generation %d: fastreboot reboot (kexec, no firmware)", prev.Gen)
		r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 5*time.Minute)
		if err != nil {
			return nil, fmt.Errorf("%w (console log %s)", err, vm.LogPath())
		}
		lost := ""
		if r.LineLost {
			lost = " (the reboot line never reached the console: counted from the command)"
		}
		done(fmt.Sprintf("generation %d up: reboot request -> kernel %.1fs -> userspace %.1fs (downtime %.1fs)%s, CPUs %s, release %s",
			step.gen, r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds(), lost, r.Boot.CPUs, r.Boot.Release))

		var st cli.StatusV1
		if err := g.FastrebootJSON("status", &st); err != nil {
			return nil, err
		}
		if st.Agent == nil {
			return nil, errors.New("generation has no fastreboot daemon")
		}
		c := st.Agent.Cache
		fmt.Fprintf(w, "    status: generation %d, reason %s; cache %d modules, %s held (+%s overhead), %s rehydrated from the handoff, %s read from storage\n",
			st.Generation, st.Reason, c.Modules, scenario.Human(c.BytesHeld), scenario.Human(c.OverheadBytes), scenario.Human(c.BytesRehydrated), scenario.Human(c.BytesRead))
		gen := generation{
			Gen: step.gen, How: step.how, Reason: string(st.Reason),
			ToKernel: r.ToKernel(), KernelToUser: r.KernelToUser(), Total: r.Downtime(),
			CPUs: r.Boot.CPUs, Release: r.Boot.Release,
			Stage: rep.Durations.Total, Load: rep.Durations.Load,
			ToolBytesRead: rep.Sync.BytesRead, DiskBytesRead: after - before,
			CacheModules: c.Modules, CacheHeld: c.BytesHeld, CacheOverhead: c.OverheadBytes,
			Rehydrated: c.BytesRehydrated, CacheBytesRead: c.BytesRead,
		}
		if st.Generation != step.gen || r.Boot.CPUs != boot.CPUs || r.Boot.Release != "v2" {
			return nil, fmt.Errorf("generation %d came up as generation %d with CPUs %s and release %s", step.gen, st.Generation, r.Boot.CPUs, r.Boot.Release)
		}
		res.Generations = append(res.Generations, gen)
		prev = gen
	}
	return res, nil
}

func printTable(w io.Writer, r *result) {
	fmt.Fprintf(w, "\nfastreboot demo: Debian kernel %s under QEMU TCG (no KVM: every number is slower than on hardware)\n\n", r.Kernel)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "gen\thow\tstart -> kernel\tkernel -> userspace\tstart -> userspace\tstaging\tread by tool\tdisk read\tcache rehydrated\t")
	for _, g := range r.Generations {
		stage := "-"
		if g.Stage > 0 {
			stage = secs(g.Stage)
		}
		disk := "-"
		if g.Gen > 1 {
			disk = scenario.Human(g.DiskBytesRead)
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t\n", g.Gen, g.How, secs(g.ToKernel), secs(g.KernelToUser), secs(g.Total), stage, scenario.Human(g.ToolBytesRead), disk, scenario.Human(g.Rehydrated))
	}
	tw.Flush()
	fmt.Fprintln(w, "\n\"start\" is QEMU start for the cold boot and the reboot request for the fast reboots; staging happens before the")
	fmt.Fprintln(w, "reboot is requested, outside the downtime. Emulated firmware is nearly free under QEMU; on servers it takes minutes.")
}

func secs(d time.Duration) string { return fmt.Sprintf("%.2fs", d.Seconds()) }
