package fastreboot

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/boot/bzimage"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// Files the segments load method reads under Options.Root.
const (
	pathIomem      = "proc/iomem"
	pathCmdline    = "proc/cmdline"
	pathBootParams = "sys/kernel/boot_params/data"
	pathMemmap     = "sys/firmware/memmap"
)

// memoryMapRecorded is SegmentsReport.MemoryMap for StageOptions.MemoryMap.
const memoryMapRecorded = "recorded"

// firmwareMap returns the firmware memory map: recorded, the one recorded
// while the system was healthy (StageOptions.MemoryMap), or else the one
// under Root, and says which.
func (mc *Machine) firmwareMap(recorded memmap.Map) (memmap.Map, string, error) {
	if len(recorded) > 0 {
		return recorded, memoryMapRecorded, nil
	}
	mm, err := memmap.ReadFirmware(mc.opts.Root)
	return mm, filepath.Join(mc.opts.Root, pathMemmap), err
}

// segmentsPrep is what Stage gathers for LoadSegments before it builds the
// initrd: everything that can fail cheaply is checked first.
type segmentsPrep struct {
	// elf is the decompressed kernel; unset for a compressed load.
	elf kernelELFResult
	// image lists what to load of the kernel file kernelFile
	// (kernelSize bytes): the ELF's PT_LOAD segments, or the
	// bzImage's protected-mode part.
	image      *kernelImage
	kernelFile *os.File
	kernelSize int64
	// kernelData, when set, holds the kernel's bytes instead of
	// kernelFile: a caller-mapped ELF (StageOptions.KernelELF).
	kernelData []byte
	kernel     []byte // the first setupHeaderReadSize bytes of the bzImage
	header     bzimage.LinuxHeader
	place      placement
	e820       []memmap.E820Entry
	running    []byte
	report     *SegmentsReport
}

// prepareSegments checks that LoadSegments can load m and gathers what it
// needs: lockdown must be off, the loader must implement SegmentsLoader
// (CrashSegmentsLoader forCrash, checked when the crash image loads), the
// firmware map must fit the zero page, /proc/iomem, the command lines and
// the running zero page must be readable, and the kernel decompressed (from
// the cache, or now and cached; see Machine.kernelELF).
func (mc *Machine) prepareSegments(ctx context.Context, m *bootimage.Manifest, kmod bootimage.Module, kernel *modcache.Entry, spec buildSpec) (*segmentsPrep, error) {
	forCrash := spec.crash
	root := mc.opts.Root
	p := func(rel string) string { return filepath.Join(root, rel) }
	if err := segmentsSupported(); err != nil {
		return nil, err
	}
	if err := lockdownForbidsKexecLoad(p(pathLockdown)); err != nil {
		return nil, err
	}
	if _, ok := mc.opts.Loader.(SegmentsLoader); !ok && !spec.dryRun && !forCrash {
		return nil, fmt.Errorf("segments load method: the loader %T cannot call kexec_load (it does not implement SegmentsLoader)", mc.opts.Loader)
	}
	fw, fwSource, err := mc.firmwareMap(spec.memoryMap)
	if err != nil {
		return nil, fmt.Errorf("segments load method: the next kernel's e820 table: %w", err)
	}
	prep := &segmentsPrep{report: &SegmentsReport{MemoryMap: fwSource}}

	prep.kernel = make([]byte, setupHeaderReadSize)
	if _, err := kernel.ReadAt(prep.kernel, 0); err != nil {
		return nil, fmt.Errorf("kernel %q: reading its setup header: %w", kmod.Name, err)
	}
	if prep.header, err = bootimage.ReadSetupHeader(bytes.NewReader(prep.kernel)); err != nil {
		return nil, fmt.Errorf("kernel %q: setup header: %w", kmod.Name, err)
	}
	if n := uint32(len(m.Cmdline)); prep.header.CmdLineSize != 0 && n > prep.header.CmdLineSize {
		return nil, fmt.Errorf("%w: %d bytes, kernel %q takes at most %d", bootimage.ErrCmdlineTooLong, n, kmod.Name, prep.header.CmdLineSize)
	}

	if prep.e820, err = memmap.E820Table(fw); err != nil {
		return nil, fmt.Errorf("firmware memory map (%s): %w", fwSource, err)
	}
	prep.report.E820Entries = len(prep.e820)

	iomem, err := memmap.ReadIomem(root)
	if err != nil {
		return nil, fmt.Errorf("segments load method: the crash kernel reservation and kept regions are read from %w", err)
	}
	cmdlines := map[string]cmdlineMemory{}
	next, err := parseCmdlineMemory(m.Cmdline)
	if err != nil {
		return nil, fmt.Errorf("the image's command line: %w", err)
	}
	cmdlines["next"] = next
	switch b, err := os.ReadFile(p(pathCmdline)); {
	case err == nil:
		running, err := parseCmdlineMemory(string(bytes.TrimSpace(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p(pathCmdline), err)
		}
		cmdlines["running"] = running
	case errors.Is(err, fs.ErrNotExist):
		mc.log.Warn("segments load method: no running command line; only the image's memmap= words are kept", "path", p(pathCmdline))
	default:
		return nil, err
	}
	prep.place = newPlacement(fw, iomem, cmdlines)
	prep.report.Avoided = prep.place.Avoid

	if prep.running, err = os.ReadFile(p(pathBootParams)); err != nil {
		return nil, fmt.Errorf("segments load method: the running kernel's boot parameters (x86 only): %w", err)
	}

	if spec.compressed {
		info, err := bootimage.InspectKernel(kernel, kernel.Size())
		if err != nil {
			return nil, fmt.Errorf("kernel %q: %w", kmod.Name, err)
		}
		if prep.image, err = compressedImage(info, prep.header); err != nil {
			return nil, fmt.Errorf("kernel %q: %w", kmod.Name, err)
		}
		prep.kernelFile, prep.kernelSize = kernel.File(), kernel.Size()
		prep.report.Compressed = true
		return prep, nil
	}
	if spec.mappedELF != nil {
		if prep.elf, prep.image, err = mc.mappedELF(kmod, spec.mappedELF); err != nil {
			return nil, err
		}
		prep.kernelData, prep.kernelSize = spec.mappedELF.Data, prep.elf.rec.Size
		prep.report.KernelELF = prep.elf.rec
		prep.report.KernelELFMapped = true
		return prep, nil
	}
	if prep.elf, err = mc.kernelELF(ctx, kmod, kernel); err != nil {
		return nil, err
	}
	prep.kernelFile, prep.kernelSize = prep.elf.entry.File(), prep.elf.entry.Size()
	prep.report.KernelELF = prep.elf.rec
	prep.report.Decompressed = prep.elf.decompressed
	prep.report.DecompressTime = prep.elf.took
	if prep.image, err = readKernelELF(prep.elf.entry, prep.elf.entry.Size()); err != nil {
		return nil, fmt.Errorf("decompressed kernel of %q: %w", kmod.Name, err)
	}
	return prep, nil
}

// Boot protocol facts (Documentation/arch/x86/boot.rst) for loading a
// bzImage's compressed kernel.
const (
	// defaultLoadAddr is LOAD_PHYSICAL_ADDR of an x86-64 defconfig, the
	// load address of a kernel whose header names none (pref_address 0).
	defaultLoadAddr = 16 * mib
	// entry64Offset is where the 64-bit entry (startup_64 of the
	// decompressor) sits in the protected-mode part.
	entry64Offset = 0x200
)

// compressedImage returns the kernel image of a bzImage loaded as it is,
// compressed, as kexec_file_load loads it (arch/x86/kernel/kexec-bzimage64.c):
// the protected-mode part (from file offset (setup_sects+1)*512, syssize*16
// bytes; a signature after it is not loaded) at pref_address, taking
// init_size bytes of memory there, entered at its 64-bit entry, 0x200 in.
// planSegments moves it up to a kernel_alignment boundary when that memory
// is not free. The decompressor (arch/x86/boot/compressed/head_64.S) reads
// kernel_alignment and init_size from the zero page, decompresses the
// kernel within the init_size bytes from its load address (rounded up to
// kernel_alignment), or from LOAD_PHYSICAL_ADDR if it was loaded below it,
// and then may move the kernel to a random address (KASLR), avoiding the
// e820 table's reserved ranges, memmap= ranges, the initrd, the command
// line and the zero page: the same as after kexec_file_load. InspectKernel
// has checked the 64-bit entry (XLF_KERNEL_64), protocol 2.12 and a
// relocatable kernel; init_size must be set.
func compressedImage(info *bootimage.KernelInfo, h bzimage.LinuxHeader) (*kernelImage, error) {
	if info.InitSize == 0 {
		return nil, fmt.Errorf("%w: init_size is 0: the memory the decompressor needs is unknown", bootimage.ErrNotBzImage)
	}
	load := h.PrefAddress
	if load == 0 {
		load = defaultLoadAddr
	}
	if load%minKernelAlign != 0 {
		return nil, fmt.Errorf("%w: pref_address %#x is not 2 MiB aligned", bootimage.ErrNotBzImage, load)
	}
	code := uint64(info.ImageBytes - info.SetupBytes)
	return &kernelImage{
		Entry: load + entry64Offset,
		Progs: []kernelProg{{Off: uint64(info.SetupBytes), Filesz: code, Paddr: load, Memsz: pageUp(max(uint64(info.InitSize), code))}},
	}, nil
}

// lockdownForbidsKexecLoad reads the lockdown file: under "integrity" or
// "confidentiality" the kernel refuses kexec_load (kernel/kexec.c,
// kexec_load_check: security_locked_down(LOCKDOWN_KEXEC)) whatever the
// image. A missing file (no lockdown LSM, no securityfs) says nothing;
// kexec_load itself then decides.
func lockdownForbidsKexecLoad(path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	mode, err := kexecsys.ParseLockdown(b)
	if err != nil || mode == "none" {
		return nil
	}
	return fmt.Errorf("%w: %w: %s is %q: the kernel refuses the legacy kexec_load that the segments load method uses (Secure Boot enables lockdown); "+
		"stage with the file load method (--load=file, kexec_file_load of a signed kernel) instead", ErrNotPermitted, ErrKexecLoadForbidden, path, mode)
}

// segmentsImage is the kexec_load image planned from a segmentsPrep.
type segmentsImage struct {
	entry    uint64
	segments []Segment
	// free is, for a crash image, where the reservation's free tail
	// (the control room) starts.
	free uint64
}

// fillReport records the plan in the report.
func (img *segmentsImage) fillReport(r *SegmentsReport) {
	r.Entry = img.entry
	r.Segments = r.Segments[:0]
	for _, s := range img.segments {
		r.Segments = append(r.Segments, SegmentInfo{Name: s.Name, Phys: s.Phys, Size: s.Size, Bytes: int64(len(s.Buf))})
	}
}

// checkPlacement verifies the finished plan against the placement: every
// segment inside one RAM range and clear of every avoided range.
func checkPlacement(segs []Segment, p placement) error {
	for _, s := range segs {
		r := memmap.Range{Start: s.Phys, End: s.Phys + s.Size}
		inRAM := false
		for _, ram := range p.RAM {
			if ram.Covers(r) {
				inRAM = true
				break
			}
		}
		if !inRAM {
			return fmt.Errorf("%w: %s segment %#x-%#x is not inside the firmware map's RAM", ErrNoMemory, s.Name, r.Start, r.End)
		}
		for _, a := range p.Avoid {
			if r.Overlaps(memmap.Range{Start: a.Start, End: a.End}) {
				return fmt.Errorf("%w: %s segment %#x-%#x overlaps %#x-%#x (%s)", ErrNoMemory, s.Name, r.Start, r.End, a.Start, a.End, a.Why)
			}
		}
	}
	return nil
}

// pageUp rounds n up to the x86 page size.
func pageUp(n uint64) uint64 { return (n + 4095) &^ 4095 }

const (
	mib = 1 << 20
	// below4G bounds the command line and the zero page: the purgatory
	// passes the zero page's address, and cmd_line_ptr is read first.
	below4G = 1 << 32
	// minKernelAlign is the alignment startup_64 requires of the kernel's
	// physical address (it computes a 2 MiB page-table load delta).
	minKernelAlign = 2 * mib
)
