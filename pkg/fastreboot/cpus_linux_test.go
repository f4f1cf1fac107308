package fastreboot

import (
	"context"
	"errors"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
)

// requireCPU0 skips when this process may not run on CPU 0: the hotplug
// policy pins its sysfs writes to the boot CPU (sched_setaffinity), even
// against a fake tree.
func requireCPU0(t *testing.T) {
	t.Helper()
	var set unix.CPUSet
	if err := unix.SchedGetaffinity(0, &set); err != nil || !set.IsSet(0) {
		t.Skipf("needs CPU 0 in this process's affinity mask to pin to it (err %v)", err)
	}
}

// TestRebootHotplug drives Reboot with the hotplug policy against a fake
// CPU tree: the CPUs go down in a fixed order right before the kexec call,
// and every one comes back if the policy fails part-way or the reboot call
// returns.
func TestRebootHotplug(t *testing.T) {
	requireCPU0(t)
	rebootFails := map[RebootCmd]error{RebootKexec: errors.New("reboot(LINUX_REBOOT_CMD_KEXEC): invalid argument")}
	for _, tc := range []struct {
		name       string
		policy     cpustop.Policy
		fallback   Fallback
		refuse     map[int]error
		rebootErr  map[RebootCmd]error
		wantCalls  []string
		wantWrites []string
		wantOnline string
		wantIs     []error
	}{
		{
			name: "kernel policy touches nothing", policy: cpustop.PolicyKernel,
			wantCalls: []string{"sync", "LINUX_REBOOT_CMD_KEXEC"}, wantOnline: "0-3",
		},
		{
			name: "hotplug then jump", policy: cpustop.PolicyHotplug,
			wantCalls:  []string{"sync", "LINUX_REBOOT_CMD_KEXEC"},
			wantWrites: []string{"cpu3=0", "cpu2=0", "cpu1=0"},
			// The fake reboot "succeeded": the next kernel would wake them.
			wantOnline: "0",
		},
		{
			name: "cpu1 refuses: rolled back, no reboot", policy: cpustop.PolicyHotplug,
			refuse:     map[int]error{1: syscall.EBUSY},
			wantCalls:  []string{"sync"},
			wantWrites: []string{"cpu3=0", "cpu2=0", "cpu1=0", "cpu2=1", "cpu3=1"},
			wantOnline: "0-3", wantIs: []error{syscall.EBUSY},
		},
		{
			name: "reboot call returns: restored", policy: cpustop.PolicyHotplug, rebootErr: rebootFails,
			wantCalls:  []string{"sync", "LINUX_REBOOT_CMD_KEXEC"},
			wantWrites: []string{"cpu3=0", "cpu2=0", "cpu1=0", "cpu1=1", "cpu2=1", "cpu3=1"},
			wantOnline: "0-3",
		},
		{
			name: "reboot call returns: restored, then firmware", policy: cpustop.PolicyHotplug,
			rebootErr: rebootFails, fallback: FallbackFirmware,
			wantCalls:  []string{"sync", "LINUX_REBOOT_CMD_KEXEC", "LINUX_REBOOT_CMD_RESTART"},
			wantWrites: []string{"cpu3=0", "cpu2=0", "cpu1=0", "cpu1=1", "cpu2=1", "cpu3=1"},
			wantOnline: "0-3",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeTree(t, tree(map[string]string{pathKexecLoaded: "1\n"}))
			cpus := newCPUTree(t, root, 4)
			for id, err := range tc.refuse {
				cpus.refuse[id] = err
			}
			rb := &fakeRebooter{rebootErr: tc.rebootErr}
			mc := New(nil, Options{
				Root: root, Rebooter: rb, Logger: testLogger(t), CPUStop: cpustop.Options{WriteFile: cpus.write},
			})
			err := mc.Reboot(context.Background(), RebootOptions{Fallback: tc.fallback, StopCPUs: tc.policy})
			switch {
			case tc.wantIs == nil && tc.rebootErr == nil && err != nil:
				t.Errorf("Reboot: %v", err)
			case (tc.wantIs != nil || tc.rebootErr != nil) && err == nil:
				t.Errorf("Reboot succeeded, want an error")
			}
			for _, is := range tc.wantIs {
				if !errors.Is(err, is) {
					t.Errorf("Reboot = %v, want it to wrap %v", err, is)
				}
			}
			if diff := cmp.Diff(tc.wantCalls, rb.calls); diff != "" {
				t.Errorf("rebooter calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantWrites, cpus.writes); diff != "" {
				t.Errorf("sysfs writes (-want +got):\n%s", diff)
			}
			if got := cpus.onlineList(); got != tc.wantOnline {
				t.Errorf("online after Reboot = %s, want %s", got, tc.wantOnline)
			}
		})
	}
}
