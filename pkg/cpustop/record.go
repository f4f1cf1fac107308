package cpustop

import (
	"fmt"
	"slices"
	"strings"
)

// Record is the CPU state carried across the jump in the handoff: which
// CPUs were online in the old kernel just before it. Take it before Stop:
// with PolicyHotplug the secondaries are offline afterwards, yet they are
// expected back.
type Record struct {
	BootCPU    int `json:"boot_cpu"`
	BootAPICID int `json:"boot_apic_id"`
	// Online lists the online CPUs, ordered by ID.
	Online []RecordedCPU `json:"online"`
}

// RecordedCPU names one CPU by logical id and APIC id (-1 when unknown).
type RecordedCPU struct {
	ID     int `json:"id"`
	APICID int `json:"apic_id"`
}

func (c RecordedCPU) String() string {
	if c.APICID < 0 {
		return fmt.Sprintf("cpu%d", c.ID)
	}
	return fmt.Sprintf("cpu%d (apic %d)", c.ID, c.APICID)
}

// Record returns the online CPUs of t for the handoff.
func (t Topology) Record() Record {
	r := Record{BootCPU: t.BootCPU, BootAPICID: t.BootAPICID, Online: []RecordedCPU{}}
	for _, c := range t.CPUs {
		if c.Online {
			r.Online = append(r.Online, RecordedCPU{ID: c.ID, APICID: recordedAPICID(c)})
		}
	}
	return r
}

// recordedAPICID prefers "apicid", the id the kernel addresses the CPU by.
func recordedAPICID(c CPU) int {
	if c.APICID >= 0 {
		return c.APICID
	}
	return c.InitialAPICID
}

// Report is the result of Compare.
type Report struct {
	// MatchedBy is "apic_id" when CPUs were matched by APIC id, "id" when
	// by logical id (some APIC id unknown on either side).
	MatchedBy string `json:"matched_by"`
	Expected  int    `json:"expected"`
	Online    int    `json:"online"`
	// Missing lists the recorded CPUs not online now, as recorded.
	Missing []RecordedCPU `json:"missing"`
	// Added lists the CPUs online now that the record does not have.
	Added []RecordedCPU `json:"added"`
}

// Compare checks that every CPU online before the jump is online now. CPUs
// are matched by APIC id when both sides know every APIC id (logical ids
// are renumbered when the next kernel boots on another CPU, e.g. after a
// crash), else by logical id.
func Compare(before Record, now Topology) Report {
	after := now.Record()
	byAPIC := allAPICKnown(before.Online) && allAPICKnown(after.Online)
	key := func(c RecordedCPU) int { return c.ID }
	r := Report{MatchedBy: "id", Expected: len(before.Online), Online: len(after.Online),
		Missing: []RecordedCPU{}, Added: []RecordedCPU{}}
	if byAPIC {
		key = func(c RecordedCPU) int { return c.APICID }
		r.MatchedBy = "apic_id"
	}
	has := func(list []RecordedCPU, k int) bool {
		return slices.ContainsFunc(list, func(c RecordedCPU) bool { return key(c) == k })
	}
	for _, c := range before.Online {
		if !has(after.Online, key(c)) {
			r.Missing = append(r.Missing, c)
		}
	}
	for _, c := range after.Online {
		if !has(before.Online, key(c)) {
			r.Added = append(r.Added, c)
		}
	}
	return r
}

func allAPICKnown(cpus []RecordedCPU) bool {
	return !slices.ContainsFunc(cpus, func(c RecordedCPU) bool { return c.APICID < 0 })
}

// Err returns nil when every recorded CPU is back, else an error wrapping
// ErrCPUsMissing that names them.
func (r Report) Err() error {
	if len(r.Missing) == 0 {
		return nil
	}
	names := make([]string, len(r.Missing))
	for i, c := range r.Missing {
		names[i] = c.String()
	}
	return fmt.Errorf("%w: %d of %d missing: %s", ErrCPUsMissing, len(r.Missing), r.Expected, strings.Join(names, ", "))
}
