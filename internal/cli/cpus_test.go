package cli

import (
	"fmt"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// cpuFiles is the CPU part of /sys and /proc of a QEMU -smp n guest with
// the given CPUs online (APIC id = logical id).
func cpuFiles(n int, online ...int) map[string]string {
	const dir = "sys/devices/system/cpu/"
	all := fmt.Sprintf("0-%d\n", n-1)
	f := map[string]string{dir + "possible": all, dir + "present": all, dir + "online": cpustop.FormatCPUList(online) + "\n"}
	var info strings.Builder
	for i := 1; i < n; i++ {
		f[fmt.Sprintf("%scpu%d/online", dir, i)] = "0\n"
	}
	for _, i := range online {
		if i > 0 {
			f[fmt.Sprintf("%scpu%d/online", dir, i)] = "1\n"
		}
		fmt.Fprintf(&info, "processor\t: %d\napicid\t\t: %d\ninitial apicid\t: %d\n\n", i, i, i)
	}
	f["proc/cpuinfo"] = info.String()
	return f
}

func recordedCPUs(ids ...int) []cpustop.RecordedCPU {
	r := []cpustop.RecordedCPU{}
	for _, id := range ids {
		r = append(r, cpustop.RecordedCPU{ID: id, APICID: id})
	}
	return r
}

func TestStatusCPUs(t *testing.T) {
	back := &cpustop.Report{MatchedBy: "apic_id", Expected: 4, Online: 4, Missing: recordedCPUs(), Added: recordedCPUs()}
	missing := &cpustop.Report{MatchedBy: "apic_id", Expected: 4, Online: 3, Missing: recordedCPUs(3), Added: recordedCPUs()}
	for _, tc := range []struct {
		name     string
		state    *fastreboot.State
		online   []int
		wantCode int // of status --check
		want     *cpuStatus
		wantText string
	}{
		{
			name:     "all back",
			state:    &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, CPUs: back},
			online:   []int{0, 1, 2, 3},
			want:     &cpuStatus{Online: "0-3", Check: back},
			wantText: "cpus: online 0-3; all 4 CPUs online before the jump came back (matched by apic_id)\n",
		},
		{
			name: "cpu3 missing",
			state: &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonCrash, CPUs: missing,
				CPUsError: missing.Err().Error()},
			online:   []int{0, 1, 2},
			wantCode: ExitProblem,
			want:     &cpuStatus{Online: "0-2", Check: missing, Error: missing.Err().Error()},
			wantText: "cpus: online 0-2; 1 of 4 CPUs online before the jump did NOT come back: cpu3 (apic 3)\n",
		},
		{
			name:     "check failed",
			state:    &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, CPUsError: "checking CPUs: no cpuinfo"},
			online:   []int{0, 1},
			wantCode: ExitProblem,
			want:     &cpuStatus{Online: "0-1", Error: "checking CPUs: no cpuinfo"},
			wantText: "  cpu check: checking CPUs: no cpuinfo\n",
		},
		{
			name:     "cold boot",
			online:   []int{0, 1, 2, 3},
			want:     &cpuStatus{Online: "0-3"},
			wantText: "cpus: online 0-3; no record from a previous generation\n",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(cpuFiles(4, tc.online...))
			if tc.state != nil {
				if err := fastreboot.SaveState(h.stateDir, tc.state); err != nil {
					t.Fatal(err)
				}
			}
			var got statusReport
			decode(t, h.run("status", "--json"), &got)
			if diff := cmp.Diff(tc.want, got.CPUs); diff != "" {
				t.Errorf("status --json cpus (-want +got):\n%s", diff)
			}
			r := h.run("status", "--check")
			if r.code != tc.wantCode {
				t.Errorf("status --check exit %d, want %d", r.code, tc.wantCode)
			}
			if !strings.Contains(r.stdout, tc.wantText) {
				t.Errorf("status output has no %q:\n%s", tc.wantText, r.stdout)
			}
			if tc.wantCode == ExitProblem && !strings.Contains(r.stderr, "cpus: "+tc.want.Error) {
				t.Errorf("status --check stderr %q does not name the CPU problem %q", r.stderr, tc.want.Error)
			}
		})
	}
}

func TestRebootStopCPUsFlag(t *testing.T) {
	loaded := map[string]string{"sys/kernel/kexec_loaded": "1\n"}
	for _, tc := range []struct {
		args     []string
		code     int
		want     cpustop.Policy // in the JSON plan
		wantText string
	}{
		{args: []string{"--json"}, want: cpustop.PolicyKernel},
		{args: []string{"--stop-cpus", "kernel", "--json"}, want: cpustop.PolicyKernel},
		{args: []string{"--stop-cpus=hotplug", "--json"}, want: cpustop.PolicyHotplug},
		{args: []string{"--stop-cpus=hotplug"}, wantText: "would sync and reboot through kexec (stop-cpus hotplug)\n"},
		{args: []string{"--stop-cpus=nmi"}, code: ExitUsage, wantText: `unknown CPU policy "nmi"`},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(loaded)
			r := h.run(append([]string{"reboot", "--dry-run"}, tc.args...)...)
			if r.code != tc.code {
				t.Fatalf("exit %d, want %d", r.code, tc.code)
			}
			if tc.want != "" {
				var plan fastreboot.RebootPlan
				decode(t, r, &plan)
				if plan.StopCPUs != tc.want || plan.Mode != "kexec" {
					t.Errorf("plan %+v, want kexec with stop_cpus %s", plan, tc.want)
				}
			}
			if !strings.Contains(r.stdout+r.stderr, tc.wantText) {
				t.Errorf("output has no %q", tc.wantText)
			}
			if calls := h.rebooter.Calls(); len(calls) != 0 {
				t.Errorf("dry run called the rebooter: %v", calls)
			}
		})
	}
}
