package cpustop

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Sysfs and procfs paths, relative to Options.Root.
const (
	cpuDir        = "sys/devices/system/cpu"
	rebootCPUFile = "sys/kernel/reboot/cpu"
	cpuinfoFile   = "proc/cpuinfo"
)

// bootCPU is the CPU the kernel booted on: logical CPU 0 on every
// architecture ("The boot cpu is always logical cpu 0", kernel/reboot.c
// migrate_to_reboot_cpu).
const bootCPU = 0

// DefaultTimeout bounds each write to a cpuN/online file when
// Options.Timeout is zero. Taking a CPU down takes milliseconds natively and
// well under a second under QEMU TCG.
const DefaultTimeout = 10 * time.Second

// Options configures how the package reads and changes CPU state. The zero
// value reads the real system.
type Options struct {
	// Root is prepended to every /sys and /proc path ("/" when empty), so
	// tests can point the package at a fake tree.
	Root string
	// Logger receives progress at debug level and decisions at info level.
	// Nil discards.
	Logger *slog.Logger
	// Timeout bounds each cpuN/online write (DefaultTimeout when zero).
	Timeout time.Duration
	// WriteFile writes one sysfs attribute; path includes Root. Nil opens
	// the file write-only and writes data in one write(2), which is what
	// sysfs expects. Tests inject a fake kernel that can refuse.
	WriteFile func(path string, data []byte) error

	// pin restricts the calling OS thread to one CPU; the caller has
	// locked the goroutine to its thread. Nil means pinThread
	// (sched_setaffinity on Linux, ErrNotSupported elsewhere).
	pin func(cpu int) error
}

func (o Options) path(rel string) string {
	root := o.Root
	if root == "" {
		root = "/"
	}
	return filepath.Join(root, rel)
}

func (o Options) cpuFile(cpu int, name string) string {
	return o.path(filepath.Join(cpuDir, "cpu"+strconv.Itoa(cpu), name))
}

func (o Options) logger() *slog.Logger {
	if o.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return o.Logger
}

func (o Options) timeout() time.Duration {
	if o.Timeout <= 0 {
		return DefaultTimeout
	}
	return o.Timeout
}

func (o Options) writeFile(path string, data []byte) error {
	if o.WriteFile != nil {
		return o.WriteFile(path, data)
	}
	return writeSysfs(path, data)
}

func (o Options) pinner() func(int) error {
	if o.pin != nil {
		return o.pin
	}
	return pinThread
}

// writeSysfs writes data to an existing sysfs attribute without O_CREAT or
// O_TRUNC, and without following a symlink (sysfs attributes are never
// one). The kernel's answer (EBUSY, EPERM, ...) comes back from write(2)
// inside the *fs.PathError.
func writeSysfs(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|oNoFollow, 0)
	if err != nil {
		return err
	}
	_, werr := f.Write(data)
	cerr := f.Close()
	if werr != nil {
		return werr
	}
	return cerr
}

// CPU is one present CPU.
type CPU struct {
	// ID is the kernel's logical CPU number (cpuN).
	ID int `json:"id"`
	// APICID and InitialAPICID come from /proc/cpuinfo ("apicid",
	// "initial apicid"); -1 when unknown: the CPU is offline (cpuinfo lists
	// online CPUs only) or the architecture has no APIC.
	APICID        int  `json:"apic_id"`
	InitialAPICID int  `json:"initial_apic_id"`
	Online        bool `json:"online"`
	// Hotpluggable is true when cpuN/online exists. On x86 the boot CPU
	// has no such file (unless CONFIG_BOOTPARAM_HOTPLUG_CPU0 on old
	// kernels).
	Hotpluggable bool `json:"hotpluggable"`
}

// Topology is the CPU state of the running kernel.
type Topology struct {
	// Possible, Present and Online are the kernel's CPU masks, sorted.
	Possible []int `json:"possible"`
	Present  []int `json:"present"`
	Online   []int `json:"online"`
	// CPUs has one entry per present (or online) CPU, ordered by ID.
	CPUs []CPU `json:"cpus"`
	// BootCPU is the CPU the kernel booted on: logical CPU 0 on every
	// architecture Linux supports ("The boot cpu is always logical cpu 0",
	// kernel/reboot.c).
	BootCPU int `json:"boot_cpu"`
	// BootAPICID is the boot CPU's initial APIC id ("initial apicid" of
	// processor 0, else its "apicid"); -1 when unknown.
	BootAPICID int `json:"boot_apic_id"`
	// ConfiguredRebootCPU is reboot_cpu (kernel/reboot.c): from
	// /sys/kernel/reboot/cpu when the kernel has it (5.11+, CONFIG_SMP),
	// else 0, its default; reboot=s<N> on the command line sets it.
	ConfiguredRebootCPU int `json:"configured_reboot_cpu"`
	// RebootCPU is where kexec will run: migrate_to_reboot_cpu() takes
	// reboot_cpu if it is online, else the first online CPU.
	RebootCPU int `json:"reboot_cpu"`
}

// ReadTopology reads the CPU lists from /sys/devices/system/cpu, the APIC
// ids from /proc/cpuinfo (optional: absent means unknown ids), the
// hot-pluggable CPUs (cpuN/online exists) and /sys/kernel/reboot/cpu
// (optional), all under opts.Root. It works on any OS given a tree.
func ReadTopology(opts Options) (Topology, error) {
	var t Topology
	lists := []struct {
		name string
		dst  *[]int
	}{{"possible", &t.Possible}, {"present", &t.Present}, {"online", &t.Online}}
	for _, l := range lists {
		p := opts.path(filepath.Join(cpuDir, l.name))
		b, err := os.ReadFile(p)
		if err != nil {
			return Topology{}, fmt.Errorf("cpustop: read CPU list: %w", err)
		}
		if *l.dst, err = ParseCPUList(string(b)); err != nil {
			return Topology{}, fmt.Errorf("%w (in %s)", err, p)
		}
	}
	if len(t.Online) == 0 {
		return Topology{}, fmt.Errorf("cpustop: %s lists no CPU", opts.path(filepath.Join(cpuDir, "online")))
	}

	infos, err := readCPUInfo(opts)
	if err != nil {
		return Topology{}, err
	}

	ids := slices.Clone(t.Present)
	ids = append(ids, t.Online...)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	for _, id := range ids {
		c := CPU{ID: id, APICID: -1, InitialAPICID: -1}
		c.Online = slices.Contains(t.Online, id)
		if info, ok := infos[id]; ok {
			c.APICID, c.InitialAPICID = info.APICID, info.InitialAPICID
		}
		switch _, err := os.Stat(opts.cpuFile(id, "online")); {
		case err == nil:
			c.Hotpluggable = true
		case !errors.Is(err, fs.ErrNotExist):
			return Topology{}, fmt.Errorf("cpustop: %w", err)
		}
		t.CPUs = append(t.CPUs, c)
	}

	t.BootCPU = bootCPU
	t.BootAPICID = -1
	if c, ok := t.CPU(t.BootCPU); ok {
		t.BootAPICID = c.InitialAPICID
		if t.BootAPICID < 0 {
			t.BootAPICID = c.APICID
		}
	}

	if t.ConfiguredRebootCPU, err = readRebootCPU(opts); err != nil {
		return Topology{}, err
	}
	t.RebootCPU = t.ConfiguredRebootCPU
	if !slices.Contains(t.Online, t.RebootCPU) {
		t.RebootCPU = t.Online[0]
	}
	return t, nil
}

func readCPUInfo(opts Options) (map[int]cpuInfo, error) {
	p := opts.path(cpuinfoFile)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		opts.logger().Debug("cpustop: no cpuinfo, APIC ids unknown", "path", p)
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cpustop: %w", err)
	}
	defer f.Close()
	list, err := parseCPUInfo(f)
	if err != nil {
		return nil, fmt.Errorf("cpustop: parse %s: %w", p, err)
	}
	m := make(map[int]cpuInfo, len(list))
	for _, c := range list {
		m[c.Processor] = c
	}
	return m, nil
}

func readRebootCPU(opts Options) (int, error) {
	p := opts.path(rebootCPUFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("cpustop: %w", err)
	}
	n, err := parseCPUID(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("cpustop: %s: %w", p, err)
	}
	return n, nil
}

// CPU returns the CPU with logical id id.
func (t Topology) CPU(id int) (CPU, bool) {
	i := slices.IndexFunc(t.CPUs, func(c CPU) bool { return c.ID == id })
	if i < 0 {
		return CPU{}, false
	}
	return t.CPUs[i], true
}

// Secondaries returns the online CPUs other than the boot CPU, highest id
// first: the order PolicyHotplug takes them down in.
func (t Topology) Secondaries() []int {
	var out []int
	for _, id := range slices.Backward(t.Online) {
		if id != t.BootCPU {
			out = append(out, id)
		}
	}
	return out
}
