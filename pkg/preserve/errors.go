package preserve

import "errors"

// Sentinel errors; every error of this package that a caller acts on wraps
// one of them, with a message naming the device or cgroup and what is
// wrong.
var (
	// ErrCorrupt: the table has the magic but its bytes do not check
	// (checksum, bounds, overlap, names), or it was written for an areas
	// part of another size. Nothing in the part is trusted.
	ErrCorrupt = errors.New("preserved area table is corrupt")
	// ErrVersion: the table is of a format version this reader does not
	// know (written by a newer fastreboot).
	ErrVersion = errors.New("preserved area table has an unknown format version")
	// ErrTooSmall: the areas part cannot hold the table and one block.
	ErrTooSmall = errors.New("areas part too small")
	// ErrNoRoom: the areas part has no free range of the size asked.
	ErrNoRoom = errors.New("no room for the preserved area")
	// ErrExists: an area of that name exists.
	ErrExists = errors.New("preserved area exists")
	// ErrNotFound: no area of that name.
	ErrNotFound = errors.New("no such preserved area")
	// ErrInvalid: a name, size or cgroup that cannot be an area's.
	ErrInvalid = errors.New("invalid preserved area")
	// ErrNoAreas: the running command line keeps no areas part (no
	// fastreboot.preserve= word with its memmap=SIZE!START region).
	ErrNoAreas = errors.New("no areas part on the command line")
	// ErrFreeze: a workload's cgroup could not be frozen (not a cgroup
	// v2 directory, the write failed, or it was not frozen in time).
	ErrFreeze = errors.New("cannot freeze a preserved area's cgroup")
)

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"preserve.corrupt":   ErrCorrupt,
		"preserve.version":   ErrVersion,
		"preserve.too_small": ErrTooSmall,
		"preserve.no_room":   ErrNoRoom,
		"preserve.exists":    ErrExists,
		"preserve.not_found": ErrNotFound,
		"preserve.invalid":   ErrInvalid,
		"preserve.no_areas":  ErrNoAreas,
		"preserve.freeze":    ErrFreeze,
	}
}
