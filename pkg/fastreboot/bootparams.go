package fastreboot

import (
	"bytes"
	"encoding/binary"
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Offsets in the x86 zero page, struct boot_params
// (Documentation/arch/x86/zero-page.rst, boot.rst).
const (
	zeroPageSize        = 4096
	bpExtMemK           = 0x002 // screen_info.ext_mem_k, u16
	bpAPMBIOSInfo       = 0x040 // 0x14 bytes
	bpHDInfo            = 0x080 // hd0_info, hd1_info: 0x20 bytes
	bpExtRamdiskImage   = 0x0c0
	bpExtRamdiskSize    = 0x0c4
	bpExtCmdLinePtr     = 0x0c8
	bpEFIInfo           = 0x1c0 // 0x20 bytes
	bpAltMemK           = 0x1e0
	bpE820Entries       = 0x1e8
	bpSentinel          = 0x1ef
	bpSetupHeader       = 0x1f1
	bpJump              = 0x200
	bpTypeOfLoader      = 0x210
	bpLoadflags         = 0x211
	bpRamdiskImage      = 0x218
	bpRamdiskSize       = 0x21c
	bpCmdLinePtr        = 0x228
	bpHardwareSubarch   = 0x23c
	bpSetupData         = 0x250
	bpEDDMBRSigBuffer   = 0x290 // first field after the setup header
	bpE820Table         = 0x2d0
	e820EntrySize       = 20
	loaderTypeKexec     = 0xd0 // type_of_loader: 0xD (kexec-tools) << 4, as kexec_file_load sets it
	setupHeaderReadSize = bpEDDMBRSigBuffer
)

// bootParamsInput is what the next kernel's zero page is made of.
type bootParamsInput struct {
	// Running is the running kernel's zero page
	// (/sys/kernel/boot_params/data).
	Running []byte
	// Kernel holds at least the first setupHeaderReadSize bytes of the
	// next kernel's bzImage: its setup header is copied.
	Kernel []byte
	E820   []memmap.E820Entry
	// Initrd and Cmdline are the physical addresses of the segments; the
	// command line is NUL-terminated there.
	InitrdAddr, InitrdSize uint64
	CmdlineAddr            uint64
}

// buildBootParams returns the zero page the purgatory passes to the kernel's
// 64-bit entry in %rsi. It follows what kexec_file_load's bzImage64 loader
// builds (arch/x86/kernel/kexec-bzimage64.c) for a kernel that skips its
// decompressor:
//
//   - the running kernel's page is the base, so firmware facts the new kernel
//     cannot find again stay: screen_info, the ACPI RSDP address the
//     decompressor recorded (acpi_rsdp_addr), EDD data, secure_boot;
//   - the setup header is the new kernel's (bytes 0x1f1 up to 0x202 plus the
//     jump at 0x201), with the running hardware_subarch kept, type_of_loader
//     kexec, loadflags 0 (no KASLR flag: the kernel was not randomised) and
//     no setup_data (the running kernel's list describes its own boot);
//   - the e820 table is the given map (the recorded firmware map, not the
//     running kernel's, which is the restricted one after a crash), with
//     ext_mem_k and alt_mem_k derived from it as kexec_file_load does;
//   - APM and the legacy disk info are cleared, the initrd and command line
//     point at their segments (with the ext_ high halves);
//   - efi_info is cleared: entering EFI runtime services again needs the
//     runtime mapping that kexec_file_load passes as SETUP_EFI setup data,
//     which this loader cannot build; efiDropped reports that it was set.
func buildBootParams(in bootParamsInput) (bp []byte, efiDropped bool, err error) {
	if len(in.Running) < zeroPageSize {
		return nil, false, fmt.Errorf("running boot parameters: %d bytes, want %d", len(in.Running), zeroPageSize)
	}
	if len(in.Kernel) < setupHeaderReadSize {
		return nil, false, fmt.Errorf("kernel: %d bytes of the setup header, want %d", len(in.Kernel), setupHeaderReadSize)
	}
	if _, err := bootimage.ReadSetupHeader(bytes.NewReader(in.Kernel)); err != nil {
		return nil, false, fmt.Errorf("kernel: %w", err)
	}
	if len(in.E820) > memmap.E820MaxZeroPage {
		return nil, false, fmt.Errorf("%d e820 entries, the zero page holds %d", len(in.E820), memmap.E820MaxZeroPage)
	}
	le := binary.LittleEndian
	bp = make([]byte, zeroPageSize)
	copy(bp, in.Running[:zeroPageSize])

	end := min(bpJump+2+int(in.Kernel[bpJump+1]), bpEDDMBRSigBuffer)
	subarch := le.Uint32(bp[bpHardwareSubarch:])
	clear(bp[bpSetupHeader:bpEDDMBRSigBuffer])
	copy(bp[bpSetupHeader:end], in.Kernel[bpSetupHeader:end])
	le.PutUint32(bp[bpHardwareSubarch:], subarch)
	bp[bpTypeOfLoader] = loaderTypeKexec
	bp[bpLoadflags] = 0
	le.PutUint64(bp[bpSetupData:], 0)
	bp[bpSentinel] = 0

	clear(bp[bpAPMBIOSInfo : bpAPMBIOSInfo+0x14])
	clear(bp[bpHDInfo : bpHDInfo+0x20])
	for _, b := range bp[bpEFIInfo : bpEFIInfo+0x20] {
		if b != 0 {
			efiDropped = true
			break
		}
	}
	clear(bp[bpEFIInfo : bpEFIInfo+0x20])

	le.PutUint32(bp[bpRamdiskImage:], uint32(in.InitrdAddr))
	le.PutUint32(bp[bpExtRamdiskImage:], uint32(in.InitrdAddr>>32))
	le.PutUint32(bp[bpRamdiskSize:], uint32(in.InitrdSize))
	le.PutUint32(bp[bpExtRamdiskSize:], uint32(in.InitrdSize>>32))
	le.PutUint32(bp[bpCmdLinePtr:], uint32(in.CmdlineAddr))
	le.PutUint32(bp[bpExtCmdLinePtr:], uint32(in.CmdlineAddr>>32))

	clear(bp[bpE820Table : bpE820Table+memmap.E820MaxZeroPage*e820EntrySize])
	var altMemK uint64
	for i, e := range in.E820 {
		o := bpE820Table + i*e820EntrySize
		le.PutUint64(bp[o:], e.Addr)
		le.PutUint64(bp[o+8:], e.Size)
		le.PutUint32(bp[o+16:], e.Type)
		// The RAM range that starts at or below 1 MiB and goes beyond it
		// gives the memory size in KiB above 1 MiB, as
		// setup_boot_parameters computes it.
		if last := e.Addr + e.Size - 1; e.Type == memmap.E820RAM && e.Addr <= 1<<20 && last > 1<<20 {
			altMemK = last>>10 - 1<<10
		}
	}
	bp[bpE820Entries] = byte(len(in.E820))
	le.PutUint16(bp[bpExtMemK:], uint16(min(altMemK, 0xfc00)))
	le.PutUint32(bp[bpAltMemK:], uint32(min(altMemK, 0xffffffff)))
	return bp, efiDropped, nil
}
