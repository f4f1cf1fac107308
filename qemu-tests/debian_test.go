package qemutests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// debianCmdline boots the Debian system's own kernel and initramfs
// directly (QEMU -kernel/-initrd; the image has no boot loader) with its
// root on the virtio disk and a crash reservation of the size the other
// crash tests use.
const debianCmdline = "root=/dev/vda ro crashkernel=" + reserveTwoStage

// debianSystem builds the fastreboot .deb from this tree (nfpm) and the
// Debian bookworm system with it installed (scripts/build-debian-image.sh:
// mmdebstrap's base, cached in FASTREBOOT_CACHE/debian, then
// `apt-get install ./fastreboot_*.deb` in a chroot and update-initramfs
// through the package's trigger), and returns the system's directory
// (disk.img, vmlinuz, initrd.img). It needs root (or sudo) and mmdebstrap
// (scripts/install-deps.sh); without them the test skips, or fails under
// FASTREBOOT_REQUIRE_QEMU=1.
func debianSystem(t *testing.T) string {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		if os.Getenv(harness.EnvRequireQEMU) == "1" {
			t.Fatalf(format, args...)
		}
		t.Skipf(format, args...)
	}
	if _, err := exec.LookPath("sudo"); os.Geteuid() != 0 && err != nil {
		missing("the Debian system image is built as root (mmdebstrap, chroot): not root and no sudo")
	}
	if _, err := exec.LookPath("mmdebstrap"); err != nil {
		missing("mmdebstrap not installed (scripts/install-deps.sh): %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	t0 := time.Now()
	deb, err := harness.BuildDeb(ctx, "", t.TempDir())
	if err != nil {
		t.Fatalf("build the .deb: %v", err)
	}
	t.Logf("built %s in %s", filepath.Base(deb), time.Since(t0).Round(time.Millisecond))
	moduleDir, err := harness.FindModuleDir("")
	if err != nil {
		t.Fatal(err)
	}
	t0 = time.Now()
	cmd := exec.CommandContext(ctx, filepath.Join(filepath.Dir(moduleDir), "scripts", "build-debian-image.sh"), "--deb", deb)
	cmd.Stderr = testLogWriter{}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("scripts/build-debian-image.sh --deb %s: %v", deb, err)
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	dir := lines[len(lines)-1]
	t.Logf("Debian system %s ready in %s", dir, time.Since(t0).Round(time.Millisecond))
	return dir
}

// debianPrompt is the root shell's prompt the image sets up on ttyS0.
var debianPrompt = regexp.MustCompile(`(?m)^\$ `)

// startDebian boots the system on a private copy of its disk and waits for
// the root shell on the serial console;
// allowReboot lets a firmware reboot reset the VM instead of ending QEMU.
func startDebian(t *testing.T, sys string, allowReboot bool) (*harness.VM, string) {
	t.Helper()
	return bootDebian(t, sys, func(disk string) harness.Options {
		return harness.Options{
			Name:   "debian",
			Kernel: filepath.Join(sys, "vmlinuz"), Initrd: filepath.Join(sys, "initrd.img"),
			Cmdline:     debianCmdline,
			Disks:       []harness.Disk{{Path: disk}},
			AllowReboot: allowReboot,
		}
	})
}

// bootDebian boots a copy of the Debian system's disk with the options
// opts gives for it (2 GiB, 2 CPUs and the crash tests' maxcpus added),
// logs where the vCPUs were and the console log's path when the test
// failed, and waits for the root shell. It returns the VM and the disk.
func bootDebian(t *testing.T, sys string, opts func(disk string) harness.Options) (*harness.VM, string) {
	t.Helper()
	disk := filepath.Join(t.TempDir(), "disk.img")
	if out, err := exec.Command("cp", "--sparse=always", filepath.Join(sys, "disk.img"), disk).CombinedOutput(); err != nil {
		t.Fatalf("copy the disk: %v: %s", err, out)
	}
	o := opts(disk)
	o.MemoryMB, o.CPUs, o.MaxCPUs = 2048, 2, harness.CrashVMMaxCPUs
	vm, err := harness.Start(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if st, err := vm.CPUState(); err == nil {
				t.Logf("the VM's vCPUs: %s", st)
			}
			t.Logf("console log: %s", vm.LogPath())
		}
		vm.Close()
	})
	waitDebianShell(t, vm, 6*time.Minute)
	return vm, disk
}

// waitDebianShell waits for the autologin shell's prompt, quiets the
// kernel's console messages (they would mix into command output) and waits
// until systemd has finished the boot (multi-user.target).
func waitDebianShell(t *testing.T, vm *harness.VM, timeout time.Duration) {
	t.Helper()
	if _, err := vm.ExpectRaw(timeout, debianPrompt); err != nil {
		t.Fatalf("no root shell on the console: %v (log %s)", err, vm.LogPath())
	}
	mustRun(t, vm, "dmesg -n 1", time.Minute)
	// The autologin shell comes before the boot is finished: wait for it
	// (running, or degraded when a unit failed: the test's checks say which).
	if _, _, err := vm.Run("systemctl is-system-running --wait", timeout); err != nil {
		t.Fatalf("the boot did not finish: %v (log %s)", err, vm.LogPath())
	}
}

func mustRun(t *testing.T, vm *harness.VM, cmd string, timeout time.Duration) string {
	t.Helper()
	out, err := vm.RunOK(cmd, timeout)
	if err != nil {
		t.Fatalf("%v (log %s)", err, vm.LogPath())
	}
	return strings.TrimSpace(out)
}

// guestJSON runs cmd (which prints one JSON document) and decodes it; text
// before the first '{' or after the last '}' (a console message) is cut.
func guestJSON(t *testing.T, vm *harness.VM, cmd string, v any) {
	t.Helper()
	out := mustRun(t, vm, cmd, 5*time.Minute)
	i, j := strings.Index(out, "{"), strings.LastIndex(out, "}")
	if i < 0 || j < i {
		t.Fatalf("%s printed no JSON: %q", cmd, out)
	}
	if err := json.Unmarshal([]byte(out[i:j+1]), v); err != nil {
		t.Fatalf("%s: %v: %q", cmd, err, out)
	}
}

// debianStatus is what the test reads of `fastreboot status --json`.
type debianStatus struct {
	Generation int    `json:"generation"`
	Reason     string `json:"reason"`
	RebootPath string `json:"reboot_path"`
	Rollback   *struct {
		OnTrial bool `json:"on_trial"`
		Good    *struct {
			Generation int    `json:"generation"`
			By         string `json:"by"`
		} `json:"good"`
	} `json:"rollback"`
	State *struct {
		Carried    int `json:"carried"`
		Rehydrated struct {
			Modules int   `json:"modules"`
			Bytes   int64 `json:"bytes"`
		} `json:"rehydrated"`
	} `json:"state"`
	Agent *struct {
		Cache struct {
			BytesRead       int64 `json:"bytes_read"`
			BytesRehydrated int64 `json:"bytes_rehydrated"`
		} `json:"cache"`
	} `json:"agent"`
	Crash *struct {
		Armed bool   `json:"armed"`
		Mode  string `json:"mode"`
	} `json:"crash"`
	Problems []string `json:"problems"`
}

// debianDiskRead is the bytes the Debian system's root disk (/dev/vda)
// has read since boot: the third field of its /sys/block stat, in
// 512-byte sectors.
func debianDiskRead(t *testing.T, vm *harness.VM) int64 {
	t.Helper()
	out := mustRun(t, vm, "cat /sys/block/vda/stat", time.Minute)
	f := strings.Fields(out)
	if len(f) < 3 {
		t.Fatalf("/sys/block/vda/stat: %q", out)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatalf("/sys/block/vda/stat: %q: %v", out, err)
	}
	return n * 512
}

// TestDebianSystem runs fastreboot as a Debian user would: the .deb
// installed with apt on a Debian bookworm system (systemd, Debian's kernel,
// initramfs-tools with the package's hook, ext4 root on virtio), booted
// cold; an update staged and rebooted through systemd; a crash recovered;
// another update rebooted by kured's reboot command, run as kured runs it.
func TestDebianSystem(t *testing.T) {
	harness.RequireQEMU(t)
	sys := debianSystem(t)
	vm, _ := startDebian(t, sys, false)
	boot := vm.Elapsed()

	// 1. Cold boot: multi-user.target, the daemon running, the crash path
	// armed by fastreboot-crash.service (two-stage, production's initramfs:
	// /etc/default/fastreboot of the test system).
	if s := mustRun(t, vm, "systemctl is-active multi-user.target fastreboot.service", time.Minute); s != "active\nactive" {
		t.Fatalf("after the cold boot: multi-user.target, fastreboot.service: %q", s)
	}
	if out, _, _ := vm.Run("systemctl is-active fastreboot-crash.service || journalctl -b -u fastreboot-crash.service --no-pager | tail -5", 2*time.Minute); !strings.HasPrefix(strings.TrimSpace(out), "active") {
		t.Fatalf("fastreboot-crash.service did not arm: %s", out)
	}
	var st1 debianStatus
	guestJSON(t, vm, "fastreboot status --json", &st1)
	if st1.Generation != 1 || st1.Reason != "cold" || st1.RebootPath != "systemd" || st1.Crash == nil || !st1.Crash.Armed || st1.Crash.Mode != "two-stage" {
		t.Fatalf("generation 1 status: %+v", st1)
	}
	t.Logf("STEP 1 cold boot: QEMU start -> root shell %.1fs; daemon active, crash path armed (%s) by the unit, reboot path %s", boot.Seconds(), st1.Crash.Mode, st1.RebootPath)

	// 2. An update: the initramfs regenerated with a changed file, staged.
	t0 := vm.Elapsed()
	mustRun(t, vm, "echo v2 >/etc/fastreboot-test-release && update-initramfs -u 2>&1 | tail -2", 10*time.Minute)
	t.Logf("update-initramfs -u in the guest took %.1fs", (vm.Elapsed() - t0).Seconds())
	stageCmd := "fastreboot stage --kernel /boot/vmlinuz --initrd /boot/initrd.img --json"
	if out, _, _ := vm.Run("fastreboot help stage 2>&1 | grep -c -- --default", time.Minute); strings.TrimSpace(out) != "0" && strings.TrimSpace(out) != "" {
		stageCmd = "fastreboot stage --default --json"
	}
	var staged struct {
		Sync struct {
			Hits      int   `json:"hits"`
			Misses    int   `json:"misses"`
			BytesRead int64 `json:"bytes_read"`
		} `json:"sync"`
		Loaded bool `json:"loaded"`
	}
	initrdSize, _ := strconv.ParseInt(mustRun(t, vm, "stat -L -c %s /boot/initrd.img", time.Minute), 10, 64)
	kernelSize, _ := strconv.ParseInt(mustRun(t, vm, "stat -L -c %s /boot/vmlinuz", time.Minute), 10, 64)
	// The virtio disk's read counter agrees with the tool: both boot files
	// leave the page cache first (update-initramfs just wrote the new
	// initrd, which would otherwise be read from memory; dd's nocache with
	// count=0 drops a whole file's clean pages), so the disk reads the new
	// initrd and not the unchanged kernel, which would add its bytes.
	const diskSlack = 2 << 20 // ext4 metadata, the stat index, other services
	if kernelSize <= diskSlack {
		t.Fatalf("/boot/vmlinuz is %d bytes: the disk check cannot tell it from the slack of %d", kernelSize, diskSlack)
	}
	mustRun(t, vm, "sync && dd if=/boot/initrd.img iflag=nocache count=0 status=none && dd if=/boot/vmlinuz iflag=nocache count=0 status=none && echo dropped", time.Minute)
	diskBefore := debianDiskRead(t, vm)
	guestJSON(t, vm, stageCmd, &staged)
	disk := debianDiskRead(t, vm) - diskBefore
	if !staged.Loaded || staged.Sync.Misses != 1 || staged.Sync.BytesRead != initrdSize {
		t.Fatalf("stage of the update (%s): %+v; want the new initrd (%d bytes) the only miss", stageCmd, staged, initrdSize)
	}
	if disk < initrdSize*9/10 || disk > initrdSize+diskSlack {
		t.Errorf("the root disk read %d bytes while staging, want the new initrd's %d bytes plus at most %d (the unchanged kernel is %d bytes)", disk, initrdSize, diskSlack, kernelSize)
	}
	t.Logf("STEP 2 update staged with %q: %d hit(s), 1 miss, %d bytes read (the new initrd); the disk read %d bytes (kernel of %d bytes not read)",
		stageCmd, staged.Sync.Hits, staged.Sync.BytesRead, disk, kernelSize)

	// 3. fastreboot reboot through systemd: the marker service's ExecStop
	// runs (services stopped before the jump), the next generation runs the
	// new image and its daemon adopted the cache in the real root.
	// The kernel's and systemd-shutdown's messages on the console again,
	// to see where the shutdown's time goes.
	mustRun(t, vm, "dmesg -n 7", time.Minute)
	if err := vm.SendLine("fastreboot reboot"); err != nil {
		t.Fatal(err)
	}
	if _, err := vm.Expect(3*time.Minute, regexp.MustCompile(`rebooting through kexec with systemctl kexec`)); err != nil {
		t.Fatalf("fastreboot reboot did not go through systemctl kexec: %v", err)
	}
	req := vm.Elapsed()
	if _, err := vm.Expect(5*time.Minute, regexp.MustCompile(`fastreboot-test-marker: written`)); err != nil {
		t.Fatalf("the test service's ExecStop did not run before the kexec: %v", err)
	}
	// The first kexec from the cold boot (gen 1 -> 2) took 8, 20, 52,
	// 19, 96 and 144 s from "kexec_core: Starting new kernel" to the
	// next banner in six runs on one long-running shared host, and once
	// over 300 s; the later kexecs of the same VM took 3-18 s. Where the
	// time goes was not found (a failed wait now logs each vCPU's RIP).
	if _, err := vm.Expect(10*time.Minute, regexp.MustCompile(`Linux version \d`)); err != nil {
		t.Fatalf("no next kernel after systemctl kexec: %v", err)
	}
	kernelAt := vm.Elapsed()
	waitDebianShell(t, vm, 6*time.Minute)
	up := vm.Elapsed()
	if s := mustRun(t, vm, "cat /run/fastreboot-test-release", time.Minute); s != "v2" {
		t.Fatalf("generation 2 booted the initramfs of release %q, want v2", s)
	}
	if s := mustRun(t, vm, "test -s /var/lib/fastreboot-test-marker && echo marker-on-disk", time.Minute); s != "marker-on-disk" {
		t.Fatalf("the marker ExecStop wrote is not on disk: %q", s)
	}
	// Every generation fastreboot boots has the same memory: the cold
	// boot's less the 1 MiB pstore region its images reserve (memmap=).
	memKB2 := mustRun(t, vm, "awk '/MemTotal/{print $2}' /proc/meminfo", time.Minute)
	var st2 debianStatus
	guestJSON(t, vm, "fastreboot status --json", &st2)
	if st2.Generation != 2 || st2.Reason != "update" || st2.State == nil || st2.State.Carried == 0 || st2.State.Rehydrated.Modules != st2.State.Carried {
		t.Fatalf("generation 2 status: %+v (state %+v)", st2, st2.State)
	}
	if st2.Agent == nil || st2.Agent.Cache.BytesRead != 0 || st2.Agent.Cache.BytesRehydrated == 0 {
		t.Fatalf("generation 2's daemon: %+v; want the cache rehydrated with 0 bytes from storage", st2.Agent)
	}
	// The update booted on trial; fastreboot-bless.service blessed it
	// once boot-complete.target was reached.
	if s := mustRun(t, vm, "systemctl is-active fastreboot-bless.service", 2*time.Minute); s != "active" {
		t.Errorf("generation 2: fastreboot-bless.service is %q, want active", s)
	}
	guestJSON(t, vm, "fastreboot status --json", &st2)
	if r := st2.Rollback; r == nil || r.OnTrial || r.Good == nil || r.Good.Generation != 2 {
		t.Errorf("generation 2's boot assessment: %+v; want it blessed by the unit (last-known-good generation 2, not on trial)", st2.Rollback)
	}
	// The daemon keeps its boot record on the disk (for the cold boot
	// after a firmware reboot), in the directory the package created.
	if s := mustRun(t, vm, `cat /var/lib/fastreboot/boot-assessment.json 2>/dev/null | grep -c '"generation": 2' || true`, time.Minute); s == "0" || s == "" {
		t.Errorf("generation 2: /var/lib/fastreboot/boot-assessment.json does not record generation 2 (%q)", s)
	}
	t.Logf("STEP 3 reboot through systemd: request -> next kernel %.1fs, -> root shell %.1fs; generation 2 (update) runs release v2, rehydrated %d modules (%d bytes), 0 bytes read; marker on disk",
		(kernelAt - req).Seconds(), (up - req).Seconds(), st2.State.Rehydrated.Modules, st2.State.Rehydrated.Bytes)

	// 4. A crash: two-stage recovery through the initramfs hook.
	if s := mustRun(t, vm, "systemctl is-active fastreboot-crash.service; cat /sys/kernel/kexec_crash_loaded", 2*time.Minute); s != "active\n1" {
		t.Fatalf("generation 2: the unit did not re-arm the crash path: %q", s)
	}
	mustRun(t, vm, "dmesg -n 7", time.Minute)
	if err := vm.SendLine("echo c >/proc/sysrq-trigger"); err != nil {
		t.Fatal(err)
	}
	crashAt := vm.Elapsed()
	if _, err := vm.Expect(5*time.Minute, regexp.MustCompile(`fastreboot: crash recover`)); err != nil {
		t.Fatalf("the crash kernel's initramfs did not run crash recover: %v", err)
	}
	if _, err := vm.Expect(10*time.Minute, regexp.MustCompile(`Linux version \d`)); err != nil {
		t.Fatalf("no production kernel after the crash kernel: %v", err)
	}
	waitDebianShell(t, vm, 6*time.Minute)
	back := vm.Elapsed()
	if s := mustRun(t, vm, "systemctl is-active multi-user.target fastreboot.service fastreboot-crash.service; nproc", 3*time.Minute); s != "active\nactive\nactive\n2" {
		t.Fatalf("after the crash: %q; want multi-user.target, the daemon and the crash unit active and 2 CPUs", s)
	}
	memKB3 := mustRun(t, vm, "awk '/MemTotal/{print $2}' /proc/meminfo", time.Minute)
	if memKB3 != memKB2 {
		t.Errorf("MemTotal %s kB after the crash, %s kB before it", memKB3, memKB2)
	}
	var st3 debianStatus
	guestJSON(t, vm, "fastreboot status --json", &st3)
	if st3.Generation != 3 || st3.Reason != "crash" || st3.Crash == nil || !st3.Crash.Armed {
		t.Fatalf("generation 3 status: %+v", st3)
	}
	last := mustRun(t, vm, "fastreboot crash last", time.Minute)
	if !strings.Contains(last, "sysrq") && !strings.Contains(last, "SysRq") {
		t.Errorf("fastreboot crash last does not show the sysrq panic:\n%s", last)
	}
	fmt.Fprintf(testLogWriter{}, "fastreboot crash last:\n%s\n", last)
	t.Logf("STEP 4 crash: echo c -> production root shell %.1fs; generation 3 (crash), re-armed by the unit, MemTotal %s kB as before the crash", (back - crashAt).Seconds(), memKB3)

	// 5. kured's reboot command: another update, then the package's
	// /usr/lib/fastreboot/kured-reboot run as kured runs it, from another
	// mount namespace (its privileged hostPID pod) through
	// `/usr/bin/nsenter -m/proc/1/ns/mnt -- WORDS`. In that "pod" namespace
	// /usr/lib/fastreboot is an empty tmpfs (nothing of fastreboot is in
	// kured's image): the script runs only because nsenter enters PID 1's.
	// Its output goes to a file, as kured collects it; what it did is read
	// in the next generation.
	t0 = vm.Elapsed()
	mustRun(t, vm, "echo v3 >/etc/fastreboot-test-release && update-initramfs -u 2>&1 | tail -2", 10*time.Minute)
	updated := vm.Elapsed() - t0
	kured := func(redirect string) string {
		return `unshare -m --propagation private sh -c 'mount -t tmpfs kured-pod /usr/lib/fastreboot && test ! -e /usr/lib/fastreboot/kured-reboot && test "$(readlink /proc/self/ns/mnt)" != "$(readlink /proc/1/ns/mnt)" && exec /usr/bin/nsenter -m/proc/1/ns/mnt -- "$@"' kured-pod /usr/lib/fastreboot/kured-reboot` + redirect
	}
	// The failure path first, without a reboot: the default entry's
	// initrd missing, stage --default fails, the script exits 1 and the
	// machine keeps running generation 3 with nothing staged.
	loadedBefore := mustRun(t, vm, "cat /sys/kernel/kexec_loaded", time.Minute)
	hidden := mustRun(t, vm, `i=$(readlink -f /boot/initrd.img) && mv "$i" "$i.kured-test" && echo "$i"`, time.Minute)
	out, code, err := vm.Run(kured(""), 5*time.Minute)
	if err != nil {
		t.Fatalf("kured's reboot command with the default entry's initrd missing: %v (log %s)", err, vm.LogPath())
	}
	fmt.Fprintf(testLogWriter{}, "kured-reboot with %s missing, exit status %d:\n%s\n", hidden, code, strings.TrimSpace(out))
	if code != 1 || !strings.Contains(out, hidden) || !strings.Contains(out, "stage --default failed") || !strings.Contains(out, "no reboot") {
		t.Fatalf("kured's reboot command with the default entry's initrd %s missing: exit status %d, want 1 (stage failed naming it, no reboot):\n%s", hidden, code, out)
	}
	mustRun(t, vm, `mv "`+hidden+`.kured-test" "`+hidden+`"`, time.Minute)
	if s := mustRun(t, vm, "cat /sys/kernel/kexec_loaded", time.Minute); s != loadedBefore {
		t.Fatalf("after the failed kured reboot command /sys/kernel/kexec_loaded is %s, was %s", s, loadedBefore)
	}
	var stFail debianStatus
	guestJSON(t, vm, "fastreboot status --json", &stFail)
	if stFail.Generation != 3 {
		t.Fatalf("after the failed kured reboot command the machine runs generation %d, want 3 (no reboot)", stFail.Generation)
	}
	// The success path: the marker removed first, so that finding it
	// again proves this shutdown's ExecStop.
	mustRun(t, vm, "rm -f /var/lib/fastreboot-test-marker /var/lib/kured-reboot.log && sync && dmesg -n 7", time.Minute)
	if err := vm.SendLine(kured(` >/var/lib/kured-reboot.log 2>&1; echo "kured-reboot exit $?" >>/var/lib/kured-reboot.log`)); err != nil {
		t.Fatal(err)
	}
	req = vm.Elapsed()
	if _, err := vm.Expect(8*time.Minute, regexp.MustCompile(`Linux version \d`)); err != nil {
		t.Fatalf("no next kernel after kured's reboot command: %v", err)
	}
	kernelAt = vm.Elapsed()
	waitDebianShell(t, vm, 6*time.Minute)
	up = vm.Elapsed()
	if s := mustRun(t, vm, "cat /run/fastreboot-test-release", time.Minute); s != "v3" {
		t.Fatalf("generation 4 booted the initramfs of release %q, want v3 (the default entry's, updated)", s)
	}
	if s := mustRun(t, vm, "test -s /var/lib/fastreboot-test-marker && echo marker-on-disk", time.Minute); s != "marker-on-disk" {
		t.Fatalf("kured's reboot command did not go through systemd: the marker service's ExecStop wrote nothing (%q)", s)
	}
	klog := mustRun(t, vm, "cat /var/lib/kured-reboot.log", time.Minute)
	fmt.Fprintf(testLogWriter{}, "kured-reboot's output, read in generation 4:\n%s\n", klog)
	for _, want := range []string{"staging the default boot entry", "default boot entry: debian (debian-links)", "rebooting with"} {
		if !strings.Contains(klog, want) {
			t.Errorf("kured-reboot's output (written before the reboot, read in generation 4) lacks %q:\n%s", want, klog)
		}
	}
	// The script's exit status is written after it returns, while systemd
	// shuts down: mostly the console's shell is stopped first and nothing
	// lands; once it was 129, the script killed by SIGHUP as the console
	// went away after it had asked for the reboot. Only its own failure
	// statuses (1, 2, 127: docs/distro.md) contradict the reboot.
	if i := strings.Index(klog, "kured-reboot exit "); i >= 0 {
		var code int
		fmt.Sscanf(klog[i:], "kured-reboot exit %d", &code)
		if code == 1 || code == 2 || code == 127 {
			t.Errorf("kured-reboot exited %d, a failure, and the machine rebooted anyway:\n%s", code, klog)
		}
	}
	var st4 debianStatus
	guestJSON(t, vm, "fastreboot status --json", &st4)
	if st4.Generation != 4 || st4.Reason != "update" || st4.State == nil || st4.State.Carried == 0 || st4.State.Rehydrated.Modules != st4.State.Carried {
		t.Fatalf("generation 4 status: %+v (state %+v)", st4, st4.State)
	}
	if st4.Agent == nil || st4.Agent.Cache.BytesRead != 0 || st4.Agent.Cache.BytesRehydrated == 0 {
		t.Fatalf("generation 4's daemon: %+v; want the cache rehydrated with 0 bytes from storage", st4.Agent)
	}
	t.Logf("STEP 5 kured's reboot command (%.0fs in all): update-initramfs %.1fs; with the initrd missing it exits 1, kexec_loaded %s as before, generation 3 runs on; from kured's pod namespace through nsenter: request -> next kernel %.1fs, -> root shell %.1fs; generation 4 (update) runs release v3, marker on disk, rehydrated %d modules (%d bytes), 0 bytes read",
		(vm.Elapsed() - t0).Seconds(), updated.Seconds(), loadedBefore, (kernelAt - req).Seconds(), (up - req).Seconds(), st4.State.Rehydrated.Modules, st4.State.Rehydrated.Bytes)
}
