package main

import (
	"bytes"
	"testing"
)

func TestFirmware(t *testing.T) {
	b := Firmware()
	if len(b) != FirmwareSize || FirmwareSize%(64<<10) != 0 {
		t.Fatalf("firmware is %d bytes, want a multiple of 64 KiB", len(b))
	}
	// The reset vector (F000:FFF0, the last 16 bytes) jumps far to
	// F000:0000, the image's start below 1 MiB.
	if want := []byte{0xea, 0x00, 0x00, 0x00, 0xf0}; !bytes.Equal(b[FirmwareSize-16:FirmwareSize-11], want) {
		t.Errorf("reset vector % x, want % x", b[FirmwareSize-16:FirmwareSize-11], want)
	}
	// inc dword [CounterAddr] (operand-size prefix, FF /0, disp16), then
	// a short jump back to it.
	loop := []byte{0x66, 0xff, 0x06, CounterAddr & 0xff, CounterAddr >> 8, 0xeb, 0xf9}
	if i := bytes.Index(b, loop); i != 5 {
		t.Errorf("the counter loop is at %d, want 5 (after xor ax,ax; mov ds,ax; cli)", i)
	}
	if int8(b[11]) != -7 {
		t.Errorf("the jump goes %d bytes, want -7 (back to the inc)", int8(b[11]))
	}
}
