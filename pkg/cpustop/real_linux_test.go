package cpustop

import (
	"os"
	"runtime"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// TestReadTopologyRealSystem reads this machine's sysfs and procfs; it
// changes nothing.
func TestReadTopologyRealSystem(t *testing.T) {
	if _, err := os.Stat("/sys/devices/system/cpu/online"); err != nil {
		t.Skipf("no sysfs CPU lists here: %v", err)
	}
	topo, err := ReadTopology(Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("online %s, boot APIC id %d, reboot CPU %d", FormatCPUList(topo.Online), topo.BootAPICID, topo.RebootCPU)
	if !slices.Contains(topo.Online, topo.RebootCPU) {
		t.Errorf("reboot CPU %d not in online %v", topo.RebootCPU, topo.Online)
	}
	for _, id := range topo.Online {
		c, ok := topo.CPU(id)
		if !ok || !c.Online {
			t.Errorf("online cpu%d: CPU() = %+v, %v", id, c, ok)
		}
	}
	if runtime.GOARCH == "amd64" && slices.Contains(topo.Online, 0) && topo.BootAPICID < 0 {
		t.Errorf("x86 with cpu0 online but no boot APIC id: %+v", topo)
	}
}

// TestPinThread pins a throw-away thread for real: sched_setaffinity needs
// no privilege to narrow one's own mask.
func TestPinThread(t *testing.T) {
	var allowed unix.CPUSet
	if err := unix.SchedGetaffinity(0, &allowed); err != nil {
		t.Skipf("sched_getaffinity: %v", err)
	}
	cpu := -1
	for i := range 1024 {
		if allowed.IsSet(i) {
			cpu = i
			break
		}
	}
	got := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		if err := pinThread(cpu); err != nil {
			got <- err
			return
		}
		var now unix.CPUSet
		if err := unix.SchedGetaffinity(0, &now); err != nil {
			got <- err
			return
		}
		if now.Count() != 1 || !now.IsSet(cpu) {
			t.Errorf("affinity after pinThread(%d): %d CPUs, cpu%d set: %v", cpu, now.Count(), cpu, now.IsSet(cpu))
		}
		got <- nil
	}()
	if err := <-got; err != nil {
		t.Fatal(err)
	}
}

// TestStopHotplugRealSystem takes this machine's secondary CPUs offline and
// back. It runs only when asked to.
func TestStopHotplugRealSystem(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: writes /sys/devices/system/cpu/cpuN/online")
	}
	before, err := ReadTopology(Options{})
	if err != nil {
		t.Skipf("cannot read this machine's CPU topology: %v", err)
	}
	if len(before.Online) < 2 {
		t.Skipf("needs more than one online CPU, have %s", FormatCPUList(before.Online))
	}
	if os.Getenv("FASTREBOOT_TEST_HOTPLUG") != "1" {
		t.Skip("takes this machine's CPUs offline: set FASTREBOOT_TEST_HOTPLUG=1 to run")
	}
	for _, id := range before.Secondaries() {
		if c, _ := before.CPU(id); !c.Hotpluggable {
			t.Skipf("cpu%d cannot be taken offline here (no cpu%d/online)", id, id)
		}
	}

	s, err := Stop(t.Context(), PolicyHotplug, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Restore(t.Context()); err != nil {
			t.Errorf("cleanup Restore: %v", err)
		}
	})
	down, err := ReadTopology(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{before.BootCPU}, down.Online); diff != "" {
		t.Errorf("online after Stop (-want +got):\n%s", diff)
	}
	t.Logf("took %s offline in %v", FormatCPUList(s.Offlined), s.Elapsed)
	if err := s.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	after, err := ReadTopology(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := Compare(before.Record(), after).Err(); err != nil {
		t.Error(err)
	}
}
