// Package harness builds boot images for and drives QEMU guests running a real
// Debian kernel, so fastreboot's integration tests (and the demo) can boot,
// kexec and crash a machine and read the story back from its serial console.
//
// The pieces follow the guest layout in the project's contracts: a compressed
// u-root "base" initramfs ([BuildBase]: init, the gosh shell, core commands,
// the guest helper frguest as uinit, optionally the fastreboot CLI), a
// "kmods" piece with the kernel modules the guest needs and their load order
// ([BuildKmods]; [BuildKmodsOnDisk] also holds modules it does not load), a tiny "site" piece ([BuildSite]), concatenated like the
// kernel expects ([Concat]); an ext4 storage disk ([BuildDisk]); and a VM
// runner ([Start]; [StartBoot] and [StartBootT] also wait for the cold
// boot, retrying once on a fresh QEMU if its console stalls before
// userspace): [VM.WaitBoot] waits for frguest's ready marker and the shell
// (call it again after a kexec for the next generation), [VM.WaitReboot]
// waits for the generation a reboot brings up and proves the jump by the
// next kernel's banner, not by the old generation's last line (a kexec may
// take that line with it: it only dates the request when it arrived),
// [VM.Run] runs a shell command and returns its output and exit status,
// [VM.Expect] waits for a console line, [VM.Monitor] sends QEMU monitor
// commands (nmi, system_reset, quit), and every console line carries the
// host time since QEMU started ([VM.LineTime], [Boot]) for phase timings.
// The console log (timestamped) is kept in [LogDir] and shown when a test
// fails; QEMU's debug log (every CPU reset with the registers of the CPU
// reset, triple faults, guest errors) is kept next to it ([DebugLogPath]),
// and a triple fault is named in the console log when QEMU exits.
//
// Tests call [RequireQEMU] and [RequireKernel] first: without QEMU or a kernel
// they skip with the reason, unless FASTREBOOT_REQUIRE_QEMU=1 (CI), where a
// missing piece fails the test. scripts/install-deps.sh and
// scripts/fetch-kernel.sh provide both.
//
// Environment:
//
//	FASTREBOOT_KERNEL      vmlinuz to boot (with FASTREBOOT_KMODS its lib/modules/<ver> dir)
//	FASTREBOOT_CACHE       cache dir (default ~/.cache/fastreboot): kernel/, base/
//	FASTREBOOT_QEMU        QEMU binary (default qemu-system-x86_64)
//	FASTREBOOT_QEMU_ACCEL  accelerator (default "tcg,thread=single", see DefaultAccel; "tcg" for multi-threaded TCG, "kvm" where /dev/kvm exists)
//	FASTREBOOT_QEMU_DEBUG  more QEMU -d log items (e.g. "int": every interrupt and exception with the CPU state; large)
//	FASTREBOOT_QEMU_TRACE  comma-separated QEMU trace-event patterns (e.g. "apic_*,apm_io_write") written to the QEMU debug log
//	FASTREBOOT_LOGDIR      where console logs are kept (default $TMPDIR/fastreboot-qemu-logs)
//	FASTREBOOT_REQUIRE_QEMU=1  fail instead of skip when QEMU or the kernel is missing
package harness
