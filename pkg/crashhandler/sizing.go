package crashhandler

import (
	"fmt"
	"io"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Budgets used by RequiredReservation. They are exported so that reports can
// show them; see RequiredReservation for where each comes from.
const (
	// PageSize is the x86-64 page size.
	PageSize = 4096
	// ElfcorehdrBudget covers the ELF core header that kexec_file_load puts
	// into the reservation for an on-crash image (arch/x86/kernel/crash.c,
	// crash_load_segments). With CONFIG_CRASH_HOTPLUG it is sized for
	// 2 + NR_CPUS + CRASH_MAX_MEMORY_RANGES program headers of 56 bytes:
	// 0.9 MiB with Debian's NR_CPUS=8192 and 8192 ranges.
	ElfcorehdrBudget = 1 << 20
	// LoaderBudget covers the other small segments of an x86 kexec_file
	// image (arch/x86/kernel/kexec-bzimage64.c): the purgatory and its stack,
	// boot_params with the command line, the EFI runtime memory map and
	// setup_data, and the control page.
	LoaderBudget = 1 << 20
	// TwoStageBase is what a two-stage crash kernel with one CPU uses
	// besides its image, its rootfs and the reload: slab, page tables,
	// per-CPU areas, the recovery program's heap and stacks. A 512M
	// reservation left MemTotal 465 MB to a Debian 6.1 crash kernel
	// (docs/kernel-facts.md, Crash kernel memory).
	TwoStageBase = 64 << 20
	// PerCPUBudget is what each further CPU costs a two-stage crash kernel,
	// which brings every CPU up (see twoStageWords): per-CPU areas, the
	// idle and per-CPU kernel threads' stacks, per-CPU slab and page lists.
	// Measured on Debian's 6.1 kernel in a 384 MiB QEMU guest: 4 CPUs left
	// 4.2 MiB less free memory than nr_cpus=1, 1.4 MiB a CPU.
	PerCPUBudget = 2 << 20
	// PossibleCPUBudget is what each possible but absent CPU (a hot-plug
	// slot the firmware lists) costs: the kernel sets up its per-CPU area
	// at boot. Measured alongside PerCPUBudget: 260 KiB of Percpu a CPU.
	PossibleCPUBudget = 512 << 10
	// DirectMargin is the headroom a direct crash kernel needs inside the
	// reservation until its memmap=exactmap words give it all RAM (they are
	// parsed in setup_arch, before the first memblock allocation).
	DirectMargin = 16 << 20
	// InitrdExpansion estimates the unpacked size of a compressed initrd
	// when the caller does not give it (Image.InitrdUnpackedBytes).
	InitrdExpansion = 3
	// MinimalResident is what a two-stage crash kernel booted from a
	// minimal crash initramfs (ImageSize.ReloadInitrdBytes set) never
	// gets as RAM besides its struct pages: the kernel image with its
	// bss, the first per-CPU chunk, the elfcorehdr, firmware areas.
	// Measured (Debian 6.1, QEMU q35, -smp 4,maxcpus=16, the crash
	// kernel from TestCrashMinimalInitrd in a 416 MiB reservation): 426612
	// kB of physical pages, MemTotal 365496 kB: 59.7 MiB, of which 6.5
	// MiB struct pages (counted by the 64/63 factor).
	MinimalResident = 54 << 20
	// MinimalStageBase is what that crash kernel and the fastreboot
	// process running as its PID 1 use besides the rootfs, the CPU
	// budgets and the reload: slab, page tables, kernel stacks, the Go
	// runtime. Measured alongside MinimalResident: MemFree 309424 kB at
	// the crash stage's start, so 54.8 MiB in use, of which 25.2 MiB the
	// unpacked crash initramfs and 12 MiB the budgets of 4 CPUs and 12
	// hot-plug slots: 17.6 MiB.
	MinimalStageBase = 18 << 20
	// MinimalHeadroom is the free memory that crash kernel must keep at
	// its peak: the page allocator's watermarks and per-CPU lists, and
	// what the sampling of MemFree every 20 ms misses. In a 256 MiB
	// reservation the model without it left 4.8 MiB free at the peak,
	// and kexec_file_load's destination pages ran out: "System is
	// deadlocked on memory" (the OOM killer spares PID 1). In 272 MiB
	// (MemTotal 220088 kB, MemFree 164068 kB at the stage's start) the
	// lowest MemFree sampled was 14896 kB: 145.7 MiB used by the recovery,
	// 5 MiB more than the 416 MiB run sampled and the model counts.
	MinimalHeadroom = 8 << 20
	// ReservationAlign: advice is rounded up to this (x86 places the
	// reservation on a 16 MiB boundary, CRASH_ALIGN).
	ReservationAlign = 16 << 20
)

// ImageSize is what RequiredReservation needs to know about an image.
type ImageSize struct {
	KernelBytes int64 `json:"kernel_bytes"`
	InitrdBytes int64 `json:"initrd_bytes"`
	// KernelInitSize is the bzImage setup header's init_size: the memory
	// the kernel needs from its load address to boot, decompression
	// included. kexec_file_load reserves PAGE_ALIGN(init_size) for the
	// kernel segment (kexec-bzimage64.c: kbuf.memsz = PAGE_ALIGN(init_size)).
	KernelInitSize int64 `json:"kernel_init_size"`
	// KernelAlign is the setup header's kernel_alignment (the kernel segment
	// is placed on that boundary).
	KernelAlign int64 `json:"kernel_align"`
	// InitrdUnpackedBytes is the size of the initrd's files once unpacked
	// into the rootfs; 0 estimates InitrdExpansion times InitrdBytes.
	InitrdUnpackedBytes int64 `json:"initrd_unpacked_bytes,omitempty"`
	// CPUs is the number of CPUs the crash kernel will bring up (the
	// machine's present CPUs); 0 counts as 1. PossibleCPUs counts the
	// hot-plug slots too (0: as many as CPUs).
	CPUs         int `json:"cpus,omitempty"`
	PossibleCPUs int `json:"possible_cpus,omitempty"`
	// ReloadInitrdBytes is the initrd of the production image a two-stage
	// crash kernel loads again, when it is not InitrdBytes (a minimal crash
	// initramfs holds the crash stage's program instead of production's
	// initrd pieces); 0 means InitrdBytes.
	ReloadInitrdBytes int64 `json:"reload_initrd_bytes,omitempty"`
	// ReloadWithFile: the two-stage crash kernel will reload production
	// with kexec_file_load, because the kernel forbids kexec_load
	// (lockdown), and holds the kernel and initrd it read besides the
	// image. Only the minimal crash initramfs's sizing counts the
	// difference (see RequiredReservation).
	ReloadWithFile bool `json:"reload_with_file,omitempty"`
}

// Sizing is the outcome of RequiredReservation, in bytes.
type Sizing struct {
	Mode Mode `json:"mode"`
	// Method is LoadSegments for a SegmentsSizing; empty for the file
	// method's RequiredReservation.
	Method LoadMethod `json:"method,omitempty"`
	// Load is what kexec_file_load places into the reservation.
	Load int64 `json:"load"`
	// Runtime is what the crash kernel needs to run out of the reservation
	// (two-stage only).
	Runtime int64 `json:"runtime"`
	// Reload is what loading the production image again from inside the
	// crash kernel costs (two-stage only).
	Reload int64 `json:"reload"`
	// Total is the reservation to ask for: (Load+Runtime+Reload) plus the
	// struct page overhead, rounded up to ReservationAlign.
	Total int64 `json:"total"`
	// Minimal: sized for a minimal crash initramfs, Total counts
	// max(Load, Runtime+Reload) (see RequiredReservation).
	Minimal bool `json:"minimal_initrd,omitempty"`
}

// Advice says what to put on the kernel command line.
func (s Sizing) Advice() string {
	return fmt.Sprintf("add crashkernel=%dM to the kernel command line (or raise the existing crashkernel=) and reboot", s.Total>>20)
}

// Breakdown lists the parts of Total.
func (s Sizing) Breakdown() string {
	if s.Minimal {
		load := "image segments"
		if s.Method == LoadSegments {
			load = "kexec_load segments"
		}
		return fmt.Sprintf("the larger of %s %s (armed) and, at the crash stage's peak, crash kernel runtime %s (resident kernel, its allocations, the crash init program) + reloading the production image %s",
			load, mib(s.Load), mib(s.Runtime), mib(s.Reload))
	}
	if s.Method == LoadSegments {
		b := fmt.Sprintf("kexec_load segments %s (decompressed kernel at its init_size, initrd, boot data, control pages)", mib(s.Load))
		if s.Mode == ModeTwoStage {
			b += fmt.Sprintf(" + crash kernel runtime %s + reloading the production image %s", mib(s.Runtime), mib(s.Reload))
		}
		return b
	}
	if s.Mode == ModeDirect {
		return fmt.Sprintf("image segments %s + boot headroom %s", mib(s.Load), mib(DirectMargin))
	}
	return fmt.Sprintf("image segments %s + crash kernel runtime %s + reloading the production image %s",
		mib(s.Load), mib(s.Runtime), mib(s.Reload))
}

// RequiredReservation computes the crashkernel= size an image needs in a
// mode. The formula follows what the kernel does (Linux 6.1, x86-64):
//
// Load, what kexec_file_load(KEXEC_FILE_ON_CRASH) puts into the reservation
// (kernel/kexec_file.c places every segment of a crash image inside
// crashk_res; arch/x86/kernel/kexec-bzimage64.c lists them):
//
//	Load = roundup(init_size, kernel_alignment) + kernel_alignment   kernel segment + placement slack
//	     + PAGE_ALIGN(initrd)                                         initrd segment
//	     + ElfcorehdrBudget + LoaderBudget                            elfcorehdr, purgatory, boot_params, ...
//
// The crash kernel sees only the reservation as RAM (arch/x86/kernel/crash.c
// crash_setup_memmap_entries), minus the elfcorehdr.
//
// Direct mode: the crash kernel's memmap=exactmap words hand it all RAM
// early in setup_arch, so it only needs to boot:
//
//	Total = Load + DirectMargin
//
// Two-stage mode: the crash kernel runs out of the reservation and loads the
// production image again with a normal kexec_file_load:
//
//	Runtime = TwoStageBase + unpacked initrd (the rootfs lives in RAM)
//	        + (CPUs - 1) * PerCPUBudget + (PossibleCPUs - CPUs) * PossibleCPUBudget
//	Reload  = (kernel + initrd)                          the image in memfds (the cache)
//	        + (kernel + initrd)                          kernel_read_file copies (kexec_file.c)
//	        + PAGE_ALIGN(init_size) + PAGE_ALIGN(initrd) destination pages: kimage_load_normal_segment
//	                                                     allocates every page of a segment's memsz
//	Total   = Load + Runtime + Reload
//
// Two-stage with a minimal crash initramfs (ReloadInitrdBytes set: the
// crash initrd is the crash init piece and the handoff piece, see
// fastreboot.BuildOptions.CrashInit), sized from what the crash kernel was
// measured to use rather than adding every phase. Load must fit when the
// image is armed; once the crash kernel runs, its initrd segment is freed
// after unpacking and its kernel segment shrinks to the kernel image, so
// they are not counted again. The crash stage moves the carried modules
// into the cache, and Stage releases all but the kernel once production's
// initrd (R = ReloadInitrdBytes) is assembled (fastreboot.StageOptions.ReleaseCache).
// It reloads production with kexec_load of the compressed kernel
// (fastreboot.StageOptions.CompressedKernel), which reads the cache's
// kernel and the assembled initrd in place (kexecsys.Load passes
// page-aligned segments without a copy) into destination pages, so at the
// peak, the end of kexec_load, it holds:
//
//	Runtime = MinimalResident + MinimalStageBase + MinimalHeadroom + CPU budgets
//	        + unpacked crash init piece (InitrdUnpackedBytes: the binary)
//	Reload  = kernel + R                  the cache's kernel, the assembled initrd
//	        + PAGE_ALIGN(init_size) + R   destination pages
//	        [+ kernel + R]                ReloadWithFile: kernel_read_file copies
//	Total   = max(Load, Runtime + Reload)
//
// Measured (TestCrashMinimalInitrd, kernel 8.2 MB, R 27.3 MB, init_size
// 63.6 MiB): reloading with kexec_file_load, the lowest MemFree while
// recovering in a 416 MiB reservation was 165204 kB, 140.8 MiB below the
// stage's start, where this model counts 140.5 MiB; a 256 MiB reservation
// ran out of memory (see MinimalHeadroom) and 272 MiB recovered. Reloading
// with kexec_load, the model asks 240 MiB, and in a 240 MiB reservation the
// lowest MemFree was 32052 kB.
//
// In every case Total is divided by (1 - 64/4096) for the struct page of
// every page the crash kernel manages, and rounded up to ReservationAlign.
//
// Check against what ran on Debian 6.1 (init_size 63.6 MiB, 8 MB kernel,
// 14 MB initrd; docs/kernel-facts.md, Crash kernel memory): two-stage needs
// 320 MiB (192M ran out of memory while the crash kernel loaded the image,
// 512M worked); direct needs 112 MiB (128M worked).
func RequiredReservation(img ImageSize, mode Mode) Sizing {
	if mode == "" {
		mode = ModeTwoStage
	}
	align := img.KernelAlign
	if align <= 0 {
		align = 2 << 20
	}
	initrd := pageAlign(img.InitrdBytes)
	s := Sizing{Mode: mode}
	s.Load = roundUp(img.KernelInitSize, align) + align + initrd + ElfcorehdrBudget + LoaderBudget
	sum := s.Load + DirectMargin
	if mode == ModeTwoStage {
		unpacked := img.InitrdUnpackedBytes
		if unpacked <= 0 {
			unpacked = InitrdExpansion * img.InitrdBytes
		}
		s.Runtime = TwoStageBase + pageAlign(unpacked)
		cpus := max(img.CPUs, 1)
		s.Runtime += int64(cpus-1)*PerCPUBudget + int64(max(img.PossibleCPUs-cpus, 0))*PossibleCPUBudget
		reload := initrd
		if img.ReloadInitrdBytes > 0 {
			reload = pageAlign(img.ReloadInitrdBytes)
		}
		image := pageAlign(img.KernelBytes) + reload
		s.Reload = 2*image + pageAlign(img.KernelInitSize) + reload
		sum = s.Load + s.Runtime + s.Reload
		if img.ReloadInitrdBytes > 0 {
			if !img.ReloadWithFile {
				s.Reload -= image
			}
			s.Minimal = true
			s.Runtime += MinimalResident + MinimalStageBase + MinimalHeadroom - TwoStageBase
			sum = max(s.Load, s.Runtime+s.Reload)
		}
	}
	// struct page: 64 bytes per 4 KiB page managed.
	sum = sum * 64 / 63
	s.Total = roundUp(sum, ReservationAlign)
	return s
}

func pageAlign(n int64) int64 { return roundUp(n, PageSize) }

func roundUp(n, to int64) int64 {
	if n <= 0 {
		return 0
	}
	return (n + to - 1) / to * to
}

// KernelHeader holds the x86 boot protocol setup header fields the crash
// path needs (Documentation/arch/x86/boot.rst).
type KernelHeader struct {
	Version     uint16 `json:"version"`
	InitSize    int64  `json:"init_size"`
	Alignment   int64  `json:"kernel_alignment"`
	CmdlineSize int64  `json:"cmdline_size"`
}

// xlfKernel64 is XLF_KERNEL_64 in xloadflags: a 64-bit entry point.
const xlfKernel64 = 1 << 0

// ReadKernelHeader reads the setup header of an x86 bzImage
// (bootimage.ReadSetupHeader). It checks what the kernel's bzImage64_probe
// checks for kexec_file_load (magic, boot flag, protocol >= 2.12,
// XLF_KERNEL_64) and a non-zero init_size, and wraps ErrInvalidImage
// otherwise.
func ReadKernelHeader(r io.ReaderAt) (KernelHeader, error) {
	b, err := bootimage.ReadSetupHeader(r)
	if err != nil {
		return KernelHeader{}, fmt.Errorf("%w: %w", ErrInvalidImage, err)
	}
	h := KernelHeader{
		Version:     b.Protocolversion,
		Alignment:   int64(b.Kernelalignment),
		CmdlineSize: int64(b.CmdLineSize),
		InitSize:    int64(b.InitSize),
	}
	if h.Version < 0x020c {
		return h, fmt.Errorf("%w: boot protocol %d.%02d, kexec_file_load needs >= 2.12", ErrInvalidImage, h.Version>>8, h.Version&0xff)
	}
	if b.XLoadFlags&xlfKernel64 == 0 {
		return h, fmt.Errorf("%w: bzImage has no 64-bit entry point (XLF_KERNEL_64)", ErrInvalidImage)
	}
	if h.InitSize == 0 {
		return h, fmt.Errorf("%w: bzImage init_size is 0", ErrInvalidImage)
	}
	return h, nil
}

// maxCrashCmdline is the longest crash command line (without its NUL) that
// bzImage64_load accepts: it needs cmdline_len (with NUL) + 30 bytes for
// "elfcorehdr=0x<addr> " to fit in the header's cmdline_size.
func maxCrashCmdline(h KernelHeader) int {
	size := h.CmdlineSize
	if size <= 0 || size > 2047 {
		size = 2047
	}
	return int(size) - 1 - 30
}

func checkCrashCmdline(cmdline string, h KernelHeader) error {
	if max := maxCrashCmdline(h); len(cmdline) > max {
		return fmt.Errorf("%w: %d bytes, at most %d fit with the elfcorehdr= the kernel prepends (cmdline_size %d); the memory map words are %s",
			ErrCmdlineTooLong, len(cmdline), max, h.CmdlineSize, memmapShare(cmdline))
	}
	return nil
}

func memmapShare(cmdline string) string {
	n := 0
	params, _ := bootimage.SplitCmdline(cmdline)
	for _, w := range params {
		if strings.HasPrefix(w, "memmap=") {
			n += len(w) + 1
		}
	}
	return fmt.Sprintf("%d bytes of it", n)
}
