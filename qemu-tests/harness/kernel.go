package harness

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// Environment variables read by the harness.
const (
	EnvKernel      = "FASTREBOOT_KERNEL"
	EnvKmods       = "FASTREBOOT_KMODS"
	EnvCache       = "FASTREBOOT_CACHE"
	EnvQEMU        = "FASTREBOOT_QEMU"
	EnvAccel       = "FASTREBOOT_QEMU_ACCEL"
	EnvTrace       = "FASTREBOOT_QEMU_TRACE"
	EnvDebug       = "FASTREBOOT_QEMU_DEBUG"
	EnvLogDir      = "FASTREBOOT_LOGDIR"
	EnvRequireQEMU = "FASTREBOOT_REQUIRE_QEMU"
)

// DefaultQEMU is the QEMU binary used when FASTREBOOT_QEMU is unset.
const DefaultQEMU = "qemu-system-x86_64"

// ErrNoKernel means no test kernel was found: neither FASTREBOOT_KERNEL nor a
// download by scripts/fetch-kernel.sh.
var ErrNoKernel = errors.New("no test kernel")

// Kernel is a kernel image with its modules, as unpacked from a distribution
// package.
type Kernel struct {
	// Vmlinuz is the bzImage path.
	Vmlinuz string
	// Version is the release (uname -r), e.g. "6.1.0-56-amd64".
	Version string
	// ModulesDir is lib/modules/<Version>, holding kernel/ and modules.dep.
	ModulesDir string
}

// CacheDir returns FASTREBOOT_CACHE, or ~/.cache/fastreboot.
func CacheDir() (string, error) {
	if d := os.Getenv(EnvCache); d != "" {
		return d, nil
	}
	d, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("cache dir: %w", err)
	}
	return filepath.Join(d, "fastreboot"), nil
}

// FindKernel returns the kernel named by FASTREBOOT_KERNEL (its modules in
// FASTREBOOT_KMODS, else lib/modules/<ver> next to it as in an unpacked
// package), or else the one scripts/fetch-kernel.sh put in the cache
// (<cache>/kernel/current). The error wraps ErrNoKernel when none is there.
func FindKernel() (*Kernel, error) {
	if v := os.Getenv(EnvKernel); v != "" {
		return kernelFromEnv(v, os.Getenv(EnvKmods))
	}
	cache, err := CacheDir()
	if err != nil {
		return nil, err
	}
	return KernelFromDir(filepath.Join(cache, "kernel", "current"))
}

func kernelFromEnv(vmlinuz, kmods string) (*Kernel, error) {
	if _, err := os.Stat(vmlinuz); err != nil {
		return nil, fmt.Errorf("%w: %s=%s: %w", ErrNoKernel, EnvKernel, vmlinuz, err)
	}
	if kmods == "" {
		// boot/vmlinuz-VER in an unpacked package: modules at ../lib/modules/VER.
		ver := strings.TrimPrefix(filepath.Base(vmlinuz), "vmlinuz-")
		kmods = filepath.Join(filepath.Dir(filepath.Dir(vmlinuz)), "lib", "modules", ver)
		if ver == filepath.Base(vmlinuz) {
			return nil, fmt.Errorf("%w: %s=%s: set %s to its lib/modules/<version> dir", ErrNoKernel, EnvKernel, vmlinuz, EnvKmods)
		}
	}
	if _, err := os.Stat(filepath.Join(kmods, "modules.dep")); err != nil {
		return nil, fmt.Errorf("%w: %s=%s: no modules.dep (run depmod -b): %w", ErrNoKernel, EnvKmods, kmods, err)
	}
	return &Kernel{Vmlinuz: vmlinuz, Version: filepath.Base(filepath.Clean(kmods)), ModulesDir: kmods}, nil
}

// KernelFromDir returns the kernel in dir, an unpacked kernel package as
// written by scripts/fetch-kernel.sh (boot/vmlinuz-VER, lib/modules/VER with
// modules.dep).
func KernelFromDir(dir string) (*Kernel, error) {
	if _, err := os.Stat(filepath.Join(dir, ".complete")); err != nil {
		return nil, fmt.Errorf("%w in %s (run scripts/fetch-kernel.sh): %w", ErrNoKernel, dir, err)
	}
	matches, err := filepath.Glob(filepath.Join(dir, "boot", "vmlinuz-*"))
	if err != nil || len(matches) == 0 {
		return nil, fmt.Errorf("%w: no boot/vmlinuz-* in %s", ErrNoKernel, dir)
	}
	if len(matches) > 1 {
		return nil, fmt.Errorf("%w: several kernels in %s: %v", ErrNoKernel, dir, matches)
	}
	return kernelFromEnv(matches[0], "")
}

// QEMUBinary returns FASTREBOOT_QEMU or DefaultQEMU.
func QEMUBinary() string {
	if q := os.Getenv(EnvQEMU); q != "" {
		return q
	}
	return DefaultQEMU
}

// CheckQEMU reports whether QEMU and the host tools the harness runs
// (mke2fs) are installed.
func CheckQEMU() error {
	var missing []string
	for _, tool := range []string{QEMUBinary(), "mke2fs"} {
		if _, err := lookTool(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("not installed: %s (run scripts/install-deps.sh)", strings.Join(missing, ", "))
	}
	return nil
}

// lookTool finds a tool in PATH or in the sbin directories a non-root PATH
// often lacks (mke2fs, depmod live there on Debian).
func lookTool(name string) (string, error) {
	p, err := exec.LookPath(name)
	if err == nil {
		return p, nil
	}
	if !strings.Contains(name, "/") {
		for _, dir := range []string{"/usr/sbin", "/sbin"} {
			c := filepath.Join(dir, name)
			if fi, serr := os.Stat(c); serr == nil && fi.Mode().IsRegular() && fi.Mode()&0o111 != 0 {
				return c, nil
			}
		}
	}
	return "", err
}

// Required reports whether FASTREBOOT_REQUIRE_QEMU asks missing QEMU
// prerequisites to fail tests rather than skip them.
func Required() bool {
	v := os.Getenv(EnvRequireQEMU)
	return v != "" && v != "0" && v != "false"
}

// RequireQEMU skips t, printing why, when QEMU or mke2fs is missing; with
// FASTREBOOT_REQUIRE_QEMU=1 it fails t instead. Under go test -short it
// always skips: "go test -short ./..." runs the tests that need no QEMU.
func RequireQEMU(t testing.TB) {
	t.Helper()
	skipShort(t)
	if err := CheckQEMU(); err != nil {
		missing(t, "QEMU tests: %v", err)
	}
}

// RequireKernel returns the test kernel (see FindKernel), or skips t with the
// reason (fails it with FASTREBOOT_REQUIRE_QEMU=1).
func RequireKernel(t testing.TB) *Kernel {
	t.Helper()
	skipShort(t)
	k, err := FindKernel()
	if err != nil {
		missing(t, "QEMU tests: %v", err)
	}
	return k
}

func skipShort(t testing.TB) {
	t.Helper()
	if testing.Short() {
		t.Skip("QEMU tests: skipped under -short")
	}
}

func missing(t testing.TB, format string, args ...any) {
	t.Helper()
	if Required() {
		t.Fatalf(format+" (failing: %s is set)", append(args, EnvRequireQEMU)...)
	}
	t.Skipf(format+" (skipping; set %s=1 to fail instead)", append(args, EnvRequireQEMU)...)
}
