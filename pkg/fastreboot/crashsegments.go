package fastreboot

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// The crash path's segments method: the image BuildImage prepares with
// BuildOptions.Segments, armed by crashhandler.Arm with kexec_load(...,
// KEXEC_ON_CRASH). The kernel accepts such an image only if every segment
// and the entry lie inside the crash kernel reservation (kernel/kexec.c
// kimage_alloc_init, kernel/kexec_core.c sanity_check_segment_list), and
// it copies the segments there at load time, so at panic nothing is
// copied, hashed or decompressed.

// crashTrampoline is the purgatory of a crash image: u-root's default
// purgatory is linked to run at 0x3000 (it reads its parameter slots at
// absolute addresses), outside any crash reservation, so the crash path
// uses this position-independent one, placed anywhere in the reservation:
//
//	0x00  48 8b 35 11 00 00 00   mov  0x11(%rip), %rsi   # boot_params slot (0x18)
//	0x07  48 8b 05 02 00 00 00   mov  0x02(%rip), %rax   # kernel entry slot (0x10)
//	0x0e  ff e0                  jmp  *%rax
//	0x10  kernel entry (8 bytes)
//	0x18  boot_params address (8 bytes)
//
// It needs nothing else: relocate_kernel (arch/x86/kernel/
// relocate_kernel_64.S) enters it in 64-bit mode on an identity-mapped
// page table covering the reservation, interrupts off, and the kernel's
// 64-bit entry (startup_64, arch/x86/kernel/head_64.S) takes its own stack
// and loads its own GDT and IDT (startup_64_setup_env) before it touches a
// segment register; it needs only %rsi = the zero page. u-root's default
// purgatory does the same plus a VGA reset.
var crashTrampoline = [...]byte{
	0x48, 0x8b, 0x35, 0x11, 0x00, 0x00, 0x00,
	0x48, 0x8b, 0x05, 0x02, 0x00, 0x00, 0x00,
	0xff, 0xe0,
}

const (
	trampolineEntrySlot      = 0x10
	trampolineBootParamsSlot = 0x18
)

// trampolineFor returns the trampoline page with its slots filled.
func trampolineFor(kernelEntry, bootParams uint64) []byte {
	code := make([]byte, 0x20)
	copy(code, crashTrampoline[:])
	binary.LittleEndian.PutUint64(code[trampolineEntrySlot:], kernelEntry)
	binary.LittleEndian.PutUint64(code[trampolineBootParamsSlot:], bootParams)
	return code
}

// crashControlRoom is what the kernel takes inside the reservation for a
// crash image besides its segments: kimage_alloc_crash_control_pages
// finds the control code page and every page of the identity page table
// machine_kexec_prepare builds (arch/x86/kernel/machine_kexec_64.c
// init_pgtable: all of RAM, in 2 MiB pages at worst, so one PMD page a GiB)
// in the holes between the segments. ramBytes is the machine's RAM.
func crashControlRoom(ramBytes uint64) uint64 {
	return 1*mib + pageUp(ramBytes>>30*4096)
}

// crashReservation returns the crash kernel reservation the kernel checks
// a crash image's segments against (crashk_res): the largest top-level
// "Crash kernel" range of /proc/iomem (with crashkernel=X,high there is a
// second, low one, crashk_low_res, that kexec_load does not accept).
func crashReservation(iomem memmap.Iomem) (memmap.Range, bool) {
	var best memmap.Range
	for _, r := range iomem.CrashKernel() {
		if r.Size() > best.Size() {
			best = r
		}
	}
	return best, !best.Empty()
}

// crashSegmentsBytes is how much of a reservation the crash image of prep
// with an initrd of initrdBytes takes when placed from an aligned start:
// the kernel's footprint, the initrd, one page each for the command line,
// the zero page and the trampoline, the ELF core header of a two-stage
// image (hdrBytes, 0 in direct mode), and the control room.
func crashSegmentsBytes(prep *segmentsPrep, initrdBytes int64, hdrBytes, ramBytes uint64) uint64 {
	_, _, footprint := kernelFootprint(prep)
	return footprint + pageUp(uint64(initrdBytes)) + 3*4096 + pageUp(hdrBytes) + crashControlRoom(ramBytes)
}

// elfcorehdrBudget bounds the ELF core header of a two-stage image for
// ReservationBytes, before it is built: the ELF header and one program
// header per possible CPU, VMCOREINFO, the kernel text and up to 256 RAM
// ranges.
func elfcorehdrBudget(possibleCPUs int) uint64 {
	return pageUp(64 + 56*uint64(possibleCPUs+2+256))
}

// crashE820 is the e820 table of a two-stage crash kernel, as
// arch/x86/kernel/crash.c crash_setup_memmap_entries gives it with
// kexec_file_load: as RAM only the firmware map's RAM below 1 MiB and the
// reservation, the ELF core header inside it marked reserved; every range
// of the firmware map that is not RAM (ACPI data and NVS, reserved) as it
// is. The crash kernel thus runs out of the reservation and leaves the
// crashed kernel's memory alone for /proc/vmcore.
func crashE820(fw []memmap.E820Entry, res, hdr memmap.Range) []memmap.E820Entry {
	type typed struct {
		r   memmap.Range
		typ uint32
	}
	var rs []typed
	add := func(r memmap.Range, typ uint32) {
		if !r.Empty() {
			rs = append(rs, typed{r, typ})
		}
	}
	for _, e := range fw {
		r := memmap.Range{Start: e.Addr, End: e.Addr + e.Size}
		if e.Type != memmap.E820RAM {
			add(r, e.Type)
			continue
		}
		add(r.Intersect(memmap.Range{Start: 0, End: mib}), memmap.E820RAM)
	}
	if hdr.Empty() {
		add(res, memmap.E820RAM)
	} else {
		add(memmap.Range{Start: res.Start, End: hdr.Start}, memmap.E820RAM)
		add(hdr, memmap.E820Reserved)
		add(memmap.Range{Start: hdr.End, End: res.End}, memmap.E820RAM)
	}
	slices.SortStableFunc(rs, func(a, b typed) int { return memmap.Compare(a.r, b.r) })
	out := make([]memmap.E820Entry, len(rs))
	for i, t := range rs {
		out[i] = memmap.E820Entry{Addr: t.r.Start, Size: t.r.Size(), Type: t.typ}
	}
	return out
}

// kernelFootprint returns the lowest and highest physical address of the
// kernel's PT_LOAD segments and the memory it needs from the lowest: the
// segments' span or init_size, whichever is larger.
func kernelFootprint(prep *segmentsPrep) (lo, hi, footprint uint64) {
	lo = ^uint64(0)
	for _, p := range prep.image.Progs {
		lo, hi = min(lo, p.Paddr), max(hi, p.Paddr+p.Memsz)
	}
	return lo, hi, pageUp(max(hi-lo, uint64(prep.header.InitSize)))
}

// planCrashSegments places a crash image inside the reservation res, from
// its start up: the kernel's segments moved together to the first address
// aligned to kernel_alignment (at least 2 MiB, as startup_64 needs) with
// init_size of room, then the initrd, the command line, the zero page and
// the trampoline, each page-aligned; what is left must hold the control
// room. The zero page gets prep's e820 table: in direct mode the recorded
// firmware map, all of RAM (the command line's memmap=exactmap words say
// the same). The initrd must end below initrd_addr_max, the command line
// and the zero page below 4 GiB. An error matching
// crashhandler.ErrReservationTooSmall names the size needed.
//
// A two-stage image (elfcorehdr not nil) also gets the ELF core header as
// a segment after the initrd, `elfcorehdr=ADDR` (bytes: the crash kernel's
// setup_elfcorehdr memparses it) at the end of its command line, and the
// restricted e820 table of crashE820.
func planCrashSegments(prep *segmentsPrep, elfData, initrdData []byte, cmdline string, elfcorehdr []byte, res memmap.Range, ramBytes uint64) (*segmentsImage, error) {
	need := crashSegmentsBytes(prep, int64(len(initrdData)), uint64(len(elfcorehdr)), ramBytes)
	_, _, kernelBytes := kernelFootprint(prep)
	tooSmall := func(format string, args ...any) error {
		return fmt.Errorf("%w: crash kernel reservation %#x-%#x (%.1f MiB): %s; the segments image needs %.1f MiB (decompressed kernel %.1f MiB at its init_size, initrd %.1f MiB, control pages %d KiB): raise crashkernel=",
			crashhandler.ErrReservationTooSmall, res.Start, res.End-1, float64(res.End-res.Start)/mib, fmt.Sprintf(format, args...),
			float64(need)/mib, float64(kernelBytes)/mib, float64(len(initrdData))/mib, crashControlRoom(ramBytes)>>10)
	}
	if res.End-res.Start < need {
		return nil, tooSmall("too small")
	}
	img := &segmentsImage{}
	rep := prep.report
	cursor := res.Start
	place := func(name string, buf []byte, size, align, limit uint64) (uint64, error) {
		at := (cursor + align - 1) &^ (align - 1)
		end := at + pageUp(size)
		if end > res.End {
			return 0, tooSmall("no room for the %s (%d bytes) at %#x", name, size, at)
		}
		if end > limit {
			return 0, fmt.Errorf("%w: the %s would end at %#x, above %#x: the crash kernel reservation is too high for it",
				ErrNoMemory, name, end, limit)
		}
		img.segments = append(img.segments, Segment{Name: name, Buf: buf, Phys: at, Size: pageUp(size)})
		cursor = end
		return at, nil
	}

	// The kernel: its PT_LOAD segments keep their distances, moved by a
	// multiple of the alignment.
	lo, _, footprint := kernelFootprint(prep)
	align := max(uint64(prep.header.Kernelalignment), minKernelAlign)
	if align&(align-1) != 0 {
		return nil, fmt.Errorf("kernel_alignment %#x is not a power of two", prep.header.Kernelalignment)
	}
	kstart := (res.Start + align - 1) &^ (align - 1)
	if kstart != lo && prep.header.RelocatableKernel == 0 {
		return nil, fmt.Errorf("%w: the kernel is linked at %#x and is not relocatable: it cannot run from the crash kernel reservation at %#x", ErrNoMemory, lo, res.Start)
	}
	if kstart+footprint > res.End {
		return nil, tooSmall("no room for the kernel's %d MiB at %#x", footprint>>20, kstart)
	}
	delta := kstart - lo
	for _, p := range prep.image.Progs {
		img.segments = append(img.segments, Segment{Name: "kernel", Buf: elfData[p.Off : p.Off+p.Filesz], Phys: p.Paddr + delta, Size: p.Memsz})
	}
	cursor = kstart + footprint
	rep.KernelStart, rep.KernelEnd = kstart, kstart+footprint
	rep.KernelEntry = prep.image.Entry + delta
	rep.Relocated = delta != 0

	initrdMax := uint64(prep.header.InitrdAddrMax)
	if initrdMax == 0 {
		initrdMax = 0x37ffffff // boot.rst: the default for old protocols
	}
	var initrdAt uint64
	if len(initrdData) > 0 {
		var err error
		if initrdAt, err = place("initrd", initrdData, uint64(len(initrdData)), 4096, initrdMax+1); err != nil {
			return nil, err
		}
	}
	e820 := prep.e820
	if elfcorehdr != nil {
		hdrAt, err := place("elfcorehdr", elfcorehdr, uint64(len(elfcorehdr)), 4096, ^uint64(0))
		if err != nil {
			return nil, err
		}
		cmdline += fmt.Sprintf(" elfcorehdr=%#x", hdrAt)
		e820 = crashE820(prep.e820, res, memmap.Range{Start: hdrAt, End: hdrAt + pageUp(uint64(len(elfcorehdr)))})
		if len(e820) > memmap.E820MaxZeroPage {
			return nil, fmt.Errorf("the crash kernel's memory map has %d ranges, the boot parameters hold %d", len(e820), memmap.E820MaxZeroPage)
		}
	}
	if n := uint32(len(cmdline)); prep.header.CmdLineSize != 0 && n > prep.header.CmdLineSize {
		return nil, fmt.Errorf("%w: crash command line: %d bytes, the kernel takes at most %d", crashhandler.ErrCmdlineTooLong, n, prep.header.CmdLineSize)
	}
	cmdAt, err := place("cmdline", append([]byte(cmdline), 0), uint64(len(cmdline)+1), 4096, below4G)
	if err != nil {
		return nil, err
	}
	bp, efiDropped, err := buildBootParams(bootParamsInput{
		Running: prep.running, Kernel: prep.kernel, E820: e820,
		InitrdAddr: initrdAt, InitrdSize: uint64(len(initrdData)), CmdlineAddr: cmdAt,
	})
	if err != nil {
		return nil, err
	}
	rep.EFIDropped = efiDropped
	if rep.BootParams, err = place("boot_params", bp, uint64(len(bp)), 4096, below4G); err != nil {
		return nil, err
	}
	tramp := trampolineFor(rep.KernelEntry, rep.BootParams)
	if img.entry, err = place("purgatory", tramp, uint64(len(tramp)), 4096, ^uint64(0)); err != nil {
		return nil, err
	}
	if left := res.End - cursor; left < crashControlRoom(ramBytes) {
		return nil, tooSmall("%d KiB left for the kexec control pages, want %d KiB", left>>10, crashControlRoom(ramBytes)>>10)
	}
	img.free = cursor
	for _, s := range img.segments {
		if s.Phys&^4095 < res.Start || pageUp(s.Phys+s.Size) > res.End {
			return nil, fmt.Errorf("internal error: %s segment %#x+%#x outside the reservation %#x-%#x", s.Name, s.Phys, s.Size, res.Start, res.End)
		}
	}
	return img, nil
}

// CrashSegmentsLoader loads a crash image with kexec_load(...,
// KEXEC_ON_CRASH). KexecLoader implements it on Linux; a Loader given in
// Options must implement it for the crash path's segments method.
type CrashSegmentsLoader interface {
	// SegmentsLoadOnCrash calls kexec_load(entry, segments,
	// KEXEC_ON_CRASH|KEXEC_ARCH_DEFAULT). Errors for EPERM must match
	// ErrKexecLoadForbidden.
	SegmentsLoadOnCrash(entry uint64, segments []Segment) error
}

// crashSegments is Image.Segments: a built image prepared for the crash
// path's kexec_load. It implements crashhandler.SegmentsImage.
type crashSegments struct {
	mc     *Machine
	prep   *segmentsPrep
	initrd *os.File
	bytes  int64 // the initrd's
	ram    uint64
	dryRun bool // BuildOptions.DryRun
}

var _ crashhandler.SegmentsImage = (*crashSegments)(nil)

// ReservationBytes implements crashhandler.SegmentsImage.
func (c *crashSegments) ReservationBytes(mode crashhandler.Mode, possibleCPUs int) int64 {
	var hdr uint64
	if mode == crashhandler.ModeTwoStage {
		hdr = elfcorehdrBudget(possibleCPUs)
	}
	return int64(crashSegmentsBytes(c.prep, c.bytes, hdr, c.ram))
}

// LoadOnCrash implements crashhandler.SegmentsImage: it reads the
// reservation from Root/proc/iomem, for a two-stage image (the command
// line's fastreboot.crash= marker says) builds the ELF core header from
// Root (crashhandler.ReadElfcorehdrInput), plans the image inside the
// reservation (planCrashSegments) and calls the loader's
// SegmentsLoadOnCrash (in a dry run it only plans). The report of the
// image (Image.Report.Segments) then shows the placement.
func (c *crashSegments) LoadOnCrash(cmdline string) error {
	mc := c.mc
	mc.mu.Lock()
	defer mc.mu.Unlock()
	sl, ok := mc.opts.Loader.(CrashSegmentsLoader)
	if !ok && !c.dryRun {
		return fmt.Errorf("segments load method: the loader %T cannot call kexec_load (it does not implement CrashSegmentsLoader)", mc.opts.Loader)
	}
	path := filepath.Join(mc.opts.Root, pathIomem)
	iomem, err := memmap.ReadIomem(mc.opts.Root)
	if err != nil {
		return fmt.Errorf("segments load method: the crash kernel reservation is read from %w", err)
	}
	res, ok := crashReservation(iomem)
	if !ok {
		return fmt.Errorf("%w: %s names no %q range (or it was read without CAP_SYS_ADMIN, which shows every address as 0)",
			crashhandler.ErrNoReservation, path, memmap.NameCrashKernel)
	}
	var hdr []byte
	if mode, _ := crashhandler.CrashModeOf(cmdline); mode == crashhandler.ModeTwoStage {
		in, err := crashhandler.ReadElfcorehdrInput(mc.opts.Root)
		if err != nil {
			return err
		}
		if hdr, err = crashhandler.BuildElfcorehdr(in); err != nil {
			return err
		}
	}
	return c.withMapped(func(elfData, initrdData []byte) error {
		img, err := planCrashSegments(c.prep, elfData, initrdData, cmdline, hdr, res, c.ram)
		if err != nil {
			return err
		}
		img.fillReport(c.prep.report)
		c.prep.report.Avoided = []memmap.Avoided{{Range: memmap.Range{Start: img.free, End: res.End}, Why: "left free in the crash kernel reservation for the kexec control page and identity page tables"}}
		if c.dryRun {
			mc.log.Info("dry run: would call kexec_load(ON_CRASH)", "entry", fmt.Sprintf("%#x", img.entry), "segments", len(img.segments))
			return nil
		}
		// A refused kexec_load already matches ErrKexecLoadForbidden (the
		// one kind crashhandler re-exports); any other failure happened
		// after the kernel freed the armed image.
		err = sl.SegmentsLoadOnCrash(img.entry, img.segments)
		if err != nil && !errors.Is(err, ErrKexecLoadForbidden) {
			err = fmt.Errorf("%w: %w", crashhandler.ErrKexecLoadFailed, err)
		}
		return err
	})
}
