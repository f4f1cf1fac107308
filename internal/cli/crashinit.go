package cli

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// CrashStageMarker starts the line the crash stage prints when fastreboot
// runs as PID 1 of a minimal two-stage crash initramfs (CrashInit):
//
//	fastreboot: crash stage mode=two-stage uptime=2.71 memtotal_kb=215000 memfree_kb=170000
const CrashStageMarker = "fastreboot: crash stage"

// DefaultCrashInitDelay is how long a failed crash stage waits before it
// reboots through the firmware when the command line sets no panic=N.
const DefaultCrashInitDelay = 10 * time.Second

// crashInitMemSample is how often the crash stage samples free memory
// while it recovers (the minimum is printed: what the reservation needs).
const crashInitMemSample = 20 * time.Millisecond

// initSystem is what the crash stage needs from the kernel as PID 1;
// tests replace every part.
type initSystem struct {
	// mount is mount(2) without flags or data.
	mount func(source, target, fstype string) error
	// recover is crashpath.Recover.
	recover func(context.Context, crashpath.Config, crashpath.RecoverOptions) (*crashpath.RecoverReport, error)
	// kexec jumps into the image recover loaded; it returns only on
	// failure.
	kexec func(context.Context) error
	// firmware syncs and reboots through the firmware; it returns only on
	// failure.
	firmware func() error
	sleep    func(time.Duration)
}

// CrashInit is the entry of fastreboot as PID 1 (the /init of a minimal
// two-stage crash initramfs, see crashpath.InitrdMinimal): it mounts proc,
// sysfs and devtmpfs, checks that the command line carries the two-stage
// crash marker, prints the crash stage line with the crash kernel's memory,
// runs the crash stage (crashpath.Recover: the evidence saved, production
// staged from the carried cache) and kexecs into production. When any of
// that fails it says why, waits the crash kernel's panic=N seconds and
// reboots through the firmware. It returns only if that reboot fails too
// (PID 1 then exits and the kernel panics, which reboots after panic=N).
func CrashInit(ctx context.Context, stdout io.Writer) int {
	// The crash stage runs in the crash reservation: a small Go heap is
	// worth the extra collections.
	debug.SetGCPercent(20)
	return crashInit(ctx, stdout, "/", hostInitSystem())
}

func crashInit(ctx context.Context, w io.Writer, root string, sys initSystem) int {
	start := time.Now()
	for _, m := range []struct{ source, target, fstype string }{
		{"proc", "proc", "proc"},
		{"sysfs", "sys", "sysfs"},
		{"devtmpfs", "dev", "devtmpfs"},
	} {
		dir := filepath.Join(root, m.target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			fmt.Fprintf(w, "%s: mkdir %s: %v\n", CrashStageMarker, dir, err)
		}
		if err := sys.mount(m.source, dir, m.fstype); err != nil {
			fmt.Fprintf(w, "%s: mount -t %s %s %s: %v\n", CrashStageMarker, m.fstype, m.source, dir, err)
		}
	}
	cmdline := strings.TrimSpace(readFileString(filepath.Join(root, "proc/cmdline")))
	delay := crashInitDelay(cmdline)
	fail := func(why string) int {
		fmt.Fprintf(w, "%s failed: %s; rebooting through the firmware in %s\n", CrashStageMarker, why, delay)
		drain(w)
		sys.sleep(delay)
		err := sys.firmware()
		fmt.Fprintf(w, "%s: reboot through the firmware: %v; exiting (the kernel panics and reboots after panic=N)\n", CrashStageMarker, err)
		drain(w)
		return ExitFailed
	}
	mode, ok := crashhandler.CrashModeOf(cmdline)
	if !ok {
		return fail("this kernel was not started by the crash path (no fastreboot.crash= on its command line)")
	}
	if mode != crashhandler.ModeTwoStage {
		return fail(fmt.Sprintf("mode %s: fastreboot runs as init only in a %s crash kernel (a %s crash kernel is production and runs production's init)",
			mode, crashhandler.ModeTwoStage, mode))
	}
	mem := readMeminfoKB(root)
	fmt.Fprintf(w, "%s mode=%s uptime=%s memtotal_kb=%d memfree_kb=%d memavailable_kb=%d\n",
		CrashStageMarker, mode, procUptime(root), mem["MemTotal"], mem["MemFree"], mem["MemAvailable"])

	sampler := startMemSampler(root, crashInitMemSample)
	log := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := sys.recover(ctx, crashpath.Config{Root: root, StateDir: fastreboot.DefaultStateDir, Logger: log}, crashpath.RecoverOptions{})
	minFree := sampler.stop()
	if rep != nil {
		if rep.EvidenceError != "" {
			fmt.Fprintf(w, "%s: no evidence: %s\n", CrashStageMarker, rep.EvidenceError)
		}
		if rep.Evidence != nil {
			printEvidence(w, rep.Evidence)
		}
		for _, warn := range rep.Warnings {
			fmt.Fprintf(w, "%s: warning: %s\n", CrashStageMarker, warn)
		}
		var initrd int64
		load := "nothing"
		if st := rep.Staged; st != nil {
			initrd = st.InitrdBytes
			switch {
			case st.Segments != nil && st.Segments.Compressed:
				load = "kexec_load of the compressed kernel"
			case st.Segments != nil && st.Segments.KernelELFMapped:
				load = fmt.Sprintf("kexec_load of the decompressed kernel mapped from the crashed kernel's memory in %.2fs", rep.KernelELFMapTook.Seconds())
			case st.Segments != nil:
				load = "kexec_load"
			default:
				load = "kexec_file_load"
			}
		}
		mem = readMeminfoKB(root)
		fmt.Fprintf(w, "%s recovered: evidence from %q in %.2fs, memory map check %s, production initrd %d bytes staged with %s, took %.2fs; min_memfree_kb=%d memfree_kb=%d rss_anon_kb=%d uptime=%s\n",
			CrashStageMarker, rep.EvidenceFrom, rep.EvidenceAt.Seconds(), rep.MemoryMapCheck, initrd, load, rep.Took.Seconds(), minFree, mem["MemFree"],
			readStatusKB(root, "RssAnon"), procUptime(root))
	}
	if err != nil {
		return fail(err.Error())
	}
	fmt.Fprintf(w, "fastreboot: rebooting through kexec at %s (crash stage took %.2fs)\n", time.Now().UTC().Format(time.RFC3339Nano), time.Since(start).Seconds())
	drain(w)
	err = sys.kexec(ctx)
	return fail(fmt.Sprintf("kexec into production: %v", err))
}

// crashInitDelay is the wait before a failed crash stage reboots through
// the firmware: the command line's last panic=N (N seconds; negative: at
// once), else DefaultCrashInitDelay (also for panic=0, which would wait
// forever on a panic).
func crashInitDelay(cmdline string) time.Duration {
	d := DefaultCrashInitDelay
	params, _ := bootimage.SplitCmdline(cmdline)
	for _, w := range params {
		v, ok := strings.CutPrefix(w, "panic=")
		if !ok {
			continue
		}
		n, err := strconv.Atoi(v)
		switch {
		case err != nil || n == 0:
			d = DefaultCrashInitDelay
		case n < 0:
			d = 0
		default:
			d = time.Duration(n) * time.Second
		}
	}
	return d
}

func readFileString(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return string(b)
}

// procUptime is the first field of root/proc/uptime, or "?".
func procUptime(root string) string {
	f := strings.Fields(readFileString(filepath.Join(root, "proc/uptime")))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// readMeminfoKB returns the kB fields of root/proc/meminfo by name.
func readMeminfoKB(root string) map[string]int64 {
	out := map[string]int64{}
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return out
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		if fs := strings.Fields(rest); len(fs) > 0 {
			if n, err := strconv.ParseInt(fs[0], 10, 64); err == nil {
				out[name] = n
			}
		}
	}
	return out
}

// readStatusKB returns a kB field of root/proc/self/status (-1 if absent).
func readStatusKB(root, field string) int64 {
	for _, l := range strings.Split(readFileString(filepath.Join(root, "proc/self/status")), "\n") {
		if rest, ok := strings.CutPrefix(l, field+":"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
					return n
				}
			}
		}
	}
	return -1
}

// memSampler records the lowest MemFree seen while the crash stage runs.
type memSampler struct {
	done chan struct{}
	wg   sync.WaitGroup
	min  int64
}

func startMemSampler(root string, every time.Duration) *memSampler {
	s := &memSampler{done: make(chan struct{}), min: -1}
	sample := func() {
		if v, ok := readMeminfoKB(root)["MemFree"]; ok && (s.min < 0 || v < s.min) {
			s.min = v
		}
	}
	sample()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			select {
			case <-s.done:
				sample()
				return
			case <-t.C:
				sample()
			}
		}
	}()
	return s
}

// stop ends the sampling and returns the lowest MemFree in kB (-1 if
// meminfo could not be read).
func (s *memSampler) stop() int64 {
	close(s.done)
	s.wg.Wait()
	return s.min
}

func sleepFor(d time.Duration) { time.Sleep(d) }
