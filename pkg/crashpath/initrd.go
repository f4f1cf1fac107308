package crashpath

import (
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// Initrd is what the initrd of a crash image holds.
type Initrd string

// The crash image's initrd choices.
const (
	// InitrdImage: the production image's initrd pieces and the handoff
	// piece; the crash kernel runs production's init, which must run
	// `fastreboot crash recover` (direct mode's only choice: its crash
	// kernel is production).
	InitrdImage Initrd = "image"
	// InitrdMinimal: only a piece whose /init is the fastreboot binary
	// itself (fastreboot.WriteCrashInitPiece) and the handoff piece with
	// the carried modules: the crash kernel runs fastreboot as PID 1,
	// which recovers and kexecs into production (two-stage mode's
	// default: it needs no cooperation from production's init and a
	// smaller reservation). Two-stage only: a direct crash kernel is
	// production and needs its initrd.
	InitrdMinimal Initrd = "minimal"
)

// DefaultInitrd is the crash initrd an arm that names none gets in mode:
// InitrdMinimal in two-stage mode, InitrdImage otherwise (a direct crash
// kernel is production and runs production's initrd).
func DefaultInitrd(mode crashhandler.Mode) Initrd {
	if mode == crashhandler.ModeTwoStage {
		return InitrdMinimal
	}
	return InitrdImage
}

// ParseInitrd parses a --initrd value; "" stays "", the mode's default
// (DefaultInitrd).
func ParseInitrd(s string) (Initrd, error) {
	switch c := Initrd(s); c {
	case "", InitrdImage, InitrdMinimal:
		return c, nil
	}
	return "", fmt.Errorf("crash initrd %q: want %s or %s", s, InitrdMinimal, InitrdImage)
}
