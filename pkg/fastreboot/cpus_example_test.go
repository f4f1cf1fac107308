package fastreboot_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// planRebooter stands in for sync(2) and reboot(2).
type planRebooter struct{}

func (planRebooter) Sync() error { return nil }
func (planRebooter) Reboot(cmd fastreboot.RebootCmd) error {
	return errors.New("not rebooting in an example")
}

// Reboot with the hotplug CPU policy: the secondary CPUs go offline right
// before the kexec, and come back if the reboot does not happen.
func ExampleMachine_Reboot_hotplug() {
	root, err := os.MkdirTemp("", "example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	// A system with an image loaded and CAP_SYS_BOOT.
	for name, content := range map[string]string{
		"sys/kernel/kexec_loaded": "1\n",
		"proc/self/status":        "CapEff:\t000001ffffffffff\n",
	} {
		os.MkdirAll(filepath.Join(root, filepath.Dir(name)), 0o755)
		os.WriteFile(filepath.Join(root, name), []byte(content), 0o644)
	}
	m := fastreboot.New(nil, fastreboot.Options{Root: root, Rebooter: planRebooter{}})
	ro := fastreboot.RebootOptions{StopCPUs: cpustop.PolicyHotplug, DryRun: true}
	plan, err := m.PlanReboot(ro)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(plan.Mode, plan.StopCPUs)
	fmt.Println(m.Reboot(context.Background(), ro))
	// Output:
	// kexec hotplug
	// <nil>
}
