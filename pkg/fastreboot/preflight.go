package fastreboot

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// Names of the preflight checks, in the order Preflight runs them.
const (
	CheckKexecLoadLimit   = "kexec_load_limit_reboot"
	CheckKexecFileLoad    = "kexec_file_load"
	CheckKexecLoadOff     = "kexec_load_disabled"
	CheckLockdown         = "lockdown"
	CheckCapSysBoot       = "cap_sys_boot"
	CheckKexecLoaded      = "kexec_loaded"
	CheckKexecCrashLoaded = "kexec_crash_loaded"
)

// Paths of the files Preflight reads, relative to PreflightOptions.Root.
const (
	pathLoadDisabled = "proc/sys/kernel/kexec_load_disabled"
	pathLoadLimit    = "proc/sys/kernel/kexec_load_limit_reboot"
	pathLockdown     = kexecsys.LockdownPath
	pathStatus       = "proc/self/status"
	pathKexecLoaded  = "sys/kernel/kexec_loaded"
	pathCrashLoaded  = "sys/kernel/kexec_crash_loaded"
)

// capSysBoot is CAP_SYS_BOOT's bit in the capability sets of /proc/PID/status.
const capSysBoot = 22

// PreflightOptions configure Preflight. The zero value checks the running
// system.
type PreflightOptions struct {
	// Root is the directory holding proc/ and sys/; "" means "/".
	Root string
	// Probe tells whether kexec_file_load exists by calling it so that it
	// cannot load anything; it returns the call's error. Nil uses
	// [ProbeKexecFileLoad]. Tests inject a fake.
	Probe func() error
	// RequireLoaded makes the kexec_loaded check fail when no image is
	// loaded (what a reboot needs); otherwise it only reports the state.
	RequireLoaded bool
}

// Check is the outcome of one preflight check.
type Check struct {
	Name string `json:"name"`
	OK   bool   `json:"ok"`
	// Detail says what was found, and for a failed check, why it matters.
	Detail string `json:"detail"`
}

// Report is the outcome of every preflight check.
type Report struct {
	Checks []Check `json:"checks"`
	// Lockdown is the active lockdown mode ("none", "integrity",
	// "confidentiality"), or "" when unknown.
	Lockdown string `json:"lockdown,omitempty"`
	// KexecLoaded and CrashLoaded report whether an image is loaded for
	// reboot and for crash.
	KexecLoaded bool `json:"kexec_loaded"`
	CrashLoaded bool `json:"kexec_crash_loaded"`
}

// OK reports whether every check passed.
func (r Report) OK() bool { return r.Err() == nil }

// Check returns the check with the given name.
func (r Report) Check(name string) (Check, bool) {
	for _, c := range r.Checks {
		if c.Name == name {
			return c, true
		}
	}
	return Check{}, false
}

// Err returns nil if every check passed, otherwise an error wrapping
// ErrPreflight that names each failed check and its detail.
func (r Report) Err() error {
	var failed []string
	for _, c := range r.Checks {
		if !c.OK {
			failed = append(failed, c.Name+": "+c.Detail)
		}
	}
	if len(failed) == 0 {
		return nil
	}
	return fmt.Errorf("%w: %s", ErrPreflight, strings.Join(failed, "; "))
}

// Preflight checks whether this kernel and process can load and boot a kexec
// image with kexec_file_load. It reads, under opts.Root:
//
//   - proc/sys/kernel/kexec_load_limit_reboot (Linux 6.2+): loads left; 0
//     means none until the next boot. Every kexec_file_load call that passes
//     the permission check uses one, failed loads included.
//   - the kexec_file_load probe (opts.Probe): skipped when the limit above is
//     finite, so that preflight never uses up a load.
//   - proc/sys/kernel/kexec_load_disabled: 1 forbids loads until reboot.
//   - sys/kernel/security/lockdown: under "integrity" or "confidentiality"
//     kexec_file_load loads only kernels with a trusted signature and the
//     legacy kexec_load is refused. This does not fail the check (signed
//     distribution kernels load); a load of an unsigned kernel then fails
//     with an error wrapping ErrSignature or ErrNotPermitted.
//   - proc/self/status CapEff: CAP_SYS_BOOT is needed for loads and reboots.
//   - sys/kernel/kexec_loaded and kexec_crash_loaded: what is loaded now.
func Preflight(opts PreflightOptions) Report {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	probe := opts.Probe
	if probe == nil {
		probe = ProbeKexecFileLoad
	}
	var r Report
	add := func(name string, ok bool, format string, args ...any) {
		r.Checks = append(r.Checks, Check{Name: name, OK: ok, Detail: fmt.Sprintf(format, args...)})
	}
	p := func(rel string) string { return filepath.Join(root, rel) }

	// The load limit decides whether probing is safe, so it comes first.
	probeSafe := true
	switch limit, err := readInt(p(pathLoadLimit)); {
	case errors.Is(err, fs.ErrNotExist):
		add(CheckKexecLoadLimit, true, "no limit (%s absent: kernel before 6.2 or without kexec)", p(pathLoadLimit))
	case err != nil:
		probeSafe = false
		add(CheckKexecLoadLimit, false, "%v", err)
	case limit == 0:
		probeSafe = false
		add(CheckKexecLoadLimit, false, "no kexec load left until the next boot (%s = 0)", p(pathLoadLimit))
	case limit < 0:
		add(CheckKexecLoadLimit, true, "unlimited (%d)", limit)
	default:
		probeSafe = false
		add(CheckKexecLoadLimit, true, "%d loads left (every kexec_file_load call past the permission check uses one)", limit)
	}

	if probeSafe {
		ok, detail := judgeProbe(probe())
		add(CheckKexecFileLoad, ok, "%s", detail)
	} else {
		add(CheckKexecFileLoad, true, "not probed: a probe would use up one of the limited kexec loads (see %s)", CheckKexecLoadLimit)
	}

	switch v, err := readInt(p(pathLoadDisabled)); {
	case errors.Is(err, fs.ErrNotExist):
		add(CheckKexecLoadOff, false, "%s absent: kernel without kexec (CONFIG_KEXEC_CORE)", p(pathLoadDisabled))
	case err != nil:
		add(CheckKexecLoadOff, false, "%v", err)
	case v != 0:
		add(CheckKexecLoadOff, false, "kexec loads are disabled until the next boot (%s = %d)", p(pathLoadDisabled), v)
	default:
		add(CheckKexecLoadOff, true, "loads enabled (0)")
	}

	switch b, err := os.ReadFile(p(pathLockdown)); {
	case err != nil:
		add(CheckLockdown, true, "unknown: %v (lockdown LSM absent or securityfs not mounted)", err)
	default:
		mode, err := kexecsys.ParseLockdown(b)
		if err != nil {
			add(CheckLockdown, false, "%s: %v", p(pathLockdown), err)
			break
		}
		r.Lockdown = mode
		if mode == "none" {
			add(CheckLockdown, true, "none")
		} else {
			add(CheckLockdown, true, "%s: kexec_file_load accepts only kernels signed by a trusted key; legacy kexec_load is refused", mode)
		}
	}

	switch has, err := hasCapability(p(pathStatus), capSysBoot); {
	case err != nil:
		add(CheckCapSysBoot, false, "%v", err)
	case !has:
		add(CheckCapSysBoot, false, "CAP_SYS_BOOT not in the effective set (%s CapEff): kexec_file_load and reboot are refused", p(pathStatus))
	default:
		add(CheckCapSysBoot, true, "effective")
	}

	switch v, err := readInt(p(pathKexecLoaded)); {
	case err != nil:
		add(CheckKexecLoaded, false, "%v", err)
	case v == 0:
		add(CheckKexecLoaded, !opts.RequireLoaded, "no image loaded")
	default:
		r.KexecLoaded = true
		add(CheckKexecLoaded, true, "an image is loaded")
	}

	switch v, err := readInt(p(pathCrashLoaded)); {
	case errors.Is(err, fs.ErrNotExist):
		add(CheckKexecCrashLoaded, true, "%s absent: kernel without crash dump support", p(pathCrashLoaded))
	case err != nil:
		add(CheckKexecCrashLoaded, false, "%v", err)
	case v == 0:
		add(CheckKexecCrashLoaded, true, "no crash image loaded")
	default:
		r.CrashLoaded = true
		add(CheckKexecCrashLoaded, true, "a crash image is loaded")
	}
	return r
}

// judgeProbe interprets the error of a kexec_file_load probe. Any answer but
// ENOSYS proves the syscall exists; a permission refusal is reported by the
// cap_sys_boot and kexec_load_disabled checks, not here.
func judgeProbe(err error) (ok bool, detail string) {
	switch {
	case err == nil:
		return true, "present"
	case errors.Is(err, ErrNotSupported):
		// The error names the likely causes (kexecsys).
		return false, fmt.Sprintf("not available: %v", err)
	case errors.Is(err, syscall.ENOSYS):
		return false, fmt.Sprintf("not available: %v (CONFIG_KEXEC_FILE off, an architecture without it, or a seccomp filter answering ENOSYS)", err)
	case errors.Is(err, syscall.EBADF):
		return true, "present"
	case errors.Is(err, syscall.EPERM):
		return true, "present, but this process may not load (EPERM: see cap_sys_boot, kexec_load_disabled, kexec_load_limit_reboot; or a seccomp filter)"
	case errors.Is(err, syscall.EBUSY):
		return true, "present (EBUSY: another load is in progress)"
	default:
		return true, fmt.Sprintf("present (probe returned %v)", err)
	}
}

// readInt reads a file holding one decimal integer, as sysctl and sysfs
// files do. Errors name the file.
func readInt(path string) (int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	v, err := strconv.ParseInt(string(bytes.TrimSpace(b)), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%s: %w", path, err)
	}
	return v, nil
}

// hasCapability reports whether bit capBit is set in the CapEff line of a
// /proc/PID/status file.
func hasCapability(path string, capBit uint) (bool, error) {
	f, err := os.Open(path)
	if err != nil {
		return false, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		v, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		mask, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		if err != nil {
			return false, fmt.Errorf("%s: CapEff: %w", path, err)
		}
		return mask&(1<<capBit) != 0, nil
	}
	if err := sc.Err(); err != nil {
		return false, fmt.Errorf("%s: %w", path, err)
	}
	return false, fmt.Errorf("%s: no CapEff line", path)
}
