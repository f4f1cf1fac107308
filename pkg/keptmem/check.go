package keptmem

import (
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// KernelAvoid is the memory a region must leave to the kernel a boot
// loads: everything below the end of its load range when it runs where it
// was loaded, pref_address (16 MiB for Debian's kernels, the
// LOAD_PHYSICAL_ADDR a kernel loaded lower moves itself up to) plus
// init_size, the memory it needs there until it has decompressed itself
// (both from the bzImage's setup header). Below that lie the real-mode
// trampoline, the BIOS data and the ISA DMA zone, which the kernel takes at
// boot. A kernel booted with KASLR moves elsewhere, avoiding every memmap=
// region (arch/x86/boot/compressed/kaslr.c mem_avoid_memmap), but one
// booted with nokaslr, or by a loader that puts it at pref_address (GRUB
// does), runs there: a region over it would make the kernel's own pages
// persistent memory, which nd_pmem then maps and the cache write
// overwrites.
func KernelAvoid(prefAddress uint64, initSize uint32) memmap.Avoided {
	const loadPhysicalAddr = 16 << 20
	base := max(prefAddress, loadPhysicalAddr)
	end := base + (uint64(initSize)+4095)&^4095
	return memmap.Avoided{Range: memmap.Range{Start: 0, End: end},
		Why: fmt.Sprintf("low memory and the kernel's load range without KASLR (pref_address %#x, init_size %#x)", base, initSize)}
}

// CheckPlacement tells whether r can be kept: every byte of it System RAM
// in the firmware memory map fw (adjacent RAM entries count as one range),
// and none of it in avoid (memmap.Iomem.Claimed: the crashkernel=
// reservation, a ramoops region or another memmap= region the running
// kernel keeps; KernelAvoid). A region over memory the firmware keeps
// (ACPI tables and NVS, reserved ranges, a PCI hole) would hand it to
// nd_pmem, whose writes then overwrite it, and one over what the running
// kernel holds back would put the cache where the crash image or the
// pstore records are. The error wraps ErrOverlap and names the first
// conflict and where it comes from.
func CheckPlacement(r Region, fw memmap.Map, avoid []memmap.Avoided) error {
	rr := r.Range()
	if rr.Empty() {
		return fmt.Errorf("%w: %s: an empty region", ErrOverlap, r)
	}
	for _, e := range fw {
		if e.Type != memmap.TypeRAM && e.Range().Overlaps(rr) {
			return fmt.Errorf("%w: %s (%s) covers %s memory %s of the firmware memory map: only System RAM can be kept",
				ErrOverlap, r, rr, e.Type, e.Range())
		}
	}
	if left := memmap.Subtract([]memmap.Range{rr}, memmap.Merge(fw.RAM())...); len(left) > 0 {
		return fmt.Errorf("%w: %s (%s): %s is not RAM in the firmware memory map (no entry covers it): only System RAM can be kept",
			ErrOverlap, r, rr, left[0])
	}
	for _, a := range avoid {
		if a.Overlaps(rr) {
			return fmt.Errorf("%w: %s (%s) overlaps %s: %s", ErrOverlap, r, rr, a.Range, a.Why)
		}
	}
	return nil
}
