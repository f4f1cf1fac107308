package harness

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// StorageModules are the modules a guest needs to read its ext4 virtio disk
// (dependencies and the crc32c softdep are resolved by BuildKmods).
var StorageModules = []string{"virtio_pci", "virtio_blk", "ext4"}

// KeptRegionModules are the modules that turn a legacy persistent-memory
// region (memmap=SIZE!START, e820 type 12) into /dev/pmemN: nd_e820 makes
// the region, nd_pmem binds its raw namespace (libnvdimm and nd_btt come
// in as dependencies). docs/kernel-facts.md, Kept memory region.
var KeptRegionModules = []string{"nd_e820", "nd_pmem"}

// promptFirst is the shell's prompt where it reached the console before
// the frguest line it follows: u-root's init copies each child's output to
// the console from goroutines of its own, so the shell's first prompt can
// overtake frguest's last line, which then reads "$ FRGUEST_READY ..."
// (seen in a CI run, where a wait for "^FRGUEST_READY" then ran out).
const promptFirst = "$ "

// Markers printed by the guest helper frguest (qemu-tests/cmd/frguest).
var (
	// StartRE matches frguest's first line, printed as userspace begins.
	StartRE = regexp.MustCompile(`^(?:\$ )?FRGUEST_START uptime=(\S+)`)
	// ReadyRE matches frguest's last line, printed before the shell
	// starts. Both markers may follow the shell's prompt on their line
	// (promptFirst).
	ReadyRE = regexp.MustCompile(`^(?:\$ )?FRGUEST_READY .*`)
	// CrashStageRE matches the line a crash stage prints as it begins, with
	// its crash mode as Groups[1]: frguest's FRGUEST_RECOVER (a crash
	// kernel running production's initramfs, crash arm --initrd image, and
	// every direct crash kernel) or the minimal crash initramfs's own
	// "fastreboot: crash stage mode=M" (fastreboot as PID 1, two-stage
	// mode's default).
	CrashStageRE = regexp.MustCompile(`^(?:FRGUEST_RECOVER|fastreboot: crash stage) mode=(\S+)`)
	// CrashKernelRE matches the line in which a kernel the crash path
	// started prints its command line, with the crash mode as Groups[1]:
	// proof that the crash kernel runs that does not depend on a line its
	// userspace prints right before a panic or a kexec (the tty may never
	// send it).
	CrashKernelRE = regexp.MustCompile(`Kernel command line: .*\bfastreboot\.crash=(\S+)`)
	// KernelStartRE matches the first line the kernel prints.
	KernelStartRE = regexp.MustCompile(`Linux version \d`)
)

// ErrBadMarker is returned by ParseReady for a line that is not a complete
// ready marker.
var ErrBadMarker = errors.New("bad FRGUEST_READY line")

// Ready is the content of a FRGUEST_READY line.
type Ready struct {
	// Uptime is the guest kernel's /proc/uptime when the line was printed.
	Uptime time.Duration
	// Release is /etc/fastreboot-release from the site piece ("none" if absent).
	Release string
	// CPUs is /sys/devices/system/cpu/online, e.g. "0-3".
	CPUs string
	// MemTotalKB is MemTotal from /proc/meminfo.
	MemTotalKB int64
	// ModulesLoaded of ModulesListed were loaded (optional ones may fail).
	ModulesLoaded, ModulesListed int
	// Daemon is "started", "absent", "off", "failed" or "timeout".
	Daemon string
}

// ParseReady parses a FRGUEST_READY line, e.g.
// "FRGUEST_READY uptime=3.10 release=v1 cpus=0-3 memtotal_kb=2014204 modules=11/12 daemon=started".
func ParseReady(line string) (Ready, error) {
	f := strings.Fields(strings.TrimPrefix(line, promptFirst))
	if len(f) == 0 || f[0] != "FRGUEST_READY" {
		return Ready{}, fmt.Errorf("%w: %q", ErrBadMarker, line)
	}
	kv := map[string]string{}
	for _, w := range f[1:] {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return Ready{}, fmt.Errorf("%w: field %q in %q", ErrBadMarker, w, line)
		}
		kv[k] = v
	}
	var r Ready
	for _, k := range []string{"uptime", "release", "cpus", "memtotal_kb", "modules", "daemon"} {
		if _, ok := kv[k]; !ok {
			return Ready{}, fmt.Errorf("%w: no %s= in %q", ErrBadMarker, k, line)
		}
	}
	up, err := strconv.ParseFloat(kv["uptime"], 64)
	if err != nil || up < 0 || up > 1e9 {
		return Ready{}, fmt.Errorf("%w: uptime %q", ErrBadMarker, kv["uptime"])
	}
	r.Uptime = time.Duration(up * float64(time.Second))
	r.Release, r.CPUs, r.Daemon = kv["release"], kv["cpus"], kv["daemon"]
	if r.MemTotalKB, err = strconv.ParseInt(kv["memtotal_kb"], 10, 64); err != nil {
		return Ready{}, fmt.Errorf("%w: memtotal_kb %q", ErrBadMarker, kv["memtotal_kb"])
	}
	loaded, listed, ok := strings.Cut(kv["modules"], "/")
	if !ok {
		return Ready{}, fmt.Errorf("%w: modules %q", ErrBadMarker, kv["modules"])
	}
	if r.ModulesLoaded, err = strconv.Atoi(loaded); err != nil {
		return Ready{}, fmt.Errorf("%w: modules %q", ErrBadMarker, kv["modules"])
	}
	if r.ModulesListed, err = strconv.Atoi(listed); err != nil {
		return Ready{}, fmt.Errorf("%w: modules %q", ErrBadMarker, kv["modules"])
	}
	return r, nil
}

// Boot is a guest boot seen from the host.
type Boot struct {
	Ready
	// KernelAt, StartAt and ReadyAt are host times since QEMU started at
	// which the kernel's "Linux version" line, FRGUEST_START and
	// FRGUEST_READY arrived. KernelAt is 0 if that line was not seen (e.g. a
	// quiet kernel).
	KernelAt, StartAt, ReadyAt time.Duration
}

// WaitBoot waits (0 means DefaultTimeout) for the next guest boot after the
// cursor to reach FRGUEST_READY and the shell prompt after it, and returns
// the marker and timings. For a kexec, call it again after the reboot: it
// finds the next generation. Run may be used once it returned.
func (vm *VM) WaitBoot(timeout time.Duration) (*Boot, error) {
	return vm.waitBoot(timeout, 0)
}

// ErrStalled is returned by a boot wait whose guest printed nothing for the
// stall window before reaching userspace.
var ErrStalled = errors.New("console silent")

// ColdBootStall is how long the console of a cold boot may stay silent
// before userspace before StartBoot calls the boot stalled. A booting kernel
// prints every few hundred milliseconds; the longest silences seen under
// TCG on a loaded 2-core host are a few seconds.
const ColdBootStall = 60 * time.Second

// stallPoll is how often waitStart checks for a stall (a variable for tests).
var stallPoll = 2 * time.Second

// waitBoot is WaitBoot that, if stall > 0, fails with ErrStalled as soon as
// the console has been silent for stall before FRGUEST_START.
func (vm *VM) waitBoot(timeout, stall time.Duration) (*Boot, error) {
	timeout = orDefault(timeout)
	deadline := time.Now().Add(timeout)
	var b Boot
	from := vm.console.Cursor()
	start, err := vm.waitStart(deadline, timeout, stall)
	if err != nil {
		return nil, err
	}
	b.StartAt = start.At
	ready, err := vm.Expect(time.Until(deadline), ReadyRE)
	if err != nil {
		return nil, err
	}
	b.ReadyAt = ready.At
	if b.Ready, err = ParseReady(ready.Text); err != nil {
		return nil, err
	}
	if !strings.HasPrefix(ready.Text, promptFirst) {
		if err := vm.WaitPrompt(time.Until(deadline)); err != nil {
			return nil, fmt.Errorf("shell after %s: %w", ready.Text, err)
		}
	}
	// The kernel banner of this boot: the last one before FRGUEST_START.
	for _, l := range vm.console.linesBetween(from, start.off) {
		if KernelStartRE.MatchString(l.Text) {
			b.KernelAt = l.T
		}
	}
	return &b, nil
}

// waitStart waits for FRGUEST_START until deadline, checking every few
// seconds (if stall > 0) whether the console has gone silent for stall.
func (vm *VM) waitStart(deadline time.Time, timeout, stall time.Duration) (*Match, error) {
	poll := stallPoll
	for {
		left := time.Until(deadline)
		if left <= 0 {
			return nil, fmt.Errorf("waiting %v for %q: %w", timeout, StartRE, ErrTimeout)
		}
		slice := left
		if stall > 0 && slice > poll {
			slice = poll
		}
		m, err := vm.Expect(slice, StartRE)
		if !errors.Is(err, ErrTimeout) {
			return m, err
		}
		if stall <= 0 {
			return nil, err
		}
		if quiet := vm.Elapsed() - vm.console.LastOutput(); quiet >= stall {
			last := "(no output)"
			if ls := vm.console.Lines(); len(ls) > 0 {
				last = ls[len(ls)-1].Text
			}
			return nil, fmt.Errorf("waiting for %q: %w for %v after %q", StartRE, ErrStalled, quiet.Round(time.Second), last)
		}
	}
}

// StartBoot starts QEMU and waits (0 means DefaultTimeout) for its cold
// boot to reach the shell. A cold boot whose console goes silent for
// ColdBootStall before userspace is retried once on a fresh QEMU: that is a
// hang of the emulated machine in early kernel init (seen once in about 120
// cold boots under TCG, after "pnp: PnP ACPI: found 5 devices", in the ACPI
// PM timer checks), before any code under test runs. stalled is the
// stalled attempt's error ("" if the first attempt booted); its console log
// is kept, the retry logs to a new file. Boots after the cold one (kexec,
// crash) are never retried: use WaitBoot for them.
func StartBoot(o Options, timeout time.Duration) (vm *VM, b *Boot, stalled string, err error) {
	for attempt := 1; ; attempt++ {
		if vm, err = Start(o); err != nil {
			return nil, nil, stalled, err
		}
		b, err = vm.waitBoot(timeout, ColdBootStall)
		if err == nil {
			return vm, b, stalled, nil
		}
		if !errors.Is(err, ErrStalled) || attempt > 1 {
			return vm, nil, stalled, fmt.Errorf("cold boot: %w (console log %s)", err, vm.LogPath())
		}
		stalled = fmt.Sprintf("%v (console log %s)", err, vm.LogPath())
		vm.console.Logf("cold boot stalled: %v; retrying on a fresh QEMU", err)
		vm.opts.Logger.Warn("cold boot stalled; retrying on a fresh QEMU", "name", o.Name, "err", err, "log", vm.LogPath())
		vm.Close()
		if o.LogPath != "" {
			o.LogPath += ".retry"
		}
	}
}
