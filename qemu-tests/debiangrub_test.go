package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// grubDir is grub-pc-bin's module directory: GRUB for a BIOS (SeaBIOS).
const grubDir = "/usr/lib/grub/i386-pc"

// debianGrubDisk writes a boot disk that SeaBIOS boots as a machine's
// firmware boots its disk: GRUB's boot.img in sector 0 and at sector 1 a
// core image (grub-mkimage from grub-pc-bin), with no partition table.
// boot.img's defaults read the core image from sector 1 with the drive the
// BIOS booted from, and the core image's first sector (diskboot) reads the
// rest from sector 2 on, the length grub-mkimage wrote into it: no
// grub-install or loop device is needed. The core image's embedded config
// logs to the serial console, finds the disk that holds /boot/vmlinuz (the
// Debian system's root) and boots its kernel and initrd with cmdline, as
// a grub.cfg entry would (GRUB adds BOOT_IMAGE=).
func debianGrubDisk(t *testing.T, cmdline string) string {
	t.Helper()
	if _, err := exec.LookPath("grub-mkimage"); err != nil {
		if os.Getenv(harness.EnvRequireQEMU) == "1" {
			t.Fatalf("grub-mkimage (grub-pc-bin, scripts/install-deps.sh) is not installed: %v", err)
		}
		t.Skipf("grub-mkimage (grub-pc-bin, scripts/install-deps.sh) is not installed: %v", err)
	}
	dir := t.TempDir()
	cfg := filepath.Join(dir, "early.cfg")
	if err := os.WriteFile(cfg, []byte(strings.Join([]string{
		"serial --unit=0 --speed=115200",
		"terminal_input serial",
		"terminal_output serial",
		"echo fastreboot-test: GRUB loading /boot/vmlinuz",
		"search --no-floppy --set=root --file /boot/vmlinuz",
		"linux /boot/vmlinuz " + cmdline,
		"initrd /boot/initrd.img",
		"boot",
	}, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	core := filepath.Join(dir, "core.img")
	mods := []string{"biosdisk", "ext2", "linux", "search", "search_fs_file", "serial", "terminal", "echo", "boot"}
	args := append([]string{"-O", "i386-pc", "-d", grubDir, "-o", core, "-c", cfg, "-p", "/boot/grub"}, mods...)
	if out, err := exec.Command("grub-mkimage", args...).CombinedOutput(); err != nil {
		t.Fatalf("grub-mkimage %s: %v: %s", strings.Join(args, " "), err, out)
	}
	bootImg, err := os.ReadFile(filepath.Join(grubDir, "boot.img"))
	if err != nil {
		t.Fatal(err)
	}
	coreImg, err := os.ReadFile(core)
	if err != nil {
		t.Fatal(err)
	}
	disk := make([]byte, 1<<20)
	if len(bootImg) != 512 || 512+len(coreImg) > len(disk) {
		t.Fatalf("boot.img is %d bytes (want 512), core.img %d (want at most %d)", len(bootImg), len(coreImg), len(disk)-512)
	}
	copy(disk, bootImg)
	copy(disk[512:], coreImg)
	p := filepath.Join(dir, "grub-boot.img")
	if err := os.WriteFile(p, disk, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// startDebianGrub boots the Debian system as a machine boots: no -kernel,
// SeaBIOS boots debianGrubDisk (the second virtio disk, so that the root
// disk stays /dev/vda) and GRUB loads the root disk's /boot/vmlinuz and
// /boot/initrd.img. A firmware reboot goes the same way again.
func startDebianGrub(t *testing.T, sys string) *harness.VM {
	t.Helper()
	boot := debianGrubDisk(t, harness.DefaultCmdline+" "+debianCmdline)
	vm, _ := bootDebian(t, sys, func(disk string) harness.Options {
		return harness.Options{
			Name:        "debian-grub",
			Disks:       []harness.Disk{{Path: disk, BootOrder: 2}, {Path: boot, BootOrder: 1}},
			AllowReboot: true,
		}
	})
	return vm
}
