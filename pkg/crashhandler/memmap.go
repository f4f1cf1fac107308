package crashhandler

import (
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// MemoryRange is one entry of the firmware memory map (memmap.Entry).
type MemoryRange = memmap.Entry

// MemoryMap is the firmware memory map recorded while the system is
// healthy (memmap.Map). It marshals to JSON as a list of ranges; the
// handoff carries it to later generations, which need it on every command
// line after a crash (MemoryMap.CmdlineWords).
type MemoryMap = memmap.Map

// PhysRange is the physical address range [Start, End) (memmap.Range).
type PhysRange = memmap.Range

// ReadFirmwareMemoryMap reads root/sys/firmware/memmap (memmap.ReadFirmware;
// ErrNoMemoryMap is memmap.ErrNoFirmwareMap).
func ReadFirmwareMemoryMap(root string) (MemoryMap, error) { return memmap.ReadFirmware(root) }

// Firmware memory map types (memmap.TypeRAM and the others).
const (
	TypeRAM          = memmap.TypeRAM
	TypeACPI         = memmap.TypeACPI
	TypeNVS          = memmap.TypeNVS
	TypeReserved     = memmap.TypeReserved
	TypeUnusable     = memmap.TypeUnusable
	TypePRAM         = memmap.TypePRAM
	TypePMEM         = memmap.TypePMEM
	TypeSoftReserved = memmap.TypeSoftReserved
)
