package keptmem

import "errors"

// Sentinel errors; every error of this package that a caller acts on wraps
// one of them, with a message naming the device and what is wrong.
var (
	// ErrNoIndex: the region holds no index (never written, or a write
	// was interrupted after it invalidated the header). Rebuild the cache
	// from storage.
	ErrNoIndex = errors.New("kept region holds no index")
	// ErrCorrupt: the region has a header but its bytes are inconsistent
	// (checksums, bounds, order). Rebuild the cache from storage.
	ErrCorrupt = errors.New("kept region is corrupt")
	// ErrVersion: the header is of a format version this reader does not
	// know (written by a newer fastreboot).
	ErrVersion = errors.New("kept region has an unknown format version")
	// ErrTooSmall: the modules (or the header) do not fit in the region.
	ErrTooSmall = errors.New("kept region too small")
	// ErrNoRoom: Plan found no System RAM range that holds the region.
	ErrNoRoom = errors.New("no room for a kept region")
	// ErrOverlap: a region asked for covers memory that is not free RAM
	// for it (CheckPlacement): what the firmware keeps, what the running
	// kernel holds back, or where a kernel is loaded.
	ErrOverlap = errors.New("kept region overlaps memory in use")
	// ErrNoDevice: no persistent-memory block device covers the region.
	ErrNoDevice = errors.New("no device for the kept region")
	// ErrBadBlob: a module to write is malformed (digest, size) or its
	// bytes do not hash to its digest.
	ErrBadBlob = errors.New("bad module for the kept region")
)

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"keptmem.no_index":  ErrNoIndex,
		"keptmem.corrupt":   ErrCorrupt,
		"keptmem.version":   ErrVersion,
		"keptmem.too_small": ErrTooSmall,
		"keptmem.no_room":   ErrNoRoom,
		"keptmem.no_device": ErrNoDevice,
		"keptmem.overlap":   ErrOverlap,
		"keptmem.bad_blob":  ErrBadBlob,
	}
}
