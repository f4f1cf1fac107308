package cpustop_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
)

// fakeRoot writes the few sysfs and procfs files cpustop reads, for a
// machine with n CPUs; on a real system Options.Root stays empty ("/").
func fakeRoot(n int) string {
	root, err := os.MkdirTemp("", "cpustop-example")
	if err != nil {
		panic(err)
	}
	cpus := filepath.Join(root, "sys/devices/system/cpu")
	var info strings.Builder
	for i := range n {
		os.MkdirAll(filepath.Join(cpus, fmt.Sprintf("cpu%d", i)), 0o755)
		if i > 0 {
			os.WriteFile(filepath.Join(cpus, fmt.Sprintf("cpu%d/online", i)), []byte("1\n"), 0o644)
		}
		fmt.Fprintf(&info, "processor\t: %d\napicid\t\t: %d\ninitial apicid\t: %d\n\n", i, i, i)
	}
	list := fmt.Sprintf("0-%d\n", n-1)
	for _, f := range []string{"possible", "present", "online"} {
		os.WriteFile(filepath.Join(cpus, f), []byte(list), 0o644)
	}
	os.MkdirAll(filepath.Join(root, "proc"), 0o755)
	os.WriteFile(filepath.Join(root, "proc/cpuinfo"), []byte(info.String()), 0o644)
	return root
}

// The update path: record the CPUs for the handoff, let the kernel stop
// them, and check in the next generation that they all came back.
func Example() {
	ctx := context.Background()
	root := fakeRoot(4)
	defer os.RemoveAll(root)
	opts := cpustop.Options{Root: root}

	topo, err := cpustop.ReadTopology(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("online:", cpustop.FormatCPUList(topo.Online), "boot APIC id:", topo.BootAPICID, "reboot CPU:", topo.RebootCPU)
	record := topo.Record() // carried in the handoff

	stopped, err := cpustop.Stop(ctx, cpustop.DefaultPolicy, opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("policy:", stopped.Policy, "offlined:", len(stopped.Offlined))
	// reboot(LINUX_REBOOT_CMD_KEXEC) would go here; if it returns, the
	// reboot was aborted:
	if err := stopped.Restore(ctx); err != nil {
		fmt.Println(err)
	}

	// In the next generation:
	now, err := cpustop.ReadTopology(opts)
	if err != nil {
		fmt.Println(err)
		return
	}
	report := cpustop.Compare(record, now)
	fmt.Println("missing:", len(report.Missing), "err:", report.Err())
	// Output:
	// online: 0-3 boot APIC id: 0 reboot CPU: 0
	// policy: kernel offlined: 0
	// missing: 0 err: <nil>
}

func ExampleParseCPUList() {
	cpus, err := cpustop.ParseCPUList("0-3,5\n")
	fmt.Println(cpus, err)
	fmt.Println(cpustop.FormatCPUList(cpus))
	// Output:
	// [0 1 2 3 5] <nil>
	// 0-3,5
}

func ExampleCompare() {
	before := cpustop.Record{Online: []cpustop.RecordedCPU{{ID: 0, APICID: 0}, {ID: 1, APICID: 1}, {ID: 2, APICID: 2}}}
	root := fakeRoot(2) // the next kernel found only two CPUs
	defer os.RemoveAll(root)
	now, err := cpustop.ReadTopology(cpustop.Options{Root: root})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(cpustop.Compare(before, now).Err())
	// Output:
	// cpustop: CPUs did not come back: 1 of 3 missing: cpu2 (apic 2)
}
