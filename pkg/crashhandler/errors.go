package crashhandler

import (
	"errors"
	"fmt"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// Sentinel errors. Callers test them with errors.Is; the errors returned wrap
// them with the file, system call or size involved.
var (
	// ErrNotSupported: the kernel has no crash kexec support
	// (/sys/kernel/kexec_crash_size absent) or the platform has no
	// kexec_file_load.
	ErrNotSupported = kexecsys.ErrNotSupported
	// ErrNoReservation: no crashkernel= reservation exists.
	ErrNoReservation = errors.New("no crashkernel= memory reservation")
	// ErrReservationTooSmall: the reservation cannot hold the image and what
	// the crash kernel needs to run.
	ErrReservationTooSmall = errors.New("crashkernel= reservation too small")
	// ErrNoRearm: the generation the crash path boots after a crash could
	// not re-arm it: its command line asks for no crashkernel= reservation
	// or for one too small for the image (see RearmError).
	ErrNoRearm = errors.New("the generation after a crash could not re-arm the crash path")
	// ErrNotArmed: no crash image was armed through this package.
	ErrNotArmed = errors.New("no crash image armed")
	// ErrInvalidImage: the kernel or initrd given to Arm is missing, empty or
	// not a kernel the sizing understands (an x86 bzImage, protocol >= 2.12).
	ErrInvalidImage = errors.New("invalid crash image")
	// ErrCmdlineTooLong: the crash command line does not fit once the kernel
	// prepends elfcorehdr=.
	ErrCmdlineTooLong = errors.New("crash command line too long")
	// ErrNotPermitted: the kernel refused the load (no CAP_SYS_BOOT,
	// kernel.kexec_load_disabled, lockdown). A rejected signature is
	// ErrSignature.
	ErrNotPermitted = kexecsys.ErrNotPermitted
	// ErrSignature: the kernel rejected the crash kernel's signature.
	ErrSignature = kexecsys.ErrSignature
	// ErrBusy: another kexec load is in progress, or the kernel or initrd
	// is open for writing elsewhere.
	ErrBusy = kexecsys.ErrBusy
	// ErrFaultRouting: a fault-routing sysctl could not be read or written.
	ErrFaultRouting = errors.New("fault routing sysctl")
	// ErrNoVmcore: /proc/vmcore is absent: this is not a crash kernel.
	ErrNoVmcore = errors.New("no /proc/vmcore")
	// ErrBadVmcore: the vmcore is not an ELF64 core this package can read.
	ErrBadVmcore = errors.New("malformed vmcore")
)

// ReservationError reports a missing or too small crashkernel= reservation.
// It matches ErrNoReservation (Have == 0) or ErrReservationTooSmall with
// errors.Is, and carries the numbers for callers that use errors.As.
type ReservationError struct {
	// Have is /sys/kernel/kexec_crash_size in bytes (0: no reservation).
	Have int64
	// Need is what the image needs, see RequiredReservation.
	Need Sizing
}

func (e *ReservationError) Error() string {
	if e.Have == 0 {
		return fmt.Sprintf("no crashkernel= reservation (/sys/kernel/kexec_crash_size is 0); the %s crash image needs %s: %s",
			e.Need.Mode, mib(e.Need.Total), e.Need.Advice())
	}
	return fmt.Sprintf("crashkernel= reservation is %s, the %s crash image needs %s (%s): %s",
		mib(e.Have), e.Need.Mode, mib(e.Need.Total), e.Need.Breakdown(), e.Need.Advice())
}

// Is makes errors.Is(err, ErrNoReservation / ErrReservationTooSmall) work.
func (e *ReservationError) Is(target error) bool {
	if e.Have == 0 {
		return target == ErrNoReservation
	}
	return target == ErrReservationTooSmall
}

func mib(b int64) string {
	const m = 1 << 20
	if b%m == 0 {
		return fmt.Sprintf("%d MiB", b/m)
	}
	return fmt.Sprintf("%.1f MiB", float64(b)/m)
}
