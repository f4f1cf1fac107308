package cli

import (
	"io/fs"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// TestRebootHotplugRefused: with --stop-cpus hotplug, a CPU that refuses to
// go offline aborts the reboot (exit 1, no reboot call) and the CPUs taken
// down before it are brought back.
func TestRebootHotplugRefused(t *testing.T) {
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || !set.IsSet(0) {
		t.Skipf("needs CPU 0 in this process's affinity mask to pin to it (err %v)", err)
	}
	h := newHarness(t)
	h.writeRoot(cpuFiles(4, 0, 1, 2, 3))
	h.writeRoot(map[string]string{"sys/kernel/kexec_loaded": "1\n"})
	var (
		mu     sync.Mutex
		writes []string
	)
	h.cfg.machine.CPUStop.WriteFile = func(path string, data []byte) error {
		mu.Lock()
		defer mu.Unlock()
		cpu := path[strings.LastIndex(path, "/cpu")+1 : strings.LastIndex(path, "/")]
		writes = append(writes, cpu+"="+string(data))
		if cpu == "cpu2" && string(data) == "0" {
			return &fs.PathError{Op: "write", Path: path, Err: syscall.EBUSY}
		}
		return nil
	}
	r := h.run("reboot", "--stop-cpus", "hotplug")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "cpu2") || !strings.Contains(r.stderr, "device or resource busy") {
		t.Errorf("exit %d, stderr %q; want 1 naming cpu2 and EBUSY", r.code, r.stderr)
	}
	if want := []string{"cpu3=0", "cpu2=0", "cpu3=1"}; !slices.Equal(writes, want) {
		t.Errorf("sysfs writes %v, want %v", writes, want)
	}
	if calls := h.rebooter.Calls(); !slices.Equal(calls, []string{"sync"}) {
		t.Errorf("rebooter calls %v, want sync only", calls)
	}
}
