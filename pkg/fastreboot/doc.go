// Package fastreboot stages a verified boot image with kexec_file_load(2) and
// reboots into it with reboot(LINUX_REBOOT_CMD_KEXEC), carrying the module
// cache and a small state record (the handoff) into the next kernel.
//
// The update path has three steps:
//
//   - [Preflight] reports, check by check, whether this kernel and this
//     process can kexec at all: the kexec_file_load syscall, the
//     kernel.kexec_load_disabled and kernel.kexec_load_limit_reboot
//     sysctls, the lockdown mode, CAP_SYS_BOOT, and whether an image is
//     loaded already. Every /proc and /sys read goes through a root
//     directory so that tests run against fake trees.
//
//   - [Machine.Stage] makes every module of a [bootimage.Manifest] cached
//     (reading from storage only the modules whose digest is new), builds
//     the initrd in one new memfd (the initrd pieces in manifest order, each
//     padded to 4 bytes, followed by the handoff piece), seals it, and only
//     then calls kexec_file_load with the cached kernel's sealed memfd.
//     Nothing is loaded before the image is complete, and the kernel
//     replaces a previously loaded image atomically, so a failed Stage
//     leaves the previous image in place.
//
//   - [Machine.Reboot] syncs file systems and jumps, or follows an explicit
//     fallback policy when no image is loaded: refuse (the default) or
//     reboot through the firmware and log why.
//
// The handoff is one more uncompressed newc cpio piece, appended last to the
// initrd. The next kernel unpacks it into its rootfs as
// fastreboot/handoff.json (see [Handoff]: generation, reason, timeline,
// manifest) and fastreboot/modules/<sha256>, one file per carried module.
// [Resume] reads it in the next generation, rehydrates the module cache from
// the carried files (reading no storage), and saves the generation's
// [State] for status queries. A boot without a handoff is generation 1 with
// reason "cold".
//
// The other CPUs: RebootOptions.StopCPUs picks what [Machine.Reboot] does with
// them right before reboot(LINUX_REBOOT_CMD_KEXEC). [cpustop.PolicyKernel]
// (the default) does nothing, since the kernel parks them itself during the
// kexec; [cpustop.PolicyHotplug] takes every secondary CPU offline through
// sysfs first and brings them all back if that fails part-way or the reboot
// call returns. Stage records the CPUs online in the handoff (at stage time,
// since the handoff is sealed into the image then); the next generation's
// Resume compares them with the CPUs online and [State].CPUs says which did
// not come back.
//
// StageOptions.Load chooses how the image is loaded. [LoadFile] (the default)
// uses kexec_file_load: at reboot the purgatory hashes every segment and the
// bzImage decompresses itself, inside the downtime. [LoadSegments] uses the
// legacy kexec_load with the kernel decompressed ahead of time and cached as
// a module of its own whose digest is recorded ([KernelELF]; the handoff
// carries the digest, and the next generation derives the ELF again from
// the bzImage outside the downtime, [Machine.PrepareKernelELF]); the
// segments go into RAM of the firmware memory map, clear of the crash kernel
// reservation and of regions kept with memmap=, and u-root's purgatory jumps
// into the kernel's 64-bit entry without hashing. The kernel forbids
// kexec_load under lockdown: LoadSegments then fails with
// [ErrKexecLoadForbidden] and never falls back to LoadFile by itself.
//
// The syscalls (kexec_file_load, kexec_load, reboot, sync, memfd_create, fcntl seals,
// copy_file_range) are Linux-only; on other systems the package builds, the
// real [Loader] and [Rebooter] return [ErrNotSupported], and the initrd is
// assembled in an unlinked temporary file.
package fastreboot
