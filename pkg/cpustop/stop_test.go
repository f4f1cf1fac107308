package cpustop

import (
	"context"
	"errors"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// onlineNow reads the online list the fake kernel keeps up to date.
func onlineNow(t *testing.T, k *fakeKernel) []int {
	t.Helper()
	topo, err := ReadTopology(Options{Root: k.root})
	if err != nil {
		t.Fatal(err)
	}
	return topo.Online
}

func TestStopKernelPolicyDoesNothing(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(4)})
	s, err := Stop(context.Background(), PolicyKernel, k.options())
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	if w, p := k.writes(), k.pinned(); len(w) > 0 || len(p) > 0 {
		t.Errorf("PolicyKernel wrote %v, pinned %v; want nothing", w, p)
	}
	if s.Policy != PolicyKernel || len(s.Offlined) != 0 {
		t.Errorf("Stopped = %+v", s)
	}
}

func TestStopHotplugAndRestore(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(8)})
	ctx := context.Background()
	s, err := Stop(ctx, PolicyHotplug, k.options())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"7:0", "6:0", "5:0", "4:0", "3:0", "2:0", "1:0"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0}, k.pinned()); diff != "" {
		t.Errorf("pinned to (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{7, 6, 5, 4, 3, 2, 1}, s.Offlined); diff != "" {
		t.Errorf("Offlined (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0}, onlineNow(t, k)); diff != "" {
		t.Errorf("online after Stop (-want +got):\n%s", diff)
	}

	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"7:0", "6:0", "5:0", "4:0", "3:0", "2:0", "1:0", "1:1", "2:1", "3:1", "4:1", "5:1", "6:1", "7:1"}
	if diff := cmp.Diff(want, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 6, 7}, onlineNow(t, k)); diff != "" {
		t.Errorf("online after Restore (-want +got):\n%s", diff)
	}
	// A second Restore has nothing left to do.
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	if got := len(k.writes()); got != len(want) {
		t.Errorf("second Restore wrote again: %v", k.writes()[len(want):])
	}
}

func TestStopHotplugSkipsOfflineCPUs(t *testing.T) {
	cpus := qemuCPUs(4)
	cpus[2].online = false
	k := newFakeKernel(t, &fakeTree{cpus: cpus})
	s, err := Stop(context.Background(), PolicyHotplug, k.options())
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]string{"3:0", "1:0"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if err := s.Restore(context.Background()); err != nil {
		t.Fatal(err)
	}
	// cpu2 was offline before Stop and stays so.
	if diff := cmp.Diff([]int{0, 1, 3}, onlineNow(t, k)); diff != "" {
		t.Errorf("online after Restore (-want +got):\n%s", diff)
	}
}

func TestStopHotplugSingleCPU(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(1)})
	s, err := Stop(context.Background(), PolicyHotplug, k.options())
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Offlined) != 0 || len(k.writes()) != 0 {
		t.Errorf("Offlined %v, writes %v; want none", s.Offlined, k.writes())
	}
}

func TestStopHotplugRefusalRollsBack(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(8)})
	k.refuseDown = map[int]syscall.Errno{5: syscall.EBUSY}
	s, err := Stop(context.Background(), PolicyHotplug, k.options())
	if err == nil {
		t.Fatalf("Stop = %+v, want error", s)
	}
	if !errors.Is(err, syscall.EBUSY) {
		t.Errorf("err = %v, want EBUSY inside", err)
	}
	var cerr *CPUError
	if !errors.As(err, &cerr) || cerr.CPU != 5 || cerr.Online {
		t.Errorf("err = %v, want a *CPUError for taking cpu5 down", err)
	}
	for _, want := range []string{"cpu5", "EBUSY", "cpu5/online"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not name %q", err, want)
		}
	}
	// Taken down 7, 6; refused on 5; brought back 6, then 7.
	if diff := cmp.Diff([]string{"7:0", "6:0", "5:0!refused", "6:1", "7:1"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 6, 7}, onlineNow(t, k)); diff != "" {
		t.Errorf("online after failed Stop (-want +got):\n%s", diff)
	}
}

func TestStopHotplugRollbackFailureIsReported(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(8)})
	k.refuseDown = map[int]syscall.Errno{5: syscall.EBUSY}
	k.refuseUp = map[int]syscall.Errno{6: syscall.EIO}
	_, err := Stop(context.Background(), PolicyHotplug, k.options())
	if !errors.Is(err, syscall.EBUSY) || !errors.Is(err, syscall.EIO) {
		t.Fatalf("err = %v, want both the refusal and the failed rollback", err)
	}
	for _, want := range []string{"take down cpu5", "bring up cpu6"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("err %q does not say %q", err, want)
		}
	}
	// The rollback goes on past cpu6's failure and brings cpu7 back.
	if diff := cmp.Diff([]string{"7:0", "6:0", "5:0!refused", "6:1!refused", "7:1"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 7}, onlineNow(t, k)); diff != "" {
		t.Errorf("online (-want +got):\n%s", diff)
	}
}

func TestRestoreKeepsFailedCPUsForRetry(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(4)})
	ctx := context.Background()
	s, err := Stop(ctx, PolicyHotplug, k.options())
	if err != nil {
		t.Fatal(err)
	}
	k.refuseUp = map[int]syscall.Errno{2: syscall.EBUSY}
	err = s.Restore(ctx)
	var cerr *CPUError
	if !errors.As(err, &cerr) || cerr.CPU != 2 || !cerr.Online || !errors.Is(err, syscall.EBUSY) {
		t.Fatalf("Restore: err = %v, want a *CPUError bringing up cpu2 with EBUSY", err)
	}
	if diff := cmp.Diff([]int{2}, s.Offlined); diff != "" {
		t.Errorf("Offlined after failed Restore (-want +got):\n%s", diff)
	}
	k.refuseUp = nil
	if err := s.Restore(ctx); err != nil {
		t.Fatal(err)
	}
	want := []string{"3:0", "2:0", "1:0", "1:1", "2:1!refused", "3:1", "2:1"}
	if diff := cmp.Diff(want, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

func TestStopHotplugTimeout(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(8)})
	// cpu6's offline hangs in the "kernel" until the rollback starts; the
	// rollback's online write then waits for it, like cpu_hotplug_lock.
	k.hangDown = map[int]bool{6: true}
	opts := k.options()
	// Only cpu6's write waits the whole timeout: a long one costs the
	// test 3 s once and keeps a loaded machine's slow cpu7 write (a fake
	// tree rewritten on disk) from timing out first (500 ms failed 2 in 3
	// under six builds and two VMs).
	opts.Timeout = 3 * time.Second
	_, err := Stop(context.Background(), PolicyHotplug, opts)
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout", err)
	}
	var cerr *CPUError
	if !errors.As(err, &cerr) || cerr.CPU != 6 {
		t.Errorf("err = %v, want it to name cpu6", err)
	}
	// The late offline of cpu6 is undone too: its state was unknown.
	if diff := cmp.Diff([]string{"7:0", "6:0", "6:1", "7:1"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]int{0, 1, 2, 3, 4, 5, 6, 7}, onlineNow(t, k)); diff != "" {
		t.Errorf("online (-want +got):\n%s", diff)
	}
	// The rollback pinned a fresh thread to the boot CPU.
	if diff := cmp.Diff([]int{0, 0}, k.pinned()); diff != "" {
		t.Errorf("pinned (-want +got):\n%s", diff)
	}
}

func TestStopHotplugContextCancelled(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(4)})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	k.after = func(cpu int, val string) {
		if cpu == 3 && val == "0" {
			cancel()
		}
	}
	_, err := Stop(ctx, PolicyHotplug, k.options())
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	// The rollback ignores the cancelled context.
	if diff := cmp.Diff([]string{"3:0", "3:1"}, k.writes()); diff != "" {
		t.Errorf("writes (-want +got):\n%s", diff)
	}
}

func TestStopHotplugRefusesBeforeTouching(t *testing.T) {
	notHotplug := qemuCPUs(4)
	notHotplug[2].hotplug = false
	bootOffline := qemuCPUs(3)
	bootOffline[0].hotplug, bootOffline[0].online = true, false

	for _, tc := range []struct {
		name    string
		tree    fakeTree
		pinErr  error
		policy  Policy
		wantIs  error
		wantMsg string
	}{
		{name: "secondary without online file", tree: fakeTree{cpus: notHotplug}, policy: PolicyHotplug,
			wantIs: ErrNotHotpluggable, wantMsg: "cpu2/online"},
		{name: "boot CPU offline", tree: fakeTree{cpus: bootOffline}, policy: PolicyHotplug,
			wantMsg: "boot cpu0 is offline"},
		{name: "pinning fails", tree: fakeTree{cpus: qemuCPUs(4)}, policy: PolicyHotplug,
			pinErr: syscall.EINVAL, wantIs: syscall.EINVAL, wantMsg: "pin writer thread to cpu0"},
		{name: "unknown policy", tree: fakeTree{cpus: qemuCPUs(4)}, policy: "offline-all",
			wantIs: ErrUnknownPolicy, wantMsg: `"offline-all"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			k := newFakeKernel(t, &tc.tree)
			opts := k.options()
			if tc.pinErr != nil {
				opts.pin = func(int) error { return tc.pinErr }
			}
			s, err := Stop(context.Background(), tc.policy, opts)
			if err == nil {
				t.Fatalf("Stop = %+v, want error", s)
			}
			if tc.wantIs != nil && !errors.Is(err, tc.wantIs) {
				t.Errorf("err = %v, want %v inside", err, tc.wantIs)
			}
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Errorf("err = %v, want it to contain %q", err, tc.wantMsg)
			}
			if w := k.writes(); len(w) != 0 {
				t.Errorf("wrote %v before refusing", w)
			}
		})
	}
}
