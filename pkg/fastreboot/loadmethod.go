package fastreboot

import (
	"errors"
	"fmt"
	"time"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// LoadMethod says which system call Stage loads the image with.
type LoadMethod string

const (
	// LoadFile (the default) loads the bzImage and the initrd with
	// kexec_file_load(2). The kernel verifies the image's signature where
	// lockdown or CONFIG_KEXEC_SIG_FORCE ask for it, and at reboot its
	// purgatory hashes every segment and the bzImage decompresses itself:
	// both happen inside the downtime. It is the only method that works
	// under lockdown (Secure Boot), and the one the crash path uses.
	LoadFile LoadMethod = "file"
	// LoadSegments loads with the legacy kexec_load(2): the kernel
	// decompressed ahead of time (cached as its own module, see KernelELF),
	// the initrd, the command line and boot parameters placed as segments
	// in RAM of the recorded firmware memory map, and u-root's purgatory,
	// which checks no digest. The reboot skips the decompression and the
	// digest check. The kernel refuses kexec_load under lockdown (EPERM):
	// Stage then fails with an error wrapping ErrKexecLoadForbidden and
	// never falls back to LoadFile by itself.
	LoadSegments LoadMethod = "segments"
)

// ParseLoadMethod parses "file" or "segments"; "" is LoadFile.
func ParseLoadMethod(s string) (LoadMethod, error) {
	switch m := LoadMethod(s); m {
	case "":
		return LoadFile, nil
	case LoadFile, LoadSegments:
		return m, nil
	}
	return "", fmt.Errorf("load method %q: want %q or %q", s, LoadFile, LoadSegments)
}

func (m LoadMethod) String() string { return string(m) }

// Sentinel errors of the segments load method; test with errors.Is.
var (
	// ErrKexecLoadForbidden: the kernel forbids the legacy kexec_load that
	// LoadSegments needs (lockdown, as under UEFI Secure Boot, or a
	// kexec_load that returned EPERM). LoadFile with a signed kernel is the
	// way to kexec there. Errors wrapping it also wrap ErrNotPermitted.
	ErrKexecLoadForbidden = kexecsys.ErrKexecLoadForbidden
	// ErrKernelELFMismatch: the decompressed kernel in the cache, or the
	// one just decompressed, does not hash to the digest recorded for its
	// bzImage. The image is refused.
	ErrKernelELFMismatch = errors.New("decompressed kernel does not match its recorded digest")
)

// Segment is one piece of a kexec_load image: Buf is copied to physical
// address Phys, and the rest of the Size bytes there are zeroed.
type Segment struct {
	// Name says what the segment holds: "kernel", "initrd", "cmdline",
	// "boot_params" or "purgatory".
	Name string
	Buf  []byte
	Phys uint64
	Size uint64
}

// SegmentsLoader loads a kexec_load image. KexecLoader implements it on
// Linux; a Loader given in Options must implement it too for
// LoadSegments. Like FileLoad it must replace a previously loaded image
// only on success (kexec_load does).
type SegmentsLoader interface {
	// SegmentsLoad calls kexec_load(entry, segments, KEXEC_ARCH_DEFAULT).
	SegmentsLoad(entry uint64, segments []Segment) error
}

// SegmentInfo describes one placed segment in a report.
type SegmentInfo struct {
	Name string `json:"name"`
	// Phys is the physical address, Size the bytes reserved there, Bytes
	// those copied (the rest is zeroed).
	Phys  uint64 `json:"phys"`
	Size  uint64 `json:"size"`
	Bytes int64  `json:"bytes"`
}

// SegmentsReport says how Stage loaded an image with LoadSegments.
type SegmentsReport struct {
	// KernelELF is the decompressed kernel that was loaded; zero when
	// Compressed.
	KernelELF KernelELF `json:"kernel_elf"`
	// Compressed is true when the bzImage's compressed kernel was loaded
	// as it is (StageOptions.CompressedKernel): it decompresses itself
	// after the jump, as after kexec_file_load.
	Compressed bool `json:"compressed,omitempty"`
	// KernelELFMapped is true when the decompressed kernel was one its
	// caller mapped (StageOptions.KernelELF: a two-stage crash stage
	// loading production's from the crashed kernel's memory), not the
	// cache's.
	KernelELFMapped bool `json:"kernel_elf_mapped,omitempty"`
	// Decompressed is true when this Stage decompressed the bzImage (it was
	// not cached yet), in DecompressTime; false when the cache held it.
	Decompressed   bool          `json:"decompressed"`
	DecompressTime time.Duration `json:"decompress_ns"`
	// Entry is the purgatory's entry, KernelEntry the kernel's 64-bit
	// entry it jumps to, BootParams the address of the zero page it
	// passes in %rsi.
	Entry       uint64 `json:"entry"`
	KernelEntry uint64 `json:"kernel_entry"`
	BootParams  uint64 `json:"boot_params"`
	// KernelStart and KernelEnd bound the memory the kernel occupies
	// (its segments, at least init_size). Relocated is true when its
	// linked physical address was not usable and the kernel was moved.
	KernelStart uint64        `json:"kernel_start"`
	KernelEnd   uint64        `json:"kernel_end"`
	Relocated   bool          `json:"relocated"`
	Segments    []SegmentInfo `json:"segments"`
	// MemoryMap says where the e820 table given to the next kernel came
	// from: "recorded" (StageOptions.MemoryMap) or the sysfs path read.
	MemoryMap   string `json:"memory_map"`
	E820Entries int    `json:"e820_entries"`
	// Avoided lists the RAM kept free: the crash kernel reservation,
	// regions kept by memmap= and other non-RAM claims in /proc/iomem.
	Avoided []memmap.Avoided `json:"avoided,omitempty"`
	// EFIDropped is true when the running kernel was booted through EFI:
	// the next kernel gets no EFI runtime services (the legacy loader
	// cannot pass the EFI runtime mapping that kexec_file_load does) and
	// finds ACPI through the RSDP address the running kernel recorded.
	EFIDropped bool `json:"efi_dropped,omitempty"`
}
