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

// Markers printed by the guest helper frguest (qemu-tests/cmd/frguest).
var (
	// StartRE matches frguest's first line, printed as userspace begins.
	StartRE = regexp.MustCompile(`^FRGUEST_START uptime=(\S+)`)
	// ReadyRE matches frguest's last line, printed before the shell starts.
	ReadyRE = regexp.MustCompile(`^FRGUEST_READY .*`)
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
	f := strings.Fields(line)
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
	deadline := time.Now().Add(orDefault(timeout))
	var b Boot
	from := vm.console.Cursor()
	start, err := vm.Expect(time.Until(deadline), StartRE)
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
	if err := vm.WaitPrompt(time.Until(deadline)); err != nil {
		return nil, fmt.Errorf("shell after %s: %w", ready.Text, err)
	}
	// The kernel banner of this boot: the last one before FRGUEST_START.
	for _, l := range vm.console.linesBetween(from, start.off) {
		if KernelStartRE.MatchString(l.Text) {
			b.KernelAt = l.T
		}
	}
	return &b, nil
}
