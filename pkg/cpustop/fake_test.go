package cpustop

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// fakeCPU is one present CPU of a fake sysfs/procfs tree.
type fakeCPU struct {
	id     int
	apic   int // also the initial APIC id; -1 writes no apicid lines
	online bool
	// hotplug writes cpuN/online (x86: every CPU but CPU 0).
	hotplug bool
}

// fakeTree describes a fake /sys and /proc.
type fakeTree struct {
	possible  string // default: the present CPUs
	cpus      []fakeCPU
	rebootCPU string // contents of /sys/kernel/reboot/cpu; "" writes none
	noCPUInfo bool
}

// qemuCPUs returns n CPUs as QEMU -smp n gives them: APIC ids 0..n-1, all
// online, all hot-pluggable but CPU 0.
func qemuCPUs(n int) []fakeCPU {
	cpus := make([]fakeCPU, n)
	for i := range cpus {
		cpus[i] = fakeCPU{id: i, apic: i, online: true, hotplug: i != 0}
	}
	return cpus
}

func mustWrite(t testing.TB, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// write creates the tree under root (again, after a change).
func (ft *fakeTree) write(t testing.TB, root string) {
	t.Helper()
	dir := filepath.Join(root, cpuDir)
	var present, online []int
	var info strings.Builder
	for _, c := range ft.cpus {
		present = append(present, c.id)
		cdir := filepath.Join(dir, "cpu"+strconv.Itoa(c.id))
		mustWrite(t, filepath.Join(cdir, "uevent"), "")
		if c.hotplug {
			mustWrite(t, filepath.Join(cdir, "online"), map[bool]string{true: "1\n", false: "0\n"}[c.online])
		}
		if !c.online {
			continue
		}
		online = append(online, c.id)
		info.WriteString(qemuCPUInfo(c.id, c.apic, len(ft.cpus)))
	}
	possible := ft.possible
	if possible == "" {
		possible = FormatCPUList(present)
	}
	mustWrite(t, filepath.Join(dir, "possible"), possible+"\n")
	mustWrite(t, filepath.Join(dir, "present"), FormatCPUList(present)+"\n")
	mustWrite(t, filepath.Join(dir, "online"), FormatCPUList(online)+"\n")
	if !ft.noCPUInfo {
		mustWrite(t, filepath.Join(root, cpuinfoFile), info.String())
	}
	if ft.rebootCPU != "" {
		mustWrite(t, filepath.Join(root, rebootCPUFile), ft.rebootCPU)
	}
}

// qemuCPUInfo is one /proc/cpuinfo block as Debian's 6.1 kernel prints it
// under QEMU TCG with the default qemu64 CPU.
func qemuCPUInfo(id, apic, n int) string {
	apicLines := ""
	if apic >= 0 {
		apicLines = fmt.Sprintf("apicid\t\t: %d\ninitial apicid\t: %d\n", apic, apic)
	}
	return fmt.Sprintf(`processor	: %d
vendor_id	: AuthenticAMD
cpu family	: 15
model		: 107
model name	: QEMU Virtual CPU version 2.5+
stepping	: 1
microcode	: 0x1000065
cpu MHz		: 2394.374
cache size	: 512 KB
physical id	: 0
siblings	: %d
core id		: %d
cpu cores	: %d
%sfpu		: yes
fpu_exception	: yes
cpuid level	: 13
wp		: yes
flags		: fpu de pse tsc msr pae mce cx8 apic sep mtrr pge mca cmov pat pse36 clflush mmx fxsr sse sse2 ht syscall nx lm rep_good nopl cpuid extd_apicid tsc_known_freq pni cx16 x2apic hypervisor lahf_lm cmp_legacy 3dnowprefetch vmmcall
bugs		: fxsave_leak sysret_ss_attrs spectre_v1 spectre_v2 spec_store_bypass retbleed
bogomips	: 4788.74
TLB size	: 1024 4K pages
clflush size	: 64
cache_alignment	: 64
address sizes	: 40 bits physical, 48 bits virtual
power management:

`, id, n, id, n, apicLines)
}

// fakeKernel plays the kernel behind cpuN/online writes on a fakeTree. Like
// the real one it serialises hotplug operations (cpu_hotplug_lock) and
// keeps cpuN/online, the online list and /proc/cpuinfo in step.
type fakeKernel struct {
	t    testing.TB
	root string
	tree *fakeTree

	// refuseDown / refuseUp: errno returned for "0" / "1" on that CPU.
	refuseDown, refuseUp map[int]syscall.Errno
	// hangDown: the "0" write on that CPU hangs until some "1" write
	// starts (the rollback), then completes.
	hangDown map[int]bool
	// after runs after each applied write.
	after func(cpu int, val string)

	mu          sync.Mutex // the hotplug lock
	releaseOnce sync.Once
	release     chan struct{}
	logMu       sync.Mutex
	log         []string // "7:0" = cpu7 taken down; "6:0!refused" = refused
	pins        []int
}

func newFakeKernel(t testing.TB, tree *fakeTree) *fakeKernel {
	root := t.TempDir()
	tree.write(t, root)
	return &fakeKernel{t: t, root: root, tree: tree, release: make(chan struct{})}
}

// options returns Options that route writes and pinning to k.
func (k *fakeKernel) options() Options {
	return Options{
		Root:      k.root,
		WriteFile: k.WriteFile,
		pin: func(cpu int) error {
			k.logMu.Lock()
			defer k.logMu.Unlock()
			k.pins = append(k.pins, cpu)
			return nil
		},
	}
}

func (k *fakeKernel) record(s string) {
	k.logMu.Lock()
	defer k.logMu.Unlock()
	k.log = append(k.log, s)
}

func (k *fakeKernel) writes() []string {
	k.logMu.Lock()
	defer k.logMu.Unlock()
	return slices.Clone(k.log)
}

func (k *fakeKernel) pinned() []int {
	k.logMu.Lock()
	defer k.logMu.Unlock()
	return slices.Clone(k.pins)
}

func (k *fakeKernel) WriteFile(path string, data []byte) error {
	rel, err := filepath.Rel(filepath.Join(k.root, cpuDir), path)
	var id int
	if err == nil {
		_, err = fmt.Sscanf(rel, "cpu%d/online", &id)
	}
	if err != nil || filepath.Base(rel) != "online" {
		k.t.Errorf("write to unexpected path %s", path)
		return &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	val := string(data)
	if val != "0" && val != "1" {
		k.t.Errorf("write %q to %s", val, path)
		return &fs.PathError{Op: "write", Path: path, Err: syscall.EINVAL}
	}
	if val == "1" {
		k.releaseOnce.Do(func() { close(k.release) })
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if val == "0" && k.hangDown[id] {
		<-k.release
	}
	refuse := k.refuseDown
	if val == "1" {
		refuse = k.refuseUp
	}
	if errno, ok := refuse[id]; ok {
		k.record(fmt.Sprintf("%d:%s!refused", id, val))
		return &fs.PathError{Op: "write", Path: path, Err: errno}
	}
	i := slices.IndexFunc(k.tree.cpus, func(c fakeCPU) bool { return c.id == id })
	if i < 0 || !k.tree.cpus[i].hotplug {
		return &fs.PathError{Op: "open", Path: path, Err: syscall.ENOENT}
	}
	k.tree.cpus[i].online = val == "1"
	k.tree.write(k.t, k.root)
	k.record(fmt.Sprintf("%d:%s", id, val))
	if k.after != nil {
		k.after(id, val)
	}
	return nil
}
