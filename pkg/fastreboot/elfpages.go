package fastreboot

import (
	"bytes"
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/oldmem"
)

// KernelELFPages locates a decompressed kernel (the cache's RoleKernelELF
// module of the bzImage Kernel) in the physical memory of the kernel that
// recorded it.
//
// Why: a two-stage crash kernel reloads production. Loaded compressed, the
// production kernel decompresses itself after the jump (3.8 s under QEMU's
// TCG for Debian's kernel); loaded as its ELF, it starts at once, but the
// crash kernel runs in its reservation and has no room for a second ~60 MiB
// copy of it. The production daemon holds that ELF anyway, in a sealed
// memfd of its cache, so a two-stage crash image's handoff records which
// pages hold it (oldmem.Pin: mapped, locked, read from /proc/self/pagemap),
// and the crash stage maps the crashed kernel's same pages from
// /proc/vmcore (oldmem.Map) and gives them to kexec_load as they are. The
// kernel copies them into its destination pages, which the compressed
// kernel takes too (its init_size is larger than the ELF's memory). Pages
// can move or be freed between the record and the crash (compaction
// migrates even locked pages; the holder can exit): oldmem.Map checks the
// mapped bytes against the XXH64 oldmem.Pin computed from the sealed memfd
// (whose SHA-256 the cache checked when the ELF entered it), and a crash
// stage whose check fails loads the compressed kernel.
type KernelELFPages struct {
	// Kernel is the SHA-256 of the bzImage the ELF was decompressed from.
	Kernel string `json:"kernel_sha256"`
	// Pages are the ELF's pages; its Size and SHA256 are the ELF's.
	Pages oldmem.Pages `json:"pages"`
}

// Record is the decompressed kernel record the pages hold.
func (k *KernelELFPages) Record() KernelELF {
	return KernelELF{Kernel: k.Kernel, SHA256: k.Pages.SHA256, Size: k.Pages.Size}
}

// check validates a handoff's record: well formed, of a kernel in the
// manifest (known). Errors wrap ErrHandoff.
func (k *KernelELFPages) check(known map[string]bool) error {
	if !bootimage.IsSHA256Hex(k.Kernel) || !known[k.Kernel] {
		return fmt.Errorf("%w: crash kernel_elf_pages: kernel %q is not in the manifest", ErrHandoff, k.Kernel)
	}
	if err := k.Pages.Validate(); err != nil {
		return fmt.Errorf("%w: crash kernel_elf_pages: %w", ErrHandoff, err)
	}
	return nil
}

// MappedKernelELF is a decompressed kernel its caller maps itself for a
// LoadSegments Stage to load instead of the cache's (StageOptions.KernelELF):
// the two-stage crash stage maps production's from the crashed kernel's
// memory (KernelELFPages, oldmem.Map). Data must hold exactly the bytes
// Record names, checked by the caller (oldmem.Map checks them against the
// checksum taken from the cache's copy); Stage checks that Record is of the
// manifest's kernel and agrees with the state directory's decompressed
// kernel index.
type MappedKernelELF struct {
	Record KernelELF
	Data   []byte
}

// pinnedELF is the decompressed kernel the Machine keeps pinned.
type pinnedELF struct {
	digest string
	pin    *oldmem.Pinned
}

// pinKernelELF locates the cached decompressed kernel of kmod in physical
// memory for a two-stage crash image's handoff: the ELF of b (a segments
// build) or the one the index records and the cache holds. It keeps that
// ELF mapped and locked while the Machine lives and releases the one it
// pinned before. It returns nil, saying why at level Info or Warn, when
// there is no such ELF or it cannot be pinned (no CAP_SYS_ADMIN: pagemap
// hides the page frames): the crash stage then loads the compressed
// kernel. mc.mu is held.
func (mc *Machine) pinKernelELF(kmod bootimage.Module, b *built) *KernelELFPages {
	var (
		e   *modcache.Entry
		rec KernelELF
	)
	if b.seg != nil && !b.seg.report.Compressed {
		e, rec = b.seg.elf.entry, b.seg.elf.rec
	} else {
		recs, err := readKernelELFs(mc.opts.StateDir)
		r, ok := recs[kmod.SHA256]
		if err != nil || !ok {
			mc.log.Info("two-stage crash image: no decompressed kernel recorded; the crash stage will load production compressed", "kernel", kmod.Name)
			return nil
		}
		if e, err = mc.cache.Get(r.SHA256); err != nil {
			mc.log.Info("two-stage crash image: the decompressed kernel is not cached; the crash stage will load production compressed", "kernel", kmod.Name, "err", err)
			return nil
		}
		rec = r
	}
	if mc.pinned == nil || mc.pinned.digest != rec.SHA256 {
		pin, err := oldmem.Pin(mc.opts.Root, e.File(), e.Size(), rec.SHA256)
		if err != nil {
			mc.log.Warn("two-stage crash image: cannot locate the decompressed kernel in physical memory; the crash stage will load production compressed", "err", err)
			return nil
		}
		if mc.pinned != nil {
			mc.pinned.pin.Close()
		}
		mc.pinned = &pinnedELF{digest: rec.SHA256, pin: pin}
	}
	// Read again at every build: the pages can have moved since.
	pages, err := mc.pinned.pin.Pages()
	if err != nil {
		mc.log.Warn("two-stage crash image: cannot locate the decompressed kernel in physical memory; the crash stage will load production compressed", "err", err)
		return nil
	}
	return &KernelELFPages{Kernel: kmod.SHA256, Pages: pages}
}

// twoStageCrash reports whether spec builds a two-stage crash image.
func (spec buildSpec) twoStageCrash() bool {
	return spec.crash && spec.handoffCrash != nil && spec.handoffCrash.Mode == crashhandler.ModeTwoStage
}

// mappedELF prepares a caller-mapped decompressed kernel (StageOptions.KernelELF)
// for kmod: its record must be of kmod, agree with the index's record if
// there is one, and describe a kernel ELF the segments loader can place.
func (mc *Machine) mappedELF(kmod bootimage.Module, mapped *MappedKernelELF) (kernelELFResult, *kernelImage, error) {
	var res kernelELFResult
	rec := mapped.Record
	if rec.Kernel != kmod.SHA256 {
		return res, nil, fmt.Errorf("mapped decompressed kernel: it is of kernel %s, the image's kernel %q is %s", rec.Kernel, kmod.Name, kmod.SHA256)
	}
	if int64(len(mapped.Data)) != rec.Size {
		return res, nil, fmt.Errorf("mapped decompressed kernel: %d bytes mapped, its record says %d", len(mapped.Data), rec.Size)
	}
	if recs, err := readKernelELFs(mc.opts.StateDir); err == nil {
		if r, ok := recs[kmod.SHA256]; ok && r != rec {
			return res, nil, fmt.Errorf("kernel %q: %w: the mapped decompressed kernel has sha256 %s (%d bytes), the index records %s (%d bytes)",
				kmod.Name, ErrKernelELFMismatch, rec.SHA256, rec.Size, r.SHA256, r.Size)
		}
	}
	img, err := readKernelELF(bytes.NewReader(mapped.Data), rec.Size)
	if err != nil {
		return res, nil, fmt.Errorf("mapped decompressed kernel of %q: %w", kmod.Name, err)
	}
	res.rec = rec
	return res, img, nil
}
