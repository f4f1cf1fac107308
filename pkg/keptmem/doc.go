// Package keptmem is the kept memory region: a range of physical memory
// that the kernels fastreboot boots never use as RAM, holding the module
// cache across kexec so that the next generation adopts it in place
// instead of unpacking it from the handoff initramfs.
//
// The carrier on Debian's 6.1 kernel is legacy persistent memory: every
// generation's command line carries memmap=SIZE!START
// ([Region.CmdlineWords], [InheritCmdline]), which makes the range e820
// type 12; with the modules nd_e820 and nd_pmem (and their dependencies)
// it is the block device /dev/pmemN ([FindDevice], [OpenFileDevice]);
// docs/kernel-facts.md, Kept memory region, has what was measured. [Plan]
// places a new region in the recorded firmware memory map, as
// crashhandler places the ramoops region.
// The bytes are reached through [Device], so that a carrier built on
// Linux 6.16+ Kexec HandOver / Live Update memfd preservation can replace
// the block device.
//
// # Sharing the region
//
// A command line word fastreboot.preserve=SIZE gives the region's last SIZE
// bytes to the areas workloads preserve across a fast reboot; the module
// cache's format below is then written in the part before them
// ([ParseLayout], [Layout], [Window]), and "region" below means that part.
//
// # The format on the region
//
// All integers are little-endian; offsets are from the region's start.
//
//	offset 0, the header (HeaderSize = 128 bytes; the rest of its
//	4096-byte block is unspecified):
//	   0  8  magic "FRKEPT\x00\x01" (Magic)
//	   8  4  format version, 1 (FormatVersion)
//	  12  4  header length, 128
//	  16  8  sequence: the writes of this region, counted from 1
//	  24  8  generation of the writer
//	  32  8  region size in bytes (the device's size)
//	  40  8  index offset
//	  48  8  index length in bytes
//	  56 32  SHA-256 of the index's bytes
//	  88  8  reserved, zero
//	  96 32  SHA-256 of header bytes 0-95
//
//	offset 4096: a block of zeros (4096 bytes). nd_pmem's probe reads
//	an info block (BTT, pfn, dax) there and would claim the device in
//	that mode if it found one; Open requires it zero.
//
//	offset 8192 on (DataStart): the modules, sorted by digest, each at a
//	4096-byte aligned offset (BlockSize), the bytes between them
//	unspecified.
//
//	then, at the next 4096-byte aligned offset, the index: one 80-byte
//	entry per module (EntrySize), sorted by digest, unique:
//	   0 64  the module's SHA-256, 64 lowercase hex ASCII digits
//	  64  8  its offset (4096-aligned, at or after 8192)
//	  72  8  its size; its bytes end at or before the index's offset
//	no two modules overlap or share an offset (an empty module takes a
//	block of its own).
//
// [Write] zeroes the header and the block after it and syncs, writes the modules and syncs, the
// index and syncs, and the header last and syncs: a write interrupted at
// any point leaves no valid header. [Open] checks everything above but the
// modules' bytes, and every failure wraps [ErrNoIndex] (no magic: blank,
// never written, or a write that did not finish), [ErrVersion], [ErrCorrupt]
// or [ErrTooSmall]. The modules are read in place through
// [Index.Section] and checked by whoever uses them:
// modcache.Cache.AdoptSections adopts them unverified and hashes each at
// its first use, as it does for the handoff's files.
package keptmem
