package crashhandler

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// LoadMethod says which system call arms the crash image.
type LoadMethod string

const (
	// LoadFile arms with kexec_file_load(..., KEXEC_FILE_ON_CRASH): the
	// kernel checks the bzImage's signature where lockdown asks for it;
	// at panic the purgatory hashes every segment and the bzImage
	// decompresses itself (5-9 s under TCG before the next kernel's first
	// line). The only method under lockdown.
	LoadFile LoadMethod = "file"
	// LoadSegments arms with kexec_load(..., KEXEC_ON_CRASH) of the kernel
	// decompressed ahead of time (Image.Segments): at panic no digest is
	// computed and nothing is decompressed.
	//
	// Why skipping the purgatory's digest pass is safe: every byte loaded
	// was hashed when it entered the sealed module cache (SHA-256 against
	// the manifest), the decompressed kernel is checked against the digest
	// recorded for its bzImage before it is loaded, and the kernel copies
	// the segments into the crash reservation at load time and write-
	// protects it (arch_kexec_protect_crashkres). The purgatory's pass
	// only guards against the reservation being overwritten between the
	// load and the panic. kexec_load checks no signature, so the kernel
	// refuses it under lockdown: Arm then falls back to LoadFile and says
	// so (State.LoadFallback).
	//
	// In two-stage mode the image carries the ELF core header that
	// kexec_file_load builds in the kernel and kexec_load leaves to user
	// space (BuildElfcorehdr), and gives the crash kernel only the
	// reservation as RAM, as kexec_file_load does.
	LoadSegments LoadMethod = "segments"
)

// ParseLoadMethod parses "file" or "segments"; "" is returned as "" (the
// caller's default).
func ParseLoadMethod(s string) (LoadMethod, error) {
	switch m := LoadMethod(s); m {
	case "", LoadFile, LoadSegments:
		return m, nil
	}
	return "", fmt.Errorf("crash load method %q: want %q or %q", s, LoadFile, LoadSegments)
}

// ErrKexecLoadForbidden: the kernel refuses the legacy kexec_load that
// LoadSegments needs (lockdown, or kexec_load returned EPERM). Arm falls
// back to LoadFile when it sees it.
var ErrKexecLoadForbidden = kexecsys.ErrKexecLoadForbidden

// ErrKexecLoadFailed: kexec_load itself failed (past its permission
// checks). Both kexec_load and kexec_file_load free the armed crash image
// before they load the new one (kernel/kexec.c do_kexec_load,
// kernel/kexec_file.c: "Free any current crash dump kernel before we
// corrupt it"), so nothing is armed any more: Arm then arms the file image
// instead and says why.
var ErrKexecLoadFailed = errors.New("kexec_load failed")

// SegmentsImage is a crash image prepared for kexec_load(KEXEC_ON_CRASH):
// the kernel decompressed ahead of time, the initrd, and what the loader
// places with them. pkg/fastreboot builds it (BuildOptions.Segments); this
// package only sizes and loads it.
type SegmentsImage interface {
	// ReservationBytes is how much of the crash kernel reservation the
	// image needs in mode on a machine with possibleCPUs: its segments
	// (with the ELF core header in two-stage mode) and the room the kernel
	// takes there for the kexec control page and identity page tables.
	ReservationBytes(mode Mode, possibleCPUs int) int64
	// LoadOnCrash places the image with the crash command line inside
	// the crash kernel reservation and calls kexec_load(...,
	// KEXEC_ON_CRASH). It calls nothing if the plan fails (an error
	// matching ErrReservationTooSmall names the size needed). Errors of
	// the call match ErrKexecLoadForbidden when the kernel refuses
	// kexec_load (EPERM), else ErrKexecLoadFailed.
	LoadOnCrash(cmdline string) error
}

// KexecLoadForbidden reports whether lockdown forbids kexec_load: it reads
// root/sys/kernel/security/lockdown (e.g. "none [integrity]
// confidentiality"); under integrity or confidentiality the kernel refuses
// kexec_load (kexec_load_check: security_locked_down(LOCKDOWN_KEXEC)). It
// returns nil when the file is missing (no lockdown LSM or securityfs:
// kexec_load itself decides), unreadable or says none, else an error
// wrapping ErrKexecLoadForbidden and ErrNotPermitted that names the file
// and the mode.
func KexecLoadForbidden(root string) error {
	if root == "" {
		root = "/"
	}
	path := filepath.Join(root, kexecsys.LockdownPath)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	if mode, err := kexecsys.ParseLockdown(b); err == nil && mode != "none" {
		return fmt.Errorf("%w: %w: %s is %q: the kernel refuses kexec_load under lockdown (Secure Boot)",
			ErrKexecLoadForbidden, ErrNotPermitted, path, mode)
	}
	return nil
}

// SegmentsSizing is the reservation a LoadSegments image of segBytes (see
// SegmentsImage.ReservationBytes) needs in mode, rounded up to
// ReservationAlign. A direct crash kernel loaded this way gets the full
// firmware memory map in its boot parameters, so it needs only the
// segments. A two-stage crash kernel runs out of the reservation and
// reloads production: it needs the Runtime and Reload
// of RequiredReservation(img, mode) too (with a minimal crash initramfs,
// the larger of the segments and them: see RequiredReservation), plus
// their struct pages.
func SegmentsSizing(segBytes int64, img ImageSize, mode Mode) Sizing {
	s := Sizing{Mode: mode, Method: LoadSegments, Load: segBytes}
	if mode != ModeTwoStage {
		s.Total = roundUp(segBytes, ReservationAlign)
		return s
	}
	f := RequiredReservation(img, mode)
	s.Runtime, s.Reload, s.Minimal = f.Runtime, f.Reload, f.Minimal
	sum := s.Load + s.Runtime + s.Reload
	if s.Minimal {
		sum = max(s.Load, s.Runtime+s.Reload)
	}
	s.Total = roundUp(sum*64/63, ReservationAlign)
	return s
}
