// Package crashhandler prepares and runs the crash path of fastreboot: it arms
// an on-crash kexec image (kexec_file_load with KEXEC_FILE_ON_CRASH) so that a
// kernel panic jumps into a new kernel instead of hanging or going through
// firmware, and in that new kernel it reads what the crashed kernel left
// behind.
//
// The pieces, in the order a system uses them:
//
//   - [memmap.ReadFirmware] records the firmware memory map while the system
//     is healthy. After a crash every later kernel inherits the crash kernel's
//     restricted map through kexec, so the recorded map is handed on and turned
//     into memmap=exactmap words ([memmap.Map.CmdlineWords]).
//   - [RequiredReservation] says how large the crashkernel= reservation must be
//     for an image and a [Mode]; [Arm] refuses with [ErrNoReservation] or
//     [ErrReservationTooSmall] (with the crashkernel= value to use) before it
//     touches anything.
//   - [CrashCmdline] derives the crash kernel's command line from the
//     production one; [ProductionCmdline] turns it back into the command line
//     of the next production kernel, with the full memory map.
//   - [InheritCrashkernel] gives every image staged or armed the running
//     system's crashkernel= unless it sets its own; [Arm] refuses with
//     [ErrNoRearm] an image whose next generation ([NextCmdline]) would ask
//     for no or too small a reservation ([ParseCrashkernel], [CheckRearm]),
//     and [EstimateImage] / [EstimateArmed] say what an image needs without
//     arming it.
//   - [Arm], [Disarm] and [Status] manage the loaded crash image and the
//     sysctls that turn faults (oops, unknown NMI, lockups, hung tasks) into a
//     panic, remembering the previous sysctl values in a state file.
//   - In the crash kernel, [ReadEvidence] and [SaveEvidence] extract from
//     /proc/vmcore the crashed kernel's release, crash time, panic message,
//     panicking CPU and the tail of its log (from the printk ring buffer).
//     A direct-mode crash kernel usually cannot read its vmcore on x86 (the
//     crashed kernel's memory is its own RAM, and the kernel refuses to
//     ioremap RAM: "Kdump: vmcore not initialized"), and when it can, the
//     log may already be overwritten; [CollectPstoreEvidence] reads the
//     panic log a pstore backend (ramoops in a memmap=SIZE$START region,
//     with crash_kexec_post_notifiers) kept instead, and the recovery
//     program reads it first in direct mode.
//   - Evidence by default: [EvidenceCmdline] gives the next image a ramoops
//     region ([PlaceRamoops], or the running kernel's) unless a pstore
//     backend is registered ([PstoreBackend]); [LoadRamoops] loads ramoops
//     with the command line's ramoops.* words (finit_module, dependencies
//     from modules.dep) and [MountPstore] mounts pstore to read it.
//
// Two recovery shapes exist ([ModeTwoStage], [ModeDirect]); see [Mode].
//
// Direct mode can also be armed with kexec_load (KEXEC_ON_CRASH) of the
// kernel decompressed ahead of time ([LoadSegments], [SegmentsImage], built
// by pkg/fastreboot): no digest pass and no decompression at panic time;
// [Arm] falls back to kexec_file_load under lockdown and records why.
//
// Everything under /proc and /sys is read through a root directory that tests
// replace with a fake tree; the only system call, kexec_file_load, goes
// through the injectable [Loader] (kexec_load through [SegmentsImage]). The package builds on every platform; the
// real loader works on Linux only.
package crashhandler
