package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// cpuTree is a fake CPU part of /sys and /proc, as QEMU -smp n shows it:
// APIC id = logical id, every CPU but 0 hot-pluggable. Its write method is
// a cpustop.Options.WriteFile that changes it like the kernel would, and
// can refuse to take some CPUs down.
type cpuTree struct {
	t    *testing.T
	root string
	n    int

	mu     sync.Mutex
	online map[int]bool
	refuse map[int]error // cpu -> error of "0" written to its online file
	writes []string      // "cpu3=0", in order
}

func newCPUTree(t *testing.T, root string, n int, offline ...int) *cpuTree {
	ct := &cpuTree{t: t, root: root, n: n, online: map[int]bool{}, refuse: map[int]error{}}
	for i := range n {
		ct.online[i] = true
	}
	for _, i := range offline {
		ct.online[i] = false
	}
	ct.writeFiles()
	return ct
}

func (ct *cpuTree) writeFiles() {
	dir := filepath.Join(ct.root, "sys/devices/system/cpu")
	put := func(p, s string) {
		ct.t.Helper()
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			ct.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			ct.t.Fatal(err)
		}
	}
	var online []int
	var info strings.Builder
	for i := range ct.n {
		if i > 0 {
			put(filepath.Join(dir, "cpu"+strconv.Itoa(i), "online"), map[bool]string{true: "1\n", false: "0\n"}[ct.online[i]])
		}
		if ct.online[i] {
			online = append(online, i)
			fmt.Fprintf(&info, "processor\t: %d\napicid\t\t: %d\ninitial apicid\t: %d\n\n", i, i, i)
		}
	}
	all := fmt.Sprintf("0-%d\n", ct.n-1)
	put(filepath.Join(dir, "possible"), all)
	put(filepath.Join(dir, "present"), all)
	put(filepath.Join(dir, "online"), cpustop.FormatCPUList(online)+"\n")
	put(filepath.Join(ct.root, "proc/cpuinfo"), info.String())
}

func (ct *cpuTree) write(path string, data []byte) error {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	rel, err := filepath.Rel(filepath.Join(ct.root, "sys/devices/system/cpu"), path)
	if err != nil || filepath.Base(rel) != "online" {
		return fmt.Errorf("cpuTree: unexpected write to %s", path)
	}
	id, err := strconv.Atoi(strings.TrimPrefix(filepath.Dir(rel), "cpu"))
	if err != nil {
		return fmt.Errorf("cpuTree: unexpected write to %s", path)
	}
	ct.writes = append(ct.writes, fmt.Sprintf("cpu%d=%s", id, data))
	up := string(data) == "1"
	if err := ct.refuse[id]; err != nil && !up {
		return &fs.PathError{Op: "write", Path: path, Err: err}
	}
	ct.online[id] = up
	ct.writeFiles()
	return nil
}

func (ct *cpuTree) onlineList() string {
	ct.mu.Lock()
	defer ct.mu.Unlock()
	var on []int
	for i := range ct.n {
		if ct.online[i] {
			on = append(on, i)
		}
	}
	return cpustop.FormatCPUList(on)
}

func recorded(ids ...int) []cpustop.RecordedCPU {
	r := []cpustop.RecordedCPU{}
	for _, id := range ids {
		r = append(r, cpustop.RecordedCPU{ID: id, APICID: id})
	}
	return r
}

// TestCPURecordAcrossJump stages with some CPUs online, "jumps", and
// checks what Resume reports for the CPUs online in the next generation.
func TestCPURecordAcrossJump(t *testing.T) {
	for _, tc := range []struct {
		name string
		// before: CPUs of the old kernel (-1: no CPU tree at stage time);
		// after: those of the new one (-1: no tree at resume time).
		before, after          int
		beforeOff, afterOff    []int
		wantRecord             *cpustop.Record
		wantReport             *cpustop.Report
		wantErr                string // in State.CPUsError
		wantMissingIsCPUsError bool
	}{
		{
			name: "all back", before: 4, after: 4,
			wantRecord: &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1, 2, 3)},
			wantReport: &cpustop.Report{MatchedBy: "apic_id", Expected: 4, Online: 4, Missing: recorded(), Added: recorded()},
		},
		{
			name: "cpu3 missing", before: 4, after: 4, afterOff: []int{3},
			wantRecord: &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1, 2, 3)},
			wantReport: &cpustop.Report{MatchedBy: "apic_id", Expected: 4, Online: 3, Missing: recorded(3), Added: recorded()},
			wantErr:    "1 of 4 missing: cpu3 (apic 3)",
		},
		{
			name: "offline at stage is not expected", before: 4, beforeOff: []int{2}, after: 4, afterOff: []int{2},
			wantRecord: &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1, 3)},
			wantReport: &cpustop.Report{MatchedBy: "apic_id", Expected: 3, Online: 3, Missing: recorded(), Added: recorded()},
		},
		{
			name: "more CPUs now", before: 2, after: 4,
			wantRecord: &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1)},
			wantReport: &cpustop.Report{MatchedBy: "apic_id", Expected: 2, Online: 4, Missing: recorded(), Added: recorded(2, 3)},
		},
		{name: "no record", before: -1, after: 4},
		{
			name: "unreadable now", before: 4, after: -1,
			wantRecord: &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1, 2, 3)},
			wantErr:    "checking CPUs",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			m, _, err := testimage.Default().Write(dir)
			if err != nil {
				t.Fatal(err)
			}
			root := fakeTree(t, goodTree)
			if tc.before >= 0 {
				newCPUTree(t, root, tc.before, tc.beforeOff...)
			}
			loader := &fakeLoader{}
			mc := New(newCache(t), Options{Root: root, Loader: loader, Logger: testLogger(t)})
			rep, err := mc.Stage(ctx, m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate})
			if err != nil {
				t.Fatal(err)
			}
			_, img := loader.state()
			next := unpackHandoff(t, img.initrd, rep.HandoffBytes)
			h, err := ReadHandoff(next)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantRecord, h.CPUs); diff != "" {
				t.Errorf("handoff CPU record (-want +got):\n%s", diff)
			}

			if tc.after >= 0 {
				newCPUTree(t, next, tc.after, tc.afterOff...)
			}
			st, err := Resume(ctx, newCache(t), ResumeOptions{Root: next, StateDir: t.TempDir(), Logger: testLogger(t)})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.wantReport, st.CPUs); diff != "" {
				t.Errorf("State.CPUs (-want +got):\n%s", diff)
			}
			if tc.wantErr == "" && st.CPUsError != "" || !strings.Contains(st.CPUsError, tc.wantErr) {
				t.Errorf("State.CPUsError = %q, want %q", st.CPUsError, tc.wantErr)
			}
			if st.CPUs != nil && len(st.CPUs.Missing) > 0 && !errors.Is(st.CPUs.Err(), cpustop.ErrCPUsMissing) {
				t.Errorf("report error %v does not wrap ErrCPUsMissing", st.CPUs.Err())
			}
		})
	}
}

// TestRebootCPUPolicyPlan checks that the policy is validated and shown in
// the plan, before any syscall.
func TestRebootCPUPolicyPlan(t *testing.T) {
	loaded := tree(map[string]string{pathKexecLoaded: "1\n"})
	for _, tc := range []struct {
		policy cpustop.Policy
		want   cpustop.Policy
		wantIs error
	}{
		{policy: "", want: cpustop.PolicyKernel},
		{policy: cpustop.PolicyKernel, want: cpustop.PolicyKernel},
		{policy: cpustop.PolicyHotplug, want: cpustop.PolicyHotplug},
		{policy: "nmi", want: "", wantIs: cpustop.ErrUnknownPolicy},
	} {
		t.Run(string(tc.policy), func(t *testing.T) {
			rb := &fakeRebooter{}
			mc := New(nil, Options{Root: fakeTree(t, loaded), Rebooter: rb})
			ro := RebootOptions{StopCPUs: tc.policy, DryRun: true}
			plan, err := mc.PlanReboot(ro)
			if !errors.Is(err, tc.wantIs) || (tc.wantIs == nil && err != nil) {
				t.Fatalf("PlanReboot = %v, want %v", err, tc.wantIs)
			}
			if plan.StopCPUs != tc.want {
				t.Errorf("plan.StopCPUs = %q, want %q", plan.StopCPUs, tc.want)
			}
			if err := mc.Reboot(context.Background(), ro); !errors.Is(err, tc.wantIs) || (tc.wantIs == nil && err != nil) {
				t.Errorf("Reboot = %v, want %v", err, tc.wantIs)
			}
			if len(rb.calls) != 0 {
				t.Errorf("dry run called %v", rb.calls)
			}
		})
	}
}

// TestCPURecordPassedOn: a Machine staging with StageOptions.CPURecord (a crash stage
// passing on the record of the kernel that crashed) carries that record,
// not the CPUs it runs on.
func TestCPURecordPassedOn(t *testing.T) {
	dir := t.TempDir()
	m, _, err := testimage.Default().Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	root := fakeTree(t, goodTree)
	newCPUTree(t, root, 1) // the crash stage runs with nr_cpus=1
	crashed := &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: recorded(0, 1, 2, 3)}
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: root, Loader: loader})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonCrash, CPURecord: crashed})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	h, err := ReadHandoff(unpackHandoff(t, img.initrd, rep.HandoffBytes))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(crashed, h.CPUs); diff != "" {
		t.Errorf("handoff CPU record (-want +got):\n%s", diff)
	}
}
