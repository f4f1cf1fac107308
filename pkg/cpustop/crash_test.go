package cpustop

import (
	"errors"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestCrashCmdline(t *testing.T) {
	x86 := Topology{BootCPU: 0, BootAPICID: 0}
	x86Sparse := Topology{BootCPU: 0, BootAPICID: 16}
	noAPIC := Topology{BootCPU: 0, BootAPICID: -1}
	for _, tc := range []struct {
		name string
		mode Mode
		topo Topology
		want []string
	}{
		{"two-stage x86", ModeTwoStage, x86, []string{"nr_cpus=1", "disable_cpu_apicid=0"}},
		{"direct x86", ModeDirect, x86, []string{"disable_cpu_apicid=0"}},
		{"direct, BSP APIC id 16", ModeDirect, x86Sparse, []string{"disable_cpu_apicid=16"}},
		{"two-stage without APIC", ModeTwoStage, noAPIC, []string{"nr_cpus=1"}},
		{"direct without APIC", ModeDirect, noAPIC, []string{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := CrashCmdline(tc.mode, tc.topo)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("CrashCmdline (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := CrashCmdline("kdump", x86); !errors.Is(err, ErrUnknownMode) {
		t.Errorf("CrashCmdline(kdump): err = %v, want ErrUnknownMode", err)
	}
}
