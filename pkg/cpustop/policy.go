package cpustop

import "fmt"

// Policy says what the update path does with the other CPUs before
// reboot(LINUX_REBOOT_CMD_KEXEC).
type Policy string

const (
	// PolicyKernel leaves the CPUs to the kernel: on x86,
	// native_machine_shutdown() parks them with stop_other_cpus(); on
	// arm64 and riscv, smp_shutdown_nonboot_cpus() unplugs them. The
	// default: nothing to do in user space, nothing to undo.
	PolicyKernel Policy = "kernel"
	// PolicyHotplug takes every online secondary CPU offline through
	// /sys/devices/system/cpu/cpuN/online before the jump, from a thread
	// pinned to the boot CPU, so the kexec runs on the boot CPU with every
	// other CPU already unplugged.
	PolicyHotplug Policy = "hotplug"
)

// DefaultPolicy is the policy used when none is chosen.
const DefaultPolicy = PolicyKernel

// ParsePolicy turns a command-line value ("kernel" or "hotplug") into a
// Policy. Anything else is an error wrapping ErrUnknownPolicy.
func ParsePolicy(s string) (Policy, error) {
	switch p := Policy(s); p {
	case PolicyKernel, PolicyHotplug:
		return p, nil
	}
	return "", fmt.Errorf("%w %q (want %q or %q)", ErrUnknownPolicy, s, PolicyKernel, PolicyHotplug)
}

// String returns the policy's name.
func (p Policy) String() string { return string(p) }

// Set parses s into p, so a *Policy is a flag.Value.
func (p *Policy) Set(s string) error {
	v, err := ParsePolicy(s)
	if err != nil {
		return err
	}
	*p = v
	return nil
}
