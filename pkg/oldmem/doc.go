// Package oldmem lets a crash kernel kexec production's decompressed kernel
// without holding a copy of it.
//
// In two-stage mode the crash kernel boots production again. Handing
// kexec_load production's decompressed kernel ELF (about 60 MiB for
// Debian's kernel) rather than its bzImage spares the kernel decompressing
// itself after the jump (3.8 s under QEMU TCG), but the crash kernel's RAM
// is only its reservation, far too small for another copy of that ELF.
// The crashed kernel's memory still holds one: production's daemon keeps
// the ELF in a sealed memfd of its module cache, and /proc/vmcore exposes
// that memory, page by page, to the crash kernel.
//
// So the work is split in two:
//
//   - At crash-arm time, in production, [Pin] maps the memfd's bytes
//     read-only, populated and mlock'ed, so that they stay resident, and
//     [Pinned.Pages] reads /proc/self/pagemap to record which physical pages
//     hold them, in file order, together with the SHA-256 the ELF had when
//     it entered the cache and an XXH64 of the pinned bytes: a [Pages]
//     record, small enough to carry to the crash kernel.
//   - After a panic, in the crash kernel, [Map] maps those same pages of
//     the crashed kernel read-only from /proc/vmcore into one contiguous
//     virtual range (no copy; the crash kernel spends only page tables on
//     it), checks their XXH64 against the record, and returns the bytes,
//     ready to be kexec_load's source buffer.
//
// Why XXH64 and not the SHA-256: the check is inside the downtime, and
// under QEMU's TCG SHA-256 of Debian's 66 MB ELF took 1-1.9 s in a Go
// program (2.3 s for a crash stage's whole mapping and check) where XXH64
// took 33 ms. What the check must catch is pages that no
// longer hold the bytes (moved, freed and reused, scribbled on by the
// crashing kernel), not a forger: the memfd is sealed (no process can
// write it), its SHA-256 was checked when it entered the cache, and Pin
// hashes the memfd itself, so the XXH64 names those same bytes. Whoever
// could rewrite them in place can write kernel memory, and so could load
// any kernel with kexec_load already (the segments method is used only
// without lockdown). XXH64 is from github.com/cespare/xxhash/v2.
//
// The record can go stale. The kernel may migrate even mlock'ed pages
// (compaction does when vm.compact_unevictable_allowed is 1, Debian's
// default), and the daemon holding the memfd may exit before the panic, its
// pages reused. The check catches both: [Map] then fails with
// [ErrMoved] and the caller loads the compressed kernel instead. Pages
// re-reads pagemap on each call, so re-recording after a move is cheap.
//
// Reading physical frame numbers from pagemap needs CAP_SYS_ADMIN; without
// it the kernel reports PFN 0 and [Pinned.Pages] fails with
// [ErrNotPinnable]. Pages are 4 KiB ([PageSize]) throughout.
//
// The record's validation, the conversion of pagemap entries to runs and
// the planning of the vmcore mappings are portable; Pin and Map work on
// Linux only and fail with an error wrapping errors.ErrUnsupported
// elsewhere.
package oldmem
