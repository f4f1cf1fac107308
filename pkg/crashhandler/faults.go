package crashhandler

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
)

// Sysctls that turn faults into a panic, and so into the crash image. All
// are 0 on Debian by default (docs/kernel-facts.md, Faults routed to panic).
const (
	SysctlUnknownNMIPanic     = "kernel.unknown_nmi_panic"
	SysctlPanicOnUnrecovNMI   = "kernel.panic_on_unrecovered_nmi"
	SysctlPanicOnIONMI        = "kernel.panic_on_io_nmi"
	SysctlPanicOnOops         = "kernel.panic_on_oops"
	SysctlSoftlockupPanic     = "kernel.softlockup_panic"
	SysctlHardlockupPanic     = "kernel.hardlockup_panic"
	SysctlHungTaskPanic       = "kernel.hung_task_panic"
	SysctlPanicOnWarn         = "kernel.panic_on_warn"
	SysctlPanicOnRCUStall     = "kernel.panic_on_rcu_stall"
	routedValue               = "1"
	sysctlUnsupportedValueMsg = "unsupported"
)

// DefaultFaults are routed to panic unless FaultOptions.Disable is set.
// kernel.hardlockup_panic exists only with a hard lockup detector (needs a
// PMU; absent under QEMU TCG): a missing sysctl is reported as unsupported,
// not as an error.
var DefaultFaults = []string{
	SysctlUnknownNMIPanic,
	SysctlPanicOnUnrecovNMI,
	SysctlPanicOnIONMI,
	SysctlPanicOnOops,
	SysctlSoftlockupPanic,
	SysctlHardlockupPanic,
	SysctlHungTaskPanic,
}

// FaultOptions choose which faults Arm routes to panic.
type FaultOptions struct {
	// Disable leaves every sysctl alone.
	Disable bool
	// PanicOnWarn also routes WARN() (kernel.panic_on_warn): opt-in, a
	// warning is often survivable.
	PanicOnWarn bool
	// PanicOnRCUStall also routes RCU stalls (kernel.panic_on_rcu_stall).
	PanicOnRCUStall bool
}

func (o FaultOptions) names() []string {
	if o.Disable {
		return nil
	}
	names := append([]string(nil), DefaultFaults...)
	if o.PanicOnWarn {
		names = append(names, SysctlPanicOnWarn)
	}
	if o.PanicOnRCUStall {
		names = append(names, SysctlPanicOnRCUStall)
	}
	return names
}

// FaultStatus is the state of one fault-routing sysctl.
type FaultStatus struct {
	Name string `json:"name"`
	// Value is the current value, or "unsupported" when the kernel has no
	// such sysctl.
	Value     string `json:"value"`
	Supported bool   `json:"supported"`
	// Routed: the fault panics (value is non-zero).
	Routed bool `json:"routed"`
	// Previous is the value before Arm changed it ("" if Arm did not).
	Previous string `json:"previous,omitempty"`
}

// sysctlPath maps "kernel.panic_on_oops" to root/proc/sys/kernel/panic_on_oops.
func sysctlPath(root, name string) string {
	return filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/"))
}

// readSysctl returns the value, or ok=false if the sysctl does not exist.
func readSysctl(root, name string) (val string, ok bool, err error) {
	b, err := os.ReadFile(sysctlPath(root, name))
	if errors.Is(err, fs.ErrNotExist) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("%w %s: %w", ErrFaultRouting, name, err)
	}
	return strings.TrimSpace(string(b)), true, nil
}

func writeSysctl(root, name, val string) error {
	// O_TRUNC without O_CREATE: works on procfs and on the regular files of
	// a fake tree, and never creates a sysctl that does not exist.
	// O_NOFOLLOW: a sysctl is never a symlink; one in a tree is not
	// followed to whatever it names.
	f, err := os.OpenFile(sysctlPath(root, name), os.O_WRONLY|os.O_TRUNC|oNoFollow, 0)
	if err != nil {
		return fmt.Errorf("%w: setting %s=%s: %w", ErrFaultRouting, name, val, err)
	}
	_, err = f.WriteString(val + "\n")
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("%w: setting %s=%s: %w", ErrFaultRouting, name, val, err)
	}
	return nil
}

// routeFaults sets each named sysctl to 1. previous holds values recorded by
// an earlier Arm (kept: they are the values before fastreboot touched the
// sysctl); values of sysctls changed now are added to it. It returns the
// names it changed, so that a failing Arm can undo exactly those.
func routeFaults(root string, names []string, previous map[string]string) (changed []string, err error) {
	for _, name := range names {
		cur, ok, err := readSysctl(root, name)
		if err != nil {
			return changed, err
		}
		if !ok {
			continue
		}
		if _, seen := previous[name]; !seen {
			previous[name] = cur
		}
		if cur == routedValue {
			continue
		}
		if err := writeSysctl(root, name, routedValue); err != nil {
			return changed, err
		}
		changed = append(changed, name)
	}
	return changed, nil
}

// managedFault reports whether name is a sysctl Arm may route to panic:
// the only ones Disarm writes back.
func managedFault(name string) bool {
	return slices.Contains(FaultOptions{PanicOnWarn: true, PanicOnRCUStall: true}.names(), name)
}

// validSysctlValue reports whether v can be the value of a fault-routing
// sysctl as Arm read it: a decimal integer (they are all integers).
func validSysctlValue(v string) bool {
	d := strings.TrimPrefix(v, "-")
	if d == "" || len(d) > 20 {
		return false
	}
	for i := 0; i < len(d); i++ {
		if d[i] < '0' || d[i] > '9' {
			return false
		}
	}
	return true
}

// managedPrevious returns the entries of previous (read from the state
// file, which anyone able to write the state directory could have edited)
// that name a fault-routing sysctl with an integer value, and describes
// the others, which must never be written back: the state file is not
// allowed to make fastreboot set an arbitrary sysctl (kernel.core_pattern,
// say) as root.
func managedPrevious(previous map[string]string) (kept map[string]string, ignored []string) {
	kept = make(map[string]string, len(previous))
	for name, val := range previous {
		switch {
		case !managedFault(name):
			ignored = append(ignored, fmt.Sprintf("%q (not a fault-routing sysctl fastreboot manages)", name))
		case !validSysctlValue(val):
			ignored = append(ignored, fmt.Sprintf("%s=%q (not an integer)", name, val))
		default:
			kept[name] = val
		}
	}
	sort.Strings(ignored)
	return kept, ignored
}

// restoreAllFaults writes back every value in previous; the caller has
// kept only the managed ones (managedPrevious).
func restoreAllFaults(root string, previous map[string]string) error {
	names := make([]string, 0, len(previous))
	for n := range previous {
		names = append(names, n)
	}
	sort.Strings(names)
	return restoreFaults(root, previous, names)
}

// restoreFaults writes back the values in previous for the given names. It
// tries every one and joins the errors.
func restoreFaults(root string, previous map[string]string, names []string) error {
	var errs []error
	for _, name := range names {
		val, ok := previous[name]
		if !ok {
			continue
		}
		if _, exists, err := readSysctl(root, name); err != nil || !exists {
			if err != nil {
				errs = append(errs, err)
			}
			continue
		}
		if err := writeSysctl(root, name, val); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// faultStatus reports every sysctl of DefaultFaults plus the opt-in ones.
func faultStatus(root string, previous map[string]string) ([]FaultStatus, error) {
	names := FaultOptions{PanicOnWarn: true, PanicOnRCUStall: true}.names()
	out := make([]FaultStatus, 0, len(names))
	for _, name := range names {
		val, ok, err := readSysctl(root, name)
		if err != nil {
			return out, err
		}
		fs := FaultStatus{Name: name, Value: sysctlUnsupportedValueMsg, Previous: previous[name]}
		if ok {
			fs.Value, fs.Supported = val, true
			fs.Routed = val != "" && val != "0"
		}
		out = append(out, fs)
	}
	return out, nil
}

// SysctlPanic is kernel.panic: seconds a panic waits before the kernel
// reboots through the firmware (0: never; negative: at once).
const SysctlPanic = "kernel.panic"

// EnsurePanicReboot makes a panic reboot through the firmware: when
// kernel.panic is 0 (wait forever, Debian's default) it sets it to
// seconds; any other value is left, as it reboots already. It returns the
// value in effect and whether it changed it.
func EnsurePanicReboot(root string, seconds int) (string, bool, error) {
	val, ok, err := readSysctl(root, SysctlPanic)
	if err != nil {
		return "", false, err
	}
	if !ok {
		return "", false, fmt.Errorf("%w: %s: no such sysctl", ErrFaultRouting, SysctlPanic)
	}
	if val != "0" {
		return val, false, nil
	}
	v := fmt.Sprint(seconds)
	if err := writeSysctl(root, SysctlPanic, v); err != nil {
		return val, false, err
	}
	return v, true, nil
}
