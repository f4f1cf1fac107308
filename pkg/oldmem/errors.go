package oldmem

import "errors"

var (
	// ErrInvalidPages: a Pages record breaks one of its rules (see
	// Pages.Validate).
	ErrInvalidPages = errors.New("invalid page record")
	// ErrNotPinnable: the file's pages cannot be recorded: pagemap gives
	// PFN 0 (no CAP_SYS_ADMIN) or a page is not present.
	ErrNotPinnable = errors.New("pages not pinnable")
	// ErrMoved: the mapped bytes do not match the record's XXH64; the
	// pages moved or were reused since the record.
	ErrMoved = errors.New("pages moved since the record")
	// ErrNoOldMemory: a run's physical range is not wholly inside the
	// vmcore's PT_LOAD segments.
	ErrNoOldMemory = errors.New("pages not in the crashed kernel's memory")
)
