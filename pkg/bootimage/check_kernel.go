package bootimage

import (
	"errors"
	"fmt"
	"io"

	"github.com/u-root/u-root/pkg/boot/bzimage"
)

// Setup header facts (Documentation/arch/x86/boot.rst) that
// arch/x86/kernel/kexec-bzimage64.c checks before it loads a kernel.
const (
	setupHeaderEnd  = 0x268  // end of the header fields through protocol 2.15
	bootFlag        = 0xAA55 // at 0x1fe
	minProtocol     = 0x020C // 2.12: xloadflags, the 64-bit entry point
	loadedHigh      = 0x01   // loadflags: protected-mode code at 0x100000 (bzImage)
	xlfKernel64     = 0x01   // xloadflags: has the 64-bit entry point at +0x200
	xlfAbove4G      = 0x02   // xloadflags: can be loaded above 4 GiB
	sectorSize      = 512
	defaultSetupSec = 4 // "if the setup_sects field contains 0, the real value is 4"
)

// KernelInfo is what a bzImage's setup header says about the kernel.
type KernelInfo struct {
	// Protocol is the boot protocol version, e.g. 0x020f for 2.15.
	Protocol uint16
	// Version is the kernel's version string as `file` shows it
	// ("6.1.0-56-amd64 (debian-kernel@lists.debian.org) #1 SMP ..."), or
	// "" if the header points at none.
	Version string
	// SetupBytes is the size of the real-mode part, (setup_sects+1)*512.
	SetupBytes int64
	// ImageBytes is how long the file must be: SetupBytes plus the
	// protected-mode code (syssize*16). Signed kernels are longer.
	ImageBytes int64
	// CmdlineSize is the longest command line the kernel takes, without
	// the NUL.
	CmdlineSize uint32
	// InitSize is the memory the kernel needs from its load address
	// until it has finished decompressing itself.
	InitSize uint32
}

// ReadSetupHeader reads the x86 boot protocol setup header at the start of
// the bzImage in r (Documentation/arch/x86/boot.rst; u-root's
// bzimage.LinuxHeader parses it) and checks only that it is one: the
// "HdrS" magic at 0x202 and the 0xAA55 boot flag at 0x1fe. What a loader
// needs beyond that is the caller's to check (InspectKernel checks what
// kexec_file_load needs). Failures wrap ErrNotBzImage; read errors from r
// are returned as they are. It is the one reader of the header: the update
// path, the segments load method and the crash path's sizing use it.
func ReadSetupHeader(r io.ReaderAt) (bzimage.LinuxHeader, error) {
	var h bzimage.LinuxHeader
	buf := make([]byte, setupHeaderEnd)
	if n, err := r.ReadAt(buf, 0); n < len(buf) {
		if err == nil || errors.Is(err, io.EOF) {
			return h, fmt.Errorf("%w: truncated: read %d bytes of the %d-byte setup header", ErrNotBzImage, n, len(buf))
		}
		return h, fmt.Errorf("read bzImage setup header: %w", err)
	}
	if err := h.UnmarshalBinary(buf); err != nil {
		return h, fmt.Errorf("%w: setup header: %v", ErrNotBzImage, err)
	}
	if h.HeaderMagic != bzimage.HeaderMagic {
		return h, fmt.Errorf("%w: no %q magic at offset 0x202 (found % x)", ErrNotBzImage, bzimage.HeaderMagic[:], h.HeaderMagic[:])
	}
	if h.Bootsectormagic != bootFlag {
		return h, fmt.Errorf("%w: no x86 boot sector signature 0x%04x at offset 0x1fe (found 0x%04x)", ErrNotBzImage, bootFlag, h.Bootsectormagic)
	}
	return h, nil
}

// InspectKernel reads the x86 setup header of the bzImage in r (size bytes
// long) and checks what kexec_file_load (arch/x86/kernel/kexec-bzimage64.c)
// needs: the "HdrS" magic and 0xAA55 boot flag, boot protocol 2.12 or
// later, LOADED_HIGH, XLF_KERNEL_64 (a 64-bit entry point),
// XLF_CAN_BE_LOADED_ABOVE_4G, a relocatable kernel, and a file at least as
// long as setup_sects and syssize say. Failures wrap ErrNotBzImage; read
// errors from r are returned as they are.
//
// It reads only the header and the version string, not the compressed
// kernel.
func InspectKernel(r io.ReaderAt, size int64) (*KernelInfo, error) {
	// kexec-bzimage64.c refuses anything shorter than two sectors.
	if size < 2*sectorSize {
		return nil, fmt.Errorf("%w: %d bytes, shorter than a setup header (%d)", ErrNotBzImage, size, 2*sectorSize)
	}
	h, err := ReadSetupHeader(r)
	if err != nil {
		return nil, err
	}
	if h.Protocolversion < minProtocol {
		return nil, fmt.Errorf("%w: boot protocol %s, kexec_file_load needs %s or later", ErrNotBzImage, protocolString(h.Protocolversion), protocolString(minProtocol))
	}

	setupSects := int64(h.SetupSects)
	if setupSects == 0 {
		setupSects = defaultSetupSec
	}
	info := &KernelInfo{
		Protocol:    h.Protocolversion,
		SetupBytes:  (setupSects + 1) * sectorSize,
		CmdlineSize: h.CmdLineSize,
		InitSize:    h.InitSize,
	}
	codeBytes := int64(h.Syssize) * 16
	info.ImageBytes = info.SetupBytes + codeBytes
	if size < info.ImageBytes {
		return nil, fmt.Errorf("%w: truncated: %d bytes, but setup_sects %d and syssize %d say %d", ErrNotBzImage, size, setupSects, h.Syssize, info.ImageBytes)
	}
	if codeBytes == 0 {
		return nil, fmt.Errorf("%w: syssize is 0: no protected-mode code", ErrNotBzImage)
	}
	if end := int64(h.PayloadOffset) + int64(h.PayloadSize); end > codeBytes {
		return nil, fmt.Errorf("%w: compressed payload (offset %d, length %d) runs past the protected-mode code (%d bytes)", ErrNotBzImage, h.PayloadOffset, h.PayloadSize, codeBytes)
	}

	if h.Loadflags&loadedHigh == 0 {
		return nil, fmt.Errorf("%w: LOADED_HIGH is not set in loadflags (0x%02x): a zImage", ErrNotBzImage, h.Loadflags)
	}
	if h.XLoadFlags&xlfKernel64 == 0 {
		return nil, fmt.Errorf("%w: no 64-bit entry point: XLF_KERNEL_64 is not set in xloadflags (0x%04x)", ErrNotBzImage, h.XLoadFlags)
	}
	if h.XLoadFlags&xlfAbove4G == 0 {
		return nil, fmt.Errorf("%w: XLF_CAN_BE_LOADED_ABOVE_4G is not set in xloadflags (0x%04x)", ErrNotBzImage, h.XLoadFlags)
	}
	if h.RelocatableKernel == 0 {
		return nil, fmt.Errorf("%w: kernel is not relocatable (relocatable_kernel is 0)", ErrNotBzImage)
	}

	if h.Kveraddr != 0 {
		// Best effort: a kernel without a readable version string still
		// loads.
		if v, err := bzimage.KVer(io.NewSectionReader(r, 0, size)); err == nil {
			info.Version = v
		}
	}
	return info, nil
}

// CheckKernel reports whether r (size bytes) holds a bzImage that
// kexec_file_load can load on x86-64; see InspectKernel for what is
// checked. Failures wrap ErrNotBzImage.
func CheckKernel(r io.ReaderAt, size int64) error {
	_, err := InspectKernel(r, size)
	return err
}

func protocolString(v uint16) string {
	return fmt.Sprintf("%d.%02d", v>>8, v&0xff)
}
