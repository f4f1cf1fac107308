// Package preserve is the named memory areas a workload keeps across a
// fast reboot: parts of the kept memory region's areas part (the last
// fastreboot.preserve=SIZE bytes of the memmap=SIZE!START region,
// keptmem.ParseLayout) that a process maps (mmap MAP_SHARED of the
// region's /dev/pmemN at the area's offset) and finds again, with the same
// bytes, in the next generation.
//
// A [Table] at the start of the areas part names the areas: [Open] reads
// it (a blank part is an empty table), [Table.Create] and [Table.Remove]
// change it, [Table.List] and [Table.Area] say where each area is. Before a
// fast reboot, [Freeze] freezes the cgroups of the areas' workloads
// (cgroup v2 cgroup.freeze) so that nothing writes to them any more, and
// [Table.Sync] writes back what they wrote: a write through a mapping of
// the block device sits in the page cache until it is written back, and
// one not written back is lost across the kexec (docs/kernel-facts.md,
// Kept memory region).
//
// A program that maps a whole file rather than a file at an offset (QEMU's
// memory-backend-file before 8.2, as a guest's RAM) gets an area as a loop
// block device: [Attach] configures one at the area's offset and size
// (LOOP_CONFIGURE), [Loops] lists those over the region's device, and
// [SyncLoops], before [Table.Sync], writes back what went through them:
// a loop device has a page cache of its own, above the region device's.
// The loop devices do not survive the kexec; the next generation attaches
// again and finds the same bytes.
//
// # What is checked
//
// The table is checksummed and every change is written whole to the slot
// the current table is not in, then synced: an interrupted change leaves
// the previous table, and a table whose bytes do not check is an error
// ([ErrCorrupt]), never read as areas. The areas' own contents are the
// workload's: nothing here checks them, and a workload should keep a
// checksum of its own state inside its area (memory can be corrupted, and
// a workload killed mid-write leaves half a state).
//
// # The format
//
// All integers are little-endian; offsets are from the areas part's start.
//
//	offset 0 and offset SlotSize (32 KiB): two slots, each a table; the
//	valid one with the higher sequence is the table. Each slot:
//	   0  8  magic "FRPRSV\x00\x01" (Magic)
//	   8  4  format version, 1 (FormatVersion)
//	  12  4  number of entries (at most MaxAreas)
//	  16  8  sequence: the table's writes, counted from 1
//	  24  8  the areas part's size in bytes when written
//	  32 32  SHA-256 of bytes 0-31 and the entries
//	  64     the entries, EntrySize (384) bytes each:
//	     0  64  name, NUL-padded (1-63 bytes: letters, digits, . _ -)
//	    64 256  cgroup to freeze (a path under the cgroup v2 root such
//	            as /work, or empty), NUL-padded
//	   320   8  offset: 4096-aligned, at or after TableSize (64 KiB)
//	   328   8  size: a non-zero multiple of 4096, inside the part
//	   336   8  the generation that created the area
//	   344   8  when it was created, Unix seconds
//	   352  32  reserved, zero
//	  no two areas overlap or share a name.
//
//	offset TableSize (64 KiB) on: the areas.
package preserve
