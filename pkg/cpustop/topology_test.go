package cpustop

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestReadTopology(t *testing.T) {
	eight := qemuCPUs(8)
	for i := range eight {
		eight[i].apic = 2 * i // one thread per core of a 2-way SMT layout
	}
	eight[6].online = false

	cpu0Hotplug := qemuCPUs(2)
	cpu0Hotplug[0].hotplug = true // CONFIG_BOOTPARAM_HOTPLUG_CPU0

	for _, tc := range []struct {
		name string
		tree fakeTree
		want Topology
	}{
		{
			name: "qemu -smp 4, CPU0 without an online file",
			tree: fakeTree{cpus: qemuCPUs(4)},
			want: Topology{
				Possible: []int{0, 1, 2, 3},
				Present:  []int{0, 1, 2, 3},
				Online:   []int{0, 1, 2, 3},
				CPUs: []CPU{
					{ID: 0, APICID: 0, InitialAPICID: 0, Online: true},
					{ID: 1, APICID: 1, InitialAPICID: 1, Online: true, Hotpluggable: true},
					{ID: 2, APICID: 2, InitialAPICID: 2, Online: true, Hotpluggable: true},
					{ID: 3, APICID: 3, InitialAPICID: 3, Online: true, Hotpluggable: true},
				},
				BootCPU: 0, BootAPICID: 0, ConfiguredRebootCPU: 0, RebootCPU: 0,
			},
		},
		{
			name: "8 CPUs, sparse APIC ids, cpu6 offline, room for 16",
			tree: fakeTree{possible: "0-15", cpus: eight, rebootCPU: "0\n"},
			want: Topology{
				Possible: []int{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15},
				Present:  []int{0, 1, 2, 3, 4, 5, 6, 7},
				Online:   []int{0, 1, 2, 3, 4, 5, 7},
				CPUs: []CPU{
					{ID: 0, APICID: 0, InitialAPICID: 0, Online: true},
					{ID: 1, APICID: 2, InitialAPICID: 2, Online: true, Hotpluggable: true},
					{ID: 2, APICID: 4, InitialAPICID: 4, Online: true, Hotpluggable: true},
					{ID: 3, APICID: 6, InitialAPICID: 6, Online: true, Hotpluggable: true},
					{ID: 4, APICID: 8, InitialAPICID: 8, Online: true, Hotpluggable: true},
					{ID: 5, APICID: 10, InitialAPICID: 10, Online: true, Hotpluggable: true},
					// Offline: /proc/cpuinfo does not list it.
					{ID: 6, APICID: -1, InitialAPICID: -1, Hotpluggable: true},
					{ID: 7, APICID: 14, InitialAPICID: 14, Online: true, Hotpluggable: true},
				},
				BootCPU: 0, BootAPICID: 0, ConfiguredRebootCPU: 0, RebootCPU: 0,
			},
		},
		{
			name: "CPU0 with an online file, reboot=s1",
			tree: fakeTree{cpus: cpu0Hotplug, rebootCPU: "1\n"},
			want: Topology{
				Possible: []int{0, 1}, Present: []int{0, 1}, Online: []int{0, 1},
				CPUs: []CPU{
					{ID: 0, APICID: 0, InitialAPICID: 0, Online: true, Hotpluggable: true},
					{ID: 1, APICID: 1, InitialAPICID: 1, Online: true, Hotpluggable: true},
				},
				BootCPU: 0, BootAPICID: 0, ConfiguredRebootCPU: 1, RebootCPU: 1,
			},
		},
		{
			name: "reboot_cpu offline falls back to the first online CPU",
			tree: fakeTree{cpus: []fakeCPU{
				{id: 0, apic: 0, online: true},
				{id: 1, apic: 1, online: true, hotplug: true},
				{id: 2, apic: 2, online: false, hotplug: true},
			}, rebootCPU: "2\n"},
			want: Topology{
				Possible: []int{0, 1, 2}, Present: []int{0, 1, 2}, Online: []int{0, 1},
				CPUs: []CPU{
					{ID: 0, APICID: 0, InitialAPICID: 0, Online: true},
					{ID: 1, APICID: 1, InitialAPICID: 1, Online: true, Hotpluggable: true},
					{ID: 2, APICID: -1, InitialAPICID: -1, Hotpluggable: true},
				},
				BootCPU: 0, BootAPICID: 0, ConfiguredRebootCPU: 2, RebootCPU: 0,
			},
		},
		{
			name: "no /proc/cpuinfo: APIC ids unknown",
			tree: fakeTree{cpus: qemuCPUs(2), noCPUInfo: true},
			want: Topology{
				Possible: []int{0, 1}, Present: []int{0, 1}, Online: []int{0, 1},
				CPUs: []CPU{
					{ID: 0, APICID: -1, InitialAPICID: -1, Online: true},
					{ID: 1, APICID: -1, InitialAPICID: -1, Online: true, Hotpluggable: true},
				},
				BootCPU: 0, BootAPICID: -1, ConfiguredRebootCPU: 0, RebootCPU: 0,
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tc.tree.write(t, root)
			got, err := ReadTopology(Options{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("ReadTopology (-want +got):\n%s", diff)
			}
		})
	}
}

func TestReadTopologyErrors(t *testing.T) {
	for _, tc := range []struct {
		name    string
		edit    func(t *testing.T, root string)
		wantErr string
	}{
		{
			name:    "no online list",
			edit:    func(t *testing.T, root string) { os.Remove(filepath.Join(root, cpuDir, "online")) },
			wantErr: "online",
		},
		{
			name:    "garbage present list",
			edit:    func(t *testing.T, root string) { mustWrite(t, filepath.Join(root, cpuDir, "present"), "0-x\n") },
			wantErr: "present",
		},
		{
			name:    "empty online list",
			edit:    func(t *testing.T, root string) { mustWrite(t, filepath.Join(root, cpuDir, "online"), "\n") },
			wantErr: "lists no CPU",
		},
		{
			name:    "bad cpuinfo",
			edit:    func(t *testing.T, root string) { mustWrite(t, filepath.Join(root, cpuinfoFile), "processor\t: x\n") },
			wantErr: "cpuinfo",
		},
		{
			name:    "bad reboot cpu",
			edit:    func(t *testing.T, root string) { mustWrite(t, filepath.Join(root, rebootCPUFile), "-1\n") },
			wantErr: "reboot/cpu",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			tree := fakeTree{cpus: qemuCPUs(2)}
			tree.write(t, root)
			tc.edit(t, root)
			_, err := ReadTopology(Options{Root: root})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("ReadTopology: err = %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

func TestSecondaries(t *testing.T) {
	root := t.TempDir()
	cpus := qemuCPUs(8)
	cpus[3].online = false
	tree := fakeTree{cpus: cpus}
	tree.write(t, root)
	topo, err := ReadTopology(Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff([]int{7, 6, 5, 4, 2, 1}, topo.Secondaries()); diff != "" {
		t.Errorf("Secondaries (-want +got):\n%s", diff)
	}
}
