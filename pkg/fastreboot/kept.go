package fastreboot

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// HandoffKept locates the modules a Stage with the kept carrier wrote to
// the kept region (CarryKept): the handoff piece then holds no module
// file. The next generation's Resume opens the region's cache part and
// adopts the modules only from the index this Stage wrote: same
// sequence, same SHA-256, same number of modules.
type HandoffKept struct {
	// Region is the kept region; CacheSize the length of its cache part,
	// at its start.
	Region    keptmem.Region `json:"region"`
	CacheSize int64          `json:"cache_size"`
	// IndexSHA256 is the SHA-256 of the index written (lowercase hex),
	// Sequence the region's write count that wrote it.
	IndexSHA256 string `json:"index_sha256"`
	Sequence    uint64 `json:"sequence"`
	// Modules and Bytes count the modules written.
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
}

// check validates a handoff's kept record.
func (k *HandoffKept) check() error {
	switch {
	case k.Region.Size == 0 || k.Region.Start%keptmem.Align != 0 || k.Region.Size%keptmem.Align != 0:
		return fmt.Errorf("%w: kept region %s is not 2 MiB aligned and non-empty", ErrHandoff, k.Region)
	case k.CacheSize <= 0 || uint64(k.CacheSize) > k.Region.Size:
		return fmt.Errorf("%w: kept cache size %d is outside the %s region", ErrHandoff, k.CacheSize, k.Region)
	case !bootimage.IsSHA256Hex(k.IndexSHA256):
		return fmt.Errorf("%w: kept index SHA-256 %q is not 64 lowercase hex digits", ErrHandoff, k.IndexSHA256)
	case k.Modules < 0 || k.Bytes < 0:
		return fmt.Errorf("%w: kept modules %d, bytes %d", ErrHandoff, k.Modules, k.Bytes)
	}
	return nil
}

// keptTarget is the running system's kept region, opened for a Stage.
type keptTarget struct {
	layout keptmem.Layout
	path   string
	file   *keptmem.FileDevice
	cache  keptmem.Device // the cache part of file
}

func (k *keptTarget) Close() error { return k.file.Close() }

// errNoRegion: the running command line keeps no region, the usual case
// (the auto carrier then uses the initrd without a warning).
var errNoRegion = errors.New("no kept region configured")

// openKept finds the running system's kept region (the memmap=SIZE!START
// and fastreboot.preserve= words of Root/proc/cmdline), its device under
// Root (keptmem.FindDevice) and opens its cache part. Errors say which of
// those is missing.
func openKept(root string) (*keptTarget, error) {
	p := filepath.Join(root, "proc/cmdline")
	l, ok, err := keptmem.RunningLayout(root)
	if err != nil {
		return nil, fmt.Errorf("kept region: %w", err)
	}
	if !ok {
		return nil, fmt.Errorf("kept region: %s keeps no region (no memmap=SIZE!START word; `fastreboot kept plan` says which to add): %w", p, errNoRegion)
	}
	return openKeptLayout(root, l)
}

// openKeptLayout opens the cache part of the region of l under root.
func openKeptLayout(root string, l keptmem.Layout) (*keptTarget, error) {
	path, err := keptmem.FindDevice(root, l.Region)
	if err != nil {
		return nil, fmt.Errorf("kept region %s: %w", l.Region, err)
	}
	f, err := keptmem.OpenFileDevice(path)
	if err != nil {
		return nil, fmt.Errorf("kept region %s: %w", l.Region, err)
	}
	if f.Size() != int64(l.Region.Size) {
		f.Close()
		return nil, fmt.Errorf("kept region %s: %s has %d bytes, the region %d", l.Region, path, f.Size(), l.Region.Size)
	}
	cache, err := keptmem.Window(f, 0, l.CacheSize)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("kept region %s: %w", l.Region, err)
	}
	return &keptTarget{layout: l, path: path, file: f, cache: cache}, nil
}

// resolveCarry turns spec.carry into the carrier a build uses: crash
// images carry in their initrd (the crash kernel loads no nd_pmem, and the
// region is rewritten by every later Stage); kept and auto open the
// running region. Auto falls back to the initrd when that fails, saying
// why in rep.CarrierWarning, except when the running system keeps no
// region at all (nothing was asked for: the initrd, silently); kept fails.
//
// The staged command line must keep the same region (the caller inherits
// it: keptmem.InheritCmdline, as crashpath.Path.ProductionManifest does):
// a kernel booted without it would use the region as RAM.
func (mc *Machine) resolveCarry(spec buildSpec, cmdline string, rep *StageReport) (Carry, *keptTarget, error) {
	c := spec.carry
	if c != CarryKept && c != CarryAuto {
		return c, nil, nil
	}
	if spec.crash {
		return CarryInitrd, nil, nil
	}
	k, err := openKept(mc.opts.Root)
	if err == nil {
		next, ok, perr := keptmem.ParseLayout(cmdline)
		if perr == nil && ok && next == k.layout {
			return CarryKept, k, nil
		}
		k.Close()
		err = fmt.Errorf("kept region %s: the staged command line does not keep it (memmap=%s!%#x with the same fastreboot.preserve=; keptmem.InheritCmdline adds it)",
			k.layout.Region, memmap.FormatSize(k.layout.Region.Size), k.layout.Region.Start)
		if perr != nil {
			err = fmt.Errorf("%w: %w", err, perr)
		}
	}
	if c == CarryKept {
		return c, nil, fmt.Errorf("the kept carrier: %w", err)
	}
	if errors.Is(err, errNoRegion) {
		mc.log.Debug("auto carrier: carrying the modules in the initrd", "why", err)
		return CarryInitrd, nil, nil
	}
	rep.CarrierWarning = "carried in the initrd: " + err.Error()
	mc.log.Warn("auto carrier: carrying the modules in the initrd", "why", err)
	return CarryInitrd, nil, nil
}

// checkNewRegion refuses an image whose command line keeps a region the
// running system does not, over memory that cannot be kept
// (keptmem.CheckPlacement): checked against the firmware memory map
// (spec's recorded one, else Root's), what the running kernel holds back
// (/proc/iomem's claims over RAM, less the running region's own range,
// which a region may move over) and kernel, the load range of the image's
// kernel (keptmem.KernelAvoid). The region the running system keeps is not
// checked again: this generation booted with it.
func (mc *Machine) checkNewRegion(cmdline string, kernel memmap.Avoided, spec buildSpec) error {
	next, ok, err := keptmem.ParseCmdline(cmdline)
	if err != nil || !ok {
		return err
	}
	running, rok, rerr := keptmem.RunningLayout(mc.opts.Root)
	rok = rok && rerr == nil
	if rok && running.Region == next {
		return nil
	}
	fw, fwSource, err := mc.firmwareMap(spec.memoryMap)
	if err != nil {
		return fmt.Errorf("kept region %s: checking it against the firmware memory map: %w", next, err)
	}
	iomem, err := memmap.ReadIomem(mc.opts.Root)
	if err != nil {
		return fmt.Errorf("kept region %s: checking it against what the running kernel keeps: %w", next, err)
	}
	var avoid []memmap.Avoided
	for _, a := range iomem.Claimed(fw.RAM()) {
		if !rok || a.Range != running.Region.Range() {
			avoid = append(avoid, a)
		}
	}
	avoid = append(avoid, kernel)
	mc.log.Debug("checking a kept region the running system does not keep", "region", next, "memory_map", fwSource, "avoid", len(avoid))
	return keptmem.CheckPlacement(next, fw, avoid)
}

// writeKept writes blobs to k's cache part (keptmem.Write) and returns the
// handoff's record of them. In a dry run nothing is written: the record
// has no sequence and no index digest (a dry-run image is never loaded).
func (mc *Machine) writeKept(k *keptTarget, blobs []Blob, spec buildSpec) (*HandoffKept, *KeptReport, error) {
	t := mc.opts.Now()
	kb := make([]keptmem.Blob, len(blobs))
	for i, b := range blobs {
		kb[i] = b
	}
	rec := &HandoffKept{Region: k.layout.Region, CacheSize: k.layout.CacheSize}
	rep := &KeptReport{Device: k.path, Region: k.layout.Region, CacheSize: k.layout.CacheSize}
	seen := make(map[string]bool)
	for _, b := range blobs {
		if !seen[b.Digest()] {
			seen[b.Digest()] = true
			rec.Modules++
			rec.Bytes += b.Size()
		}
	}
	rep.Modules, rep.Bytes = rec.Modules, rec.Bytes
	if spec.dryRun {
		mc.log.Info("dry run: would write the modules to the kept region", "device", k.path, "modules", rec.Modules, "bytes", rec.Bytes)
		return rec, rep, nil
	}
	// The blobs are cache entries, whose digests the cache checked (or
	// checks before their first use): no second hashing pass here; the
	// next generation hashes every module it adopts before using it.
	ix, err := keptmem.Write(k.cache, kb, keptmem.WriteOptions{Generation: uint64(max(spec.generation-1, 1)), Logger: mc.log, Hashed: true})
	rep.Took = mc.opts.Now().Sub(t)
	if err != nil {
		return nil, rep, err
	}
	h := ix.Header()
	rec.Sequence, rec.IndexSHA256 = h.Sequence, hex.EncodeToString(h.IndexSHA256[:])
	rep.Sequence, rep.Written = h.Sequence, true
	return rec, rep, nil
}

// KeptState is what Resume found of the kept region a handoff named.
type KeptState struct {
	// Device is the region's device found under the root.
	Device string `json:"device,omitempty"`
	// Region and Sequence are the handoff's.
	Region   keptmem.Region `json:"region"`
	Sequence uint64         `json:"sequence"`
}

// adoptKept adopts into cache the modules h.Kept names from the kept
// region's index under root: the device is found (keptmem.FindDevice), its
// cache part opened (keptmem.Open validates the header and the index), and
// the index must be the one the Stage wrote (its sequence, SHA-256 and
// module count): an index written since, or one torn or corrupt, is
// refused. The modules are adopted unverified (cache.AdoptSections; with
// eager, cache.VerifyPending hashes them at once), each hashed before its
// first use. Nothing from storage is read.
func adoptKept(ctx context.Context, cache *modcache.Cache, root string, h *Handoff, eager bool, st *State) (modcache.RehydrateReport, error) {
	k := h.Kept
	st.Kept = &KeptState{Region: k.Region, Sequence: k.Sequence}
	t, err := openKeptLayout(root, keptmem.Layout{Region: k.Region, CacheSize: k.CacheSize, AreasSize: int64(k.Region.Size) - k.CacheSize})
	if err != nil {
		return modcache.RehydrateReport{}, err
	}
	defer t.Close()
	st.Kept.Device = t.path
	ix, err := keptmem.Open(t.cache)
	if err != nil {
		return modcache.RehydrateReport{}, fmt.Errorf("kept region: %w", err)
	}
	hd := ix.Header()
	if got := hex.EncodeToString(hd.IndexSHA256[:]); hd.Sequence != k.Sequence || got != k.IndexSHA256 || ix.Len() != k.Modules {
		return modcache.RehydrateReport{}, fmt.Errorf("kept region %s: %w: its index (sequence %d, %d modules, SHA-256 %s) is not the one the handoff names (sequence %d, %d modules, SHA-256 %s): written again since",
			t.path, keptmem.ErrCorrupt, hd.Sequence, ix.Len(), got, k.Sequence, k.Modules, k.IndexSHA256)
	}
	rep, err := cache.AdoptSections(ctx, ix, h.keptManifest(ix))
	if eager && err == nil {
		if _, verr := cache.VerifyPending(ctx); verr != nil {
			err = verr
		}
		rep.Unverified = 0
	}
	return rep, err
}

// keptManifest is the part of h's manifest (and of its rollback images)
// whose modules the kept index holds, each digest once.
func (h *Handoff) keptManifest(src modcache.Sections) *bootimage.Manifest {
	m := h.Manifest
	m.Modules = nil
	seen := make(map[string]bool)
	for _, mod := range h.carriable() {
		if seen[mod.SHA256] || src.Section(mod.SHA256) == nil {
			continue
		}
		seen[mod.SHA256] = true
		m.Modules = append(m.Modules, mod)
	}
	return &m
}
