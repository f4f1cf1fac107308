package cpustop

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// topoOf builds a Topology with the given online CPUs; apic[i] < 0 means
// unknown.
func topoOf(ids, apic []int) Topology {
	t := Topology{Online: ids, BootCPU: 0, BootAPICID: -1}
	for i, id := range ids {
		t.CPUs = append(t.CPUs, CPU{ID: id, APICID: apic[i], InitialAPICID: apic[i], Online: true})
	}
	if len(apic) > 0 {
		t.BootAPICID = apic[0]
	}
	return t
}

func TestCompare(t *testing.T) {
	before := topoOf([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}).Record()
	for _, tc := range []struct {
		name    string
		before  Record
		now     Topology
		want    Report
		wantErr string
	}{
		{
			name:   "all back",
			before: before,
			now:    topoOf([]int{0, 1, 2, 3}, []int{0, 1, 2, 3}),
			want:   Report{MatchedBy: "apic_id", Expected: 4, Online: 4, Missing: []RecordedCPU{}, Added: []RecordedCPU{}},
		},
		{
			name:    "cpu3 did not come back",
			before:  before,
			now:     topoOf([]int{0, 1, 2}, []int{0, 1, 2}),
			want:    Report{MatchedBy: "apic_id", Expected: 4, Online: 3, Missing: []RecordedCPU{{3, 3}}, Added: []RecordedCPU{}},
			wantErr: "1 of 4 missing: cpu3 (apic 3)",
		},
		{
			// Crash on cpu2, kernel booted there with the BSP disabled:
			// logical ids are renumbered, APIC ids tell the truth.
			name:    "renumbered after booting on a secondary",
			before:  before,
			now:     topoOf([]int{0, 1, 2}, []int{2, 1, 3}),
			want:    Report{MatchedBy: "apic_id", Expected: 4, Online: 3, Missing: []RecordedCPU{{0, 0}}, Added: []RecordedCPU{}},
			wantErr: "cpu0 (apic 0)",
		},
		{
			name:    "no APIC ids: matched by logical id",
			before:  topoOf([]int{0, 1, 2, 3}, []int{-1, -1, -1, -1}).Record(),
			now:     topoOf([]int{0, 1, 3}, []int{-1, -1, -1}),
			want:    Report{MatchedBy: "id", Expected: 4, Online: 3, Missing: []RecordedCPU{{2, -1}}, Added: []RecordedCPU{}},
			wantErr: "missing: cpu2",
		},
		{
			name:   "more CPUs than before",
			before: topoOf([]int{0, 1}, []int{0, 1}).Record(),
			now:    topoOf([]int{0, 1, 2}, []int{0, 1, 2}),
			want:   Report{MatchedBy: "apic_id", Expected: 2, Online: 3, Missing: []RecordedCPU{}, Added: []RecordedCPU{{2, 2}}},
		},
		{
			name:   "no record",
			before: Record{},
			now:    topoOf([]int{0, 1}, []int{0, 1}),
			want:   Report{MatchedBy: "apic_id", Expected: 0, Online: 2, Missing: []RecordedCPU{}, Added: []RecordedCPU{{0, 0}, {1, 1}}},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Compare(tc.before, tc.now)
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("Compare (-want +got):\n%s", diff)
			}
			err := got.Err()
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Err() = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrCPUsMissing) || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Err() = %v, want ErrCPUsMissing containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestRecordJSON(t *testing.T) {
	r := topoOf([]int{0, 1}, []int{0, 2}).Record()
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	const want = `{"boot_cpu":0,"boot_apic_id":0,"online":[{"id":0,"apic_id":0},{"id":1,"apic_id":2}]}`
	if string(b) != want {
		t.Errorf("json = %s, want %s", b, want)
	}
	var back Record
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(r, back); diff != "" {
		t.Errorf("round trip (-want +got):\n%s", diff)
	}
}

// The record is taken before Stop, Compare runs on the next kernel; here
// the fake kernel stands in for both.
func TestRecordStopCompare(t *testing.T) {
	k := newFakeKernel(t, &fakeTree{cpus: qemuCPUs(4)})
	topo, err := ReadTopology(k.options())
	if err != nil {
		t.Fatal(err)
	}
	rec := topo.Record()
	s, err := Stop(t.Context(), PolicyHotplug, k.options())
	if err != nil {
		t.Fatal(err)
	}
	down, err := ReadTopology(k.options())
	if err != nil {
		t.Fatal(err)
	}
	if err := Compare(rec, down).Err(); err == nil || !strings.Contains(err.Error(), "3 of 4 missing") {
		t.Errorf("Compare while offline: Err() = %v, want 3 of 4 missing", err)
	}
	if err := s.Restore(t.Context()); err != nil {
		t.Fatal(err)
	}
	up, err := ReadTopology(k.options())
	if err != nil {
		t.Fatal(err)
	}
	if err := Compare(rec, up).Err(); err != nil {
		t.Errorf("Compare after Restore: %v", err)
	}
}
