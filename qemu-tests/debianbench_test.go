package qemutests

import (
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// TestDebianRebootBench measures, on the Debian system of TestDebianSystem
// and in one VM, request -> multi-user.target (systemctl
// is-system-running --wait returns in the next boot) for three reboots:
// through the firmware (systemctl reboot: QEMU resets, SeaBIOS boots the
// GRUB disk of debianGrubDisk and GRUB loads /boot/vmlinuz and
// /boot/initrd.img from the root disk again, as on a machine), systemctl
// kexec with kexec-tools' image (kexec -l --reuse-cmdline), and fastreboot
// (stage --default, fastreboot reboot, itself through systemctl kexec).
// The cold boot goes through SeaBIOS and GRUB too. Not part of the suite:
// run it with FASTREBOOT_DEBIAN_BENCH=1.
func TestDebianRebootBench(t *testing.T) {
	if os.Getenv("FASTREBOOT_DEBIAN_BENCH") != "1" {
		t.Skip("set FASTREBOOT_DEBIAN_BENCH=1 to run the Debian reboot bench")
	}
	harness.RequireQEMU(t)
	sys := debianSystem(t)
	vm := startDebianGrub(t, sys)
	banner := regexp.MustCompile(`Linux version \d`)
	type row struct {
		name            string
		stage           time.Duration
		kernel, userMUT time.Duration
	}
	var rows []row
	reboot := func(name, stageCmd, rebootCmd string) {
		t.Helper()
		var stage time.Duration
		if stageCmd != "" {
			t0 := vm.Elapsed()
			mustRun(t, vm, stageCmd, 10*time.Minute)
			stage = vm.Elapsed() - t0
		}
		if err := vm.SendLine(rebootCmd); err != nil {
			t.Fatal(err)
		}
		req := vm.Elapsed()
		if _, err := vm.Expect(10*time.Minute, banner); err != nil {
			t.Fatalf("%s: no next kernel: %v", name, err)
		}
		k := vm.Elapsed() - req
		waitDebianShell(t, vm, 10*time.Minute)
		rows = append(rows, row{name, stage, k, vm.Elapsed() - req})
		t.Logf("%s: staging %.1fs, request -> kernel %.1fs, request -> multi-user.target %.1fs", name, stage.Seconds(), k.Seconds(), (vm.Elapsed() - req).Seconds())
	}
	reboot("firmware (systemctl reboot: SeaBIOS, GRUB)", "", "systemctl reboot")
	reboot("systemctl kexec, kexec-tools' image", "kexec -l /boot/vmlinuz --initrd=/boot/initrd.img --reuse-cmdline", "systemctl kexec")
	reboot("fastreboot (systemctl kexec)", "fastreboot stage --default", "fastreboot reboot")
	var b strings.Builder
	fmt.Fprintln(&b, "| reboot | staging | request -> kernel | request -> multi-user.target |")
	fmt.Fprintln(&b, "|---|---|---|---|")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %.1f | %.1f | %.1f |\n", r.name, r.stage.Seconds(), r.kernel.Seconds(), r.userMUT.Seconds())
	}
	t.Logf("Debian reboot bench (seconds, QEMU TCG):\n%s", b.String())
}
