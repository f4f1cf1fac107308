package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// Image is a boot image built from the cache but not loaded: what a caller
// hands to kexec_file_load itself, such as the crash path, which loads it
// with KEXEC_FILE_ON_CRASH (pkg/crashhandler.Arm).
type Image struct {
	// Kernel is the cached kernel's sealed memfd. It belongs to the cache:
	// do not close it.
	Kernel *os.File
	// Initrd is the assembled initrd (the manifest's initrd pieces and the
	// handoff piece) in a new sealed memfd; Close releases it.
	Initrd *os.File
	// Cmdline is the manifest's command line.
	Cmdline string
	// Manifest is the image's manifest (a copy).
	Manifest *bootimage.Manifest
	// UnpackedBytes is the initrd's size once unpacked into the rootfs:
	// the cpio data of every piece, decompressed (measured once per
	// piece: bootimage.ScanInitrd under Options.InitrdLimits), and the
	// handoff piece.
	UnpackedBytes int64
	// Report says what building it did; Loaded is always false.
	Report StageReport
	// ReloadInitrdBytes is the size of the initrd a two-stage crash
	// kernel assembles when it stages this image again as production
	// (the manifest's pieces and the handoff piece): Initrd's size, but
	// for an image built with BuildOptions.CrashInit, whose initrd holds
	// the crash init piece instead of the manifest's pieces.
	ReloadInitrdBytes int64
	// Segments is set when the image was built with BuildOptions.Segments:
	// the same image prepared for the crash path's kexec_load(...,
	// KEXEC_ON_CRASH), for crashhandler.Image.Segments. Arming it fills
	// Report.Segments with the placement.
	Segments crashhandler.SegmentsImage
}

// Close releases the initrd memfd.
func (img *Image) Close() error {
	if img == nil || img.Initrd == nil {
		return nil
	}
	return img.Initrd.Close()
}

// BuildOptions say what one BuildImage builds and what its handoff tells
// the next kernel.
type BuildOptions struct {
	// Reason of the next generation; required (not ReasonCold).
	Reason Reason
	// Generation is the running system's generation; the handoff names
	// Generation+1. Zero means 1.
	Generation int
	// Carry, MemoryMap, Crash and CPURecord are as in StageOptions.
	Carry     Carry
	MemoryMap memmap.Map
	Crash     *HandoffCrash
	CPURecord *cpustop.Record
	// DryRun makes the Segments image plan its placement when it is
	// loaded (crashhandler.SegmentsImage.LoadOnCrash) without calling
	// kexec_load.
	DryRun bool
	// Segments also prepares the image for the crash path's segments
	// method (Image.Segments): the checks of LoadSegments (lockdown off,
	// memory map, the running boot parameters) and the kernel decompressed
	// ahead of time, from the cache or now (then cached, its digest
	// recorded and checked as for LoadSegments). The handoff records the
	// decompressed kernel's digest.
	Segments bool
	// CrashInit, if set, is the program a minimal two-stage crash image
	// runs as PID 1 (the fastreboot binary): the initrd is then the crash
	// init piece (WriteCrashInitPiece) and the handoff piece, which still
	// carries every module of the manifest, instead of the manifest's
	// initrd pieces and the handoff piece.
	CrashInit Piece
	// Origin is as in StageOptions.
	Origin *ManifestOrigin
	// Rollback is copied into the handoff (Handoff.Rollback); as for
	// StageOptions.Rollback, the good images' cached modules are carried
	// too (the generation a crash image starts arms the fallback of a
	// crash loop from its cache; the reservation is sized with them).
	Rollback *rollback.State
}

// BuildImage makes every module of m cached (reading from src only what is
// missing), then assembles the initrd like Stage does (pieces in manifest
// order, each 4-byte padded, then the handoff piece with the carried
// modules unless BuildOptions.Carry is CarryNone) into a new sealed memfd, and
// returns the image without loading it. The caller owns Image.Initrd and
// must Close the image.
func (mc *Machine) BuildImage(ctx context.Context, m *bootimage.Manifest, src modcache.Source, bo BuildOptions) (img *Image, err error) {
	mc.mu.Lock()
	defer mc.mu.Unlock()
	label := "<nil manifest>"
	if m != nil {
		label = m.Name
	}
	defer func() {
		if err != nil {
			err = fmt.Errorf("build image %s: %w", label, err)
		}
	}()
	if m == nil {
		return nil, fmt.Errorf("%w: nil manifest", bootimage.ErrInvalid)
	}
	if mc.cache == nil {
		return nil, errors.New("no module cache: the Machine was created without one")
	}
	if !bo.Reason.Valid() || bo.Reason == ReasonCold {
		return nil, fmt.Errorf("reason %q: want %q, %q, %q or %q", bo.Reason, ReasonUpdate, ReasonCrash, ReasonManual, ReasonRollback)
	}
	gen := max(bo.Generation, 1) + 1
	rep := StageReport{Manifest: m.Name, CmdlineBytes: len(m.Cmdline), Generation: gen, Reason: bo.Reason, DryRun: true}
	t0 := mc.opts.Now()
	rep.Timeline.StageStart = t0
	spec := buildSpec{
		reason: bo.Reason, generation: gen, segments: bo.Segments, crash: true, crashInit: bo.CrashInit,
		dryRun: bo.DryRun, carry: bo.Carry, memoryMap: bo.MemoryMap, handoffCrash: bo.Crash, cpuRecord: bo.CPURecord,
		origin: bo.Origin, rollback: bo.Rollback,
	}
	b, err := mc.build(ctx, m, src, spec, &rep, func(*time.Duration) {})
	if err != nil {
		return nil, err
	}
	var seg crashhandler.SegmentsImage
	if b.seg != nil {
		rep.Load = LoadSegments
		var ram uint64
		for _, e := range b.seg.e820 {
			if e.Type == memmap.E820RAM {
				ram += e.Size
			}
		}
		seg = &crashSegments{mc: mc, prep: b.seg, initrd: b.initrd, bytes: rep.InitrdBytes, ram: ram, dryRun: bo.DryRun}
	}
	rep.Durations.Total = mc.opts.Now().Sub(t0)
	mm := *m
	mm.Modules = slices.Clone(m.Modules)
	return &Image{
		Kernel:        b.kernel.File(),
		Initrd:        b.initrd,
		Cmdline:       m.Cmdline,
		Manifest:      &mm,
		UnpackedBytes: b.unpacked + rep.HandoffBytes,
		// The production initrd: its pieces, each padded to 4 bytes, and
		// a handoff piece the size of this one.
		ReloadInitrdBytes: b.piecesPadded + rep.HandoffBytes,
		Report:            rep,
		Segments:          seg,
	}, nil
}

// buildSpec is what one Stage or BuildImage asks of build: what goes into
// the handoff, and how the image is prepared.
type buildSpec struct {
	reason     Reason
	generation int
	// handoffCrash is copied into Handoff.Crash.
	handoffCrash *HandoffCrash
	carry        Carry
	cpuRecord    *cpustop.Record
	// memoryMap is the recorded firmware map (StageOptions.MemoryMap).
	memoryMap memmap.Map
	dryRun    bool
	// crash: the image is built for the crash path (BuildImage).
	crash bool
	// segments prepares the cached decompressed kernel for kexec_load and
	// records its digest in the handoff. The ELF itself is not carried:
	// the next kernel would unpack it (tens of MB) inside the downtime,
	// while re-deriving it from the carried bzImage happens after the
	// boot (see Machine.PrepareKernelELF) and is checked against the
	// recorded digest.
	segments bool
	// compressed: segments loads the bzImage's compressed kernel
	// (StageOptions.CompressedKernel); no ELF is derived or recorded.
	compressed bool
	// fileFallback is StageOptions.FileFallback.
	fileFallback bool
	// crashInit replaces the manifest's initrd pieces with the crash
	// init piece of this program (BuildOptions.CrashInit).
	crashInit Piece
	// origin is copied into Handoff.Origin.
	origin *ManifestOrigin
	// prefetched is StageOptions.Prefetched.
	prefetched *Prefetch
	// skipScan is StageOptions.SkipInitrdScan.
	skipScan bool
	// mappedELF is StageOptions.KernelELF.
	mappedELF *MappedKernelELF
	// rollback is copied into Handoff.Rollback; a Stage (not a crash
	// build) also carries its good images' cached modules.
	rollback *rollback.State
}

// withPrefetch is the sync report of a build whose modules pre
// (StageOptions.Prefetched) read before the build's own sync found them
// cached: pre's report, plus what the build's sync had to read again
// (modules evicted in between) and its warnings. Nil pre: sync itself.
func withPrefetch(pre *Prefetch, sync modcache.SyncReport) modcache.SyncReport {
	if pre == nil {
		return sync
	}
	out := pre.Sync
	out.Read = slices.Clone(out.Read)
	out.Warnings = slices.Clone(out.Warnings)
	out.Hits = max(out.Hits-sync.Misses, 0)
	out.Misses += sync.Misses
	out.BytesRead += sync.BytesRead
	out.Read = append(out.Read, sync.Read...)
	out.Warnings = append(out.Warnings, sync.Warnings...)
	return out
}

// built is an image build produced: the cached kernel, the new sealed initrd
// memfd (the caller closes it) and, for segments, the prepared ELF.
type built struct {
	kernel   *modcache.Entry
	initrd   *os.File
	seg      *segmentsPrep
	unpacked int64
	// piecesPadded is the manifest's initrd pieces, each padded to 4
	// bytes, whether or not they were assembled.
	piecesPadded int64
}

// build is the part Stage and BuildImage share: validate m, make its modules
// cached (reading from src only what is missing), check the kernel, then
// write the initrd pieces in manifest order (each padded to 4 bytes, copied
// once) and the handoff piece into one new memfd and seal it. It fills rep
// (sync, sizes, timeline) and times each phase with lap. mc.mu is held.
func (mc *Machine) build(ctx context.Context, m *bootimage.Manifest, src modcache.Source, spec buildSpec, rep *StageReport, lap func(*time.Duration)) (b *built, err error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	if n := len(m.Cmdline); n > bootimage.MaxCmdline-1 {
		return nil, fmt.Errorf("%w: %d bytes, at most %d", bootimage.ErrCmdlineTooLong, n, bootimage.MaxCmdline-1)
	}
	if err := spec.origin.CheckModules(m); err != nil {
		return nil, err
	}
	lap(&rep.Durations.Validate)

	if pre := spec.prefetched; pre != nil && pre.Err != nil {
		rep.Sync, rep.Durations.Sync = pre.Sync, pre.Took
		return nil, pre.Err
	}
	sync, err := mc.cache.Sync(ctx, m, src)
	rep.Sync = withPrefetch(spec.prefetched, sync)
	if err != nil {
		return nil, err
	}
	lap(&rep.Durations.Sync)
	if spec.prefetched != nil {
		rep.Durations.Sync += spec.prefetched.Took
	}

	b = &built{}
	kmod := m.Kernel()
	if b.kernel, err = mc.entry(kmod); err != nil {
		return nil, err
	}
	if err := bootimage.CheckKernel(b.kernel, b.kernel.Size()); err != nil {
		return nil, fmt.Errorf("kernel %q: %w", kmod.Name, err)
	}
	// CheckKernel read the header: it reads back.
	hdr, err := bootimage.ReadSetupHeader(b.kernel)
	if err != nil {
		return nil, fmt.Errorf("kernel %q: %w", kmod.Name, err)
	}
	if err := mc.checkNewRegion(m.Cmdline, keptmem.KernelAvoid(hdr.PrefAddress, hdr.InitSize), spec); err != nil {
		return nil, err
	}
	if max := maxFileCmdline(hdr.CmdLineSize); !spec.segments && len(m.Cmdline) > max {
		return nil, fmt.Errorf("%w: manifest %q: %d bytes, kexec_file_load takes at most %d for kernel %q (its cmdline_size %d, less the NUL and the 30 bytes it keeps for elfcorehdr=)",
			bootimage.ErrCmdlineTooLong, m.Name, len(m.Cmdline), max, kmod.Name, hdr.CmdLineSize)
	}
	rep.KernelSHA256 = kmod.SHA256
	blobs := []Blob{b.kernel}
	var pieces []*modcache.Entry
	// The initrd limit bounds what all the image's pieces unpack to
	// together, not each module alone: the kernel unpacks every one of
	// them into the same rootfs.
	limit, bounded := mc.opts.InitrdLimits.UnpackedLimit()
	for _, mod := range m.Initrds() {
		e, err := mc.entry(mod)
		if err != nil {
			return nil, err
		}
		pieces = append(pieces, e)
		blobs = append(blobs, e)
		b.piecesPadded += (e.Size() + 3) &^ 3
		if spec.crashInit != nil || (!spec.crash && (!bounded || spec.skipScan)) {
			continue // the crash init piece is measured below; an unbounded or pre-checked Stage needs no sizing
		}
		n, err := mc.unpackedBytes(mod, e)
		if err != nil {
			return nil, err
		}
		b.unpacked += n
		if bounded && b.unpacked > limit {
			return nil, fmt.Errorf("initrd piece %q: %w: %w: it unpacks to %d bytes, which brings the image's initrd pieces up to it to %d, more than the %d an initrd may (InitrdLimits.MaxUnpacked)",
				mod.Name, bootimage.ErrBadInitrd, bootimage.ErrUnpackLimit, n, b.unpacked, limit)
		}
	}
	if spec.segments {
		b.seg, err = mc.prepareSegments(ctx, m, kmod, b.kernel, spec)
		switch {
		case err == nil:
			rep.Segments = b.seg.report
		case spec.fileFallback && ctx.Err() == nil:
			mc.log.Warn("the segments load method cannot load this image; loading it with kexec_file_load", "err", err)
			rep.Load, rep.LoadFallback = LoadFile, "segments load method: "+err.Error()
			b.seg, err = nil, nil
		default:
			return nil, err
		}
		lap(&rep.Durations.Segments)
	}

	if b.initrd, err = kexecsys.NewImageFile("fastreboot-initrd"); err != nil {
		return nil, err
	}
	initrd := b.initrd // the error returns below return a nil b
	defer func() {
		if err != nil {
			initrd.Close()
		}
	}()
	a := &assembler{dst: b.initrd}
	if spec.crashInit != nil {
		n, err := WriteCrashInitPiece(a, spec.crashInit, spec.crashInit.Size())
		if err != nil {
			return nil, fmt.Errorf("%s: %w", b.initrd.Name(), err)
		}
		if err := a.pad4(); err != nil {
			return nil, err
		}
		rep.PiecesBytes = n
		b.unpacked = n
	} else {
		for i, mod := range m.Initrds() {
			if err := a.appendPiece(mod.Name, pieces[i]); err != nil {
				return nil, err
			}
			rep.PiecesBytes += mod.Size
		}
	}
	lap(&rep.Durations.Assemble)

	carry, kept, err := mc.resolveCarry(spec, m.Cmdline, rep)
	if err != nil {
		return nil, err
	}
	if kept != nil {
		defer kept.Close()
	}
	rep.Carrier = carry
	if carry == CarryNone {
		blobs = nil
	} else {
		// A crash image too: the generation it starts must be able to
		// arm (or roll back to) the good images from its cache, and a
		// crash kernel has no storage.
		blobs = append(blobs, mc.rollbackBlobs(spec.rollback, m)...)
	}
	rep.Timeline.StageEnd = mc.opts.Now()
	h := &Handoff{Generation: spec.generation, Reason: spec.reason, Timeline: rep.Timeline, Manifest: *m}
	h.Manifest.Modules = slices.Clone(m.Modules)
	h.CPUs = mc.handoffCPUs(spec.cpuRecord)
	h.MemoryMap = slices.Clone(spec.memoryMap)
	if spec.handoffCrash != nil {
		c := *spec.handoffCrash
		h.Crash = &c
	}
	if b.seg != nil && !b.seg.report.Compressed {
		h.KernelELFs = []KernelELF{b.seg.elf.rec}
	}
	if spec.twoStageCrash() && h.Crash != nil {
		h.Crash.KernelELFPages = mc.pinKernelELF(kmod, b)
	}
	h.Origin = spec.origin.Clone()
	if spec.rollback != nil {
		r := spec.rollback.Clone()
		h.Rollback = &r
	}
	inInitrd := blobs
	if kept != nil {
		// The modules go to the region, the handoff says where.
		h.Kept, rep.Kept, err = mc.writeKept(kept, blobs, spec)
		switch {
		case err == nil:
			inInitrd = nil
		case spec.carry == CarryAuto:
			// Too small, or a failed write (which left the region
			// without an index): the initrd carries them.
			rep.CarrierWarning = "carried in the initrd: the kept carrier: " + err.Error()
			mc.log.Warn("auto carrier: carrying the modules in the initrd", "why", err)
			h.Kept, rep.Kept, rep.Carrier, err = nil, nil, CarryInitrd, nil
		default:
			return nil, fmt.Errorf("the kept carrier: %w", err)
		}
	}
	hstart := a.off
	if _, err := WriteHandoffPiece(a, h, inInitrd); err != nil {
		return nil, fmt.Errorf("%s: %w", b.initrd.Name(), err)
	}
	rep.HandoffBytes = a.off - hstart
	rep.CarriedModules = len(h.Carried)
	rep.CarriedBytes = uniqueBytes(inInitrd) // a digest is carried once
	if h.Kept != nil {
		rep.CarriedModules, rep.CarriedBytes = h.Kept.Modules, h.Kept.Bytes
	}
	rep.InitrdBytes = a.off
	rep.PaddingBytes = a.padding
	rep.CopiedInKernel = a.kernelCopied
	rep.CopiedInUser = a.userCopied + uniqueBytes(inInitrd)
	if err := kexecsys.SealImage(b.initrd); err != nil {
		return nil, err
	}
	lap(&rep.Durations.Handoff)
	return b, nil
}

// unpackedBytes returns what the initrd piece mod (cached as e) unpacks
// to, the real size the crash path's sizing and the image's initrd limit
// need: bootimage.ScanInitrd under Options.InitrdLimits, once per digest
// for the Machine's life (the piece's decompression costs seconds under
// emulation). mc.mu is held.
func (mc *Machine) unpackedBytes(mod bootimage.Module, e *modcache.Entry) (int64, error) {
	if n, ok := mc.unpacked[e.Digest()]; ok {
		return n, nil
	}
	info, err := bootimage.ScanInitrd(e, e.Size(), mc.opts.InitrdLimits)
	if err != nil {
		return 0, fmt.Errorf("initrd piece %q: %w", mod.Name, err)
	}
	if mc.unpacked == nil {
		mc.unpacked = make(map[string]int64)
	}
	mc.unpacked[e.Digest()] = info.UnpackedBytes
	return info.UnpackedBytes, nil
}

// maxFileCmdline is the longest command line, without its NUL, that
// kexec_file_load takes for a kernel whose setup header says cmdline_size:
// its x86 loader refuses with EINVAL a line whose length with the NUL
// plus 30 bytes (room for the "elfcorehdr=0x<addr> " a crash load
// prepends) exceeds cmdline_size, on every load, not only crash loads
// (arch/x86/kernel/kexec-bzimage64.c bzImage64_load, 6.1;
// docs/kernel-facts.md). A header without cmdline_size (protocol < 2.06)
// is taken to say COMMAND_LINE_SIZE less the NUL.
func maxFileCmdline(cmdlineSize uint32) int {
	if cmdlineSize == 0 || cmdlineSize > bootimage.MaxCmdline-1 {
		cmdlineSize = bootimage.MaxCmdline - 1
	}
	return int(cmdlineSize) - 1 - 30
}

// rollbackBlobs are the cached modules of r's last-known-good and fallback
// images that m does not name, which a Stage carries so that the next
// generation can roll back from its cache alone. A module not cached is
// left out (and logged): a rollback to its image reads it from storage.
func (mc *Machine) rollbackBlobs(r *rollback.State, m *bootimage.Manifest) []Blob {
	if r == nil {
		return nil
	}
	seen := make(map[string]bool)
	for _, mod := range m.Modules {
		seen[mod.SHA256] = true
	}
	var blobs []Blob
	for _, im := range []*rollback.Image{r.Good, r.Fallback} {
		if im == nil {
			continue
		}
		for _, mod := range im.Manifest.Modules {
			if seen[mod.SHA256] {
				continue
			}
			seen[mod.SHA256] = true
			e, err := mc.entry(mod)
			if err != nil {
				mc.log.Warn("a good image's module is not cached and is not carried: a rollback to it reads it from storage",
					"image", im.Label(), "module", mod.Name, "err", err)
				continue
			}
			blobs = append(blobs, e)
		}
	}
	return blobs
}
