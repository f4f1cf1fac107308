// Package crashpath is fastreboot's crash path as a Go program uses it: it
// arms an on-crash image built from the module cache, says what reservation
// that image needs, reports and disarms it, and, in the kernel a crash
// started, keeps the crashed kernel's evidence and restages production.
// The fastreboot command's crash subcommands and its daemon are routes over
// this package.
//
// A [Path] holds what the running generation knows about its crash path:
// the module cache, how the generation started (its handoff), the recorded
// firmware memory map and the crash initrd it last armed with. The pieces it
// composes are in pkg/crashhandler (the reservation sizing, the loaders,
// the command lines, the evidence readers) and pkg/fastreboot (the image
// built from the cache and the handoff).
//
// The order a system uses it in:
//
//   - [Path.Arm] builds the crash image from the cache (the running
//     manifest's kernel and initrd pieces, or a minimal initramfs whose
//     /init is the fastreboot binary, plus a handoff with reason crash, the
//     next generation, the recorded memory map and the carried modules) and
//     arms it with crashhandler.Arm. [Path.Estimate] builds the same image
//     and reports the crashkernel= it needs without loading it.
//   - [Path.ProductionManifest] completes the command line of every image the
//     generation stages (the running crashkernel=, the recorded memory map
//     after a crash, a pstore region) and [Path.HandoffExtra] is what every
//     handoff carries, so that each later generation can re-arm.
//   - After a panic, in the kernel the crash path started, [Recover] reads
//     the crashed kernel's evidence from /proc/vmcore or pstore and saves it
//     first thing; in two-stage mode it then stages production from the
//     carried cache, ready for a kexec.
//   - [LastCrash] and [Status] read that evidence back in every later
//     generation.
//
// Every read of /proc and /sys goes through Config.Root, and every kexec
// through Config.Machine.Loader, so tests and examples run on fake trees.
package crashpath
