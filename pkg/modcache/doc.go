// Package modcache keeps the pristine in-RAM copy of every boot module a
// fastreboot generation may load: one sealed memfd per unique module content,
// keyed by its lowercase SHA-256 hex digest.
//
// A module enters the cache exactly once, through a single pass that copies
// its bytes into a new memfd while hashing them. Its size and digest are then
// compared with the manifest, and the memfd is sealed with
// F_SEAL_WRITE|F_SEAL_SHRINK|F_SEAL_GROW|F_SEAL_SEAL so the bytes can never
// change again. Only after sealing does the optional [Options.Check] look at
// the content, so what was checked is exactly what kexec_file_load later
// reads (no TOCTOU between check and load).
//
// [Cache.Sync] reads from storage only the modules whose digest is not cached
// yet and reports the exact number of bytes it read. [Cache.Rehydrate] fills
// the cache in the next generation from the handoff directory carried in the
// initramfs, reading no storage at all; [Cache.Adopt] does the same without
// hashing, so that the cache is ready sooner, and defers each entry's
// verification to its first use ([Cache.Get], a Sync or Add that finds it,
// Verify) or to [Cache.VerifyPending], whichever comes first; an entry that
// fails is dropped before anyone uses it. [Cache.AdoptSections] adopts the
// same way from byte ranges another generation kept ([Sections], e.g. a
// kept memory region's index). [Cache.Verify] re-hashes every entry,
// [Cache.Evict] drops the entries no kept manifest references.
//
// The sealed memfd of an entry ([Entry.File]) can be passed directly as the
// kernel or initrd fd of kexec_file_load: the kernel refuses a file with
// ETXTBSY while any writable open of its inode exists, and the fd returned by
// memfd_create does not count as one, so the cache never reopens
// /proc/self/fd/N for writing.
//
// memfd_create and file seals are Linux-only. On other systems the same API
// is backed by unlinked temporary files without seals, so that code using the
// cache still builds and its logic can be tested.
package modcache
