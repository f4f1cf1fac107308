package main

// CounterAddr is the guest physical address of the counter Firmware
// increments.
const CounterAddr = 0x7000

// FirmwareSize is the size of the BIOS image: QEMU's pc machine wants a
// multiple of 64 KiB and maps its last 64 KiB below 1 MiB (0xf0000).
const FirmwareSize = 64 << 10

// Firmware is a BIOS image for QEMU's pc machine that increments the
// 32-bit counter at CounterAddr for ever. The CPU starts in real mode at
// F000:FFF0 (the image's last 16 bytes), which jumps to F000:0000 (its
// start):
//
//	0000  31 c0           xor  ax, ax
//	0002  8e d8           mov  ds, ax
//	0004  fa              cli
//	0005  66 ff 06 00 70  inc  dword [0x7000]
//	000a  eb f9           jmp  0005
//	fff0  ea 00 00 00 f0  jmp  f000:0000
func Firmware() []byte {
	b := make([]byte, FirmwareSize)
	copy(b, []byte{
		0x31, 0xc0,
		0x8e, 0xd8,
		0xfa,
		0x66, 0xff, 0x06, byte(CounterAddr & 0xff), byte(CounterAddr >> 8),
		0xeb, 0xf9,
	})
	copy(b[FirmwareSize-16:], []byte{0xea, 0x00, 0x00, 0x00, 0xf0})
	return b
}
