// Package statindex remembers the SHA-256 of boot files by their stat data,
// as git's index does, so that describing an image given by its files (a
// boot entry, stage --kernel/--initrd) reads only the files that changed.
//
// A record maps a path to the file's device, inode, size, modification
// time and change time (nanoseconds) and its digest. A file whose stat
// data all match its record is not read: its digest is the record's. Any
// difference, or no record, and the file is read and hashed; every byte
// read, the content checks included, is counted in the Report.
//
// # Racy-clean files
//
// A file modified within the same timestamp tick as the hashing could
// change again without its times changing: the kernel stamps files from a
// coarse clock (one tick, several milliseconds, on kernels without
// multigrain timestamps) and FAT, an ESP's file system, keeps 2-second
// times. As git does, a record is trusted only when the file's
// modification and change times are older than the index's write time,
// less a margin of Granularity (2 s); the write time is taken before the
// first file of the run that wrote the index is looked at, so every
// record of that run is older than it. A racy record is hashed again, and
// trusted once its file has aged.
//
// # Trust model
//
// The index trusts the file system's stat data, not the content: a writer
// that changes a file and restores its size and modification time
// (touch -r, tar, rsync --times) is caught by the change time, which only
// the kernel sets (to the current time, on every write or attribute
// change) and which user space cannot set back. What the index cannot
// see: a write to the block device under the file system, a change made
// while the clock was set back to the old change time, or a file system
// that does not keep change times. Against those there is no index at all
// (--no-index) or a manifest with digests. A wrong digest cannot mix two
// images: the cache serves the module of that digest, checked when it
// was read; the image is then the one the file held when it was hashed.
//
// The caller chooses the index's file (the command line: the persistent
// /var/lib/fastreboot when it exists, else the state directory); it is
// replaced atomically (internal/atomicfile), and a missing or unreadable
// index is an empty one.
package statindex
