package cli

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// How `fastreboot reboot` reboots (status says which).
const (
	// rebootViaSystemd: systemd runs the system, and `systemctl kexec`
	// stops the services and unmounts the file systems before systemd's
	// shutdown calls reboot(LINUX_REBOOT_CMD_KEXEC) with the loaded image.
	// systemctl loads an image of its own only when none is loaded: in
	// systemd v252 (Debian bookworm) load_kexec_kernel() in
	// src/systemctl/systemctl-start-special.c returns at once when
	// /sys/kernel/kexec_loaded is 1, before it looks for kexec-tools or a
	// boot entry; systemd-shutdown then runs `kexec -e` (or reboot(2)
	// itself without kexec-tools), which jumps into what is loaded.
	rebootViaSystemd = "systemd"
	// rebootDirect: sync(2), then reboot(2) at once, from this process:
	// an initramfs or u-root system without a service manager, or
	// `reboot --force`.
	rebootDirect = "direct"
)

// rebootPath says which way a reboot goes on the system under root:
// rebootViaSystemd when systemd is the service manager
// (root/run/systemd/system exists, sd_booted(3)'s test), else rebootDirect.
func rebootPath(root string) string {
	if fi, err := os.Stat(filepath.Join(root, "run/systemd/system")); err == nil && fi.IsDir() {
		return rebootViaSystemd
	}
	return rebootDirect
}

// runSystemctl runs systemctl with args, its output on stderr.
func runSystemctl(ctx context.Context, e *env, args ...string) error {
	if e.cfg.systemctl != nil {
		return e.cfg.systemctl(ctx, args...)
	}
	cmd := exec.CommandContext(ctx, "systemctl", args...)
	cmd.Stdout, cmd.Stderr = e.stderr, e.stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("systemctl %v: %w", args, err)
	}
	return nil
}
