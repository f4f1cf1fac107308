// Package cpustop decides what happens to the other CPUs when fastreboot
// jumps into the next kernel, and checks afterwards that they all came back.
//
// It reads the CPU topology from sysfs and procfs under an injectable root
// (Options.Root): the possible, present and online CPU lists, each online
// CPU's APIC id from /proc/cpuinfo, which CPUs can be hot-unplugged (those
// with a cpuN/online file), the boot CPU and the CPU the kernel will run the
// kexec on.
//
// # Where the kernel stops CPUs itself
//
// What the Linux 6.1 source does on reboot(LINUX_REBOOT_CMD_KEXEC):
//
//   - kernel/kexec_core.c kernel_kexec() calls migrate_to_reboot_cpu()
//     (kernel/reboot.c), which pins the rebooting task to reboot_cpu (0
//     unless reboot=s<N> or /sys/kernel/reboot/cpu says otherwise; "the
//     boot cpu is always logical cpu 0") and, when that CPU is offline, to
//     the first online CPU. Then it calls machine_shutdown().
//   - On x86, machine_shutdown() is native_machine_shutdown()
//     (arch/x86/kernel/reboot.c): it disables the IO-APIC, then
//     stop_other_cpus() (native_stop_other_cpus: REBOOT_VECTOR IPI, NMI
//     as a fallback) parks every other CPU, then the local APIC is shut
//     down. The next kernel wakes the CPUs again with INIT/STARTUP IPIs.
//   - On arm64 and riscv, machine_shutdown() calls
//     smp_shutdown_nonboot_cpus(reboot_cpu) (kernel/cpu.c), a real
//     hot-unplug of every CPU but the reboot CPU.
//
// So PolicyKernel (the default) does nothing: offlining CPUs from user space
// before a kexec buys nothing on x86 and costs time. PolicyHotplug exists
// for hardware or hypervisors where parking in the kernel is not enough: it
// offlines every online secondary through sysfs, from a thread pinned to the
// boot CPU, and puts them back if anything fails or the reboot is aborted.
//
// # Crash path
//
// A panic stops the other CPUs with an NMI (nmi_shootdown_cpus): they halt
// in the crashed kernel's NMI handler, and the crash kernel starts on the
// CPU that panicked. Nothing here runs then; pkg/crashhandler decides the
// crash kernel's CPU words. Its two-stage crash kernel brings every CPU up
// (INIT/SIPI takes them back from the crashed kernel) rather than running
// with nr_cpus=1, and neither mode passes disable_cpu_apicid=: the next
// production kernel must wake the real boot CPU too, or the machine runs
// short of it until a firmware reboot.
//
// # After the jump
//
// Before the jump, Topology.Record says which CPUs were online (logical ids
// and APIC ids); the handoff carries it. In the next generation Compare
// lists the CPUs that did not come back, and Report.Err makes
// "fastreboot status --check" fail.
package cpustop
