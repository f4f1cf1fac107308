package cpustop

import (
	"errors"
	"fmt"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// Sentinel errors; test with errors.Is.
var (
	// ErrNotSupported: the policy cannot work on this OS or kernel
	// (PolicyHotplug outside Linux). It is the kexec paths' shared
	// kexecsys.ErrNotSupported, so errors.Is matches across packages.
	ErrNotSupported = kexecsys.ErrNotSupported
	// ErrUnknownPolicy: ParsePolicy or Stop got a policy name it does not know.
	ErrUnknownPolicy = errors.New("cpustop: unknown CPU policy")
	// ErrNotHotpluggable: an online secondary CPU has no cpuN/online file,
	// so PolicyHotplug cannot take it down. Nothing was changed.
	ErrNotHotpluggable = errors.New("cpustop: CPU is not hot-pluggable")
	// ErrTimeout: a cpuN/online write did not return within
	// Options.Timeout. The CPU's state is then unknown, so the rollback
	// brings it up too.
	ErrTimeout = errors.New("cpustop: timed out")
	// ErrCPUsMissing: CPUs online before the jump are not online now.
	ErrCPUsMissing = errors.New("cpustop: CPUs did not come back")
)

// CPUError says which CPU a sysfs write failed on, and how. Err carries the
// kernel's errno (errors.Is(err, syscall.EBUSY) works) or ErrTimeout.
type CPUError struct {
	CPU int
	// Online is the state being asked for: false when taking the CPU
	// down, true when bringing it back.
	Online bool
	Err    error
}

func (e *CPUError) Error() string {
	op := "take down"
	if e.Online {
		op = "bring up"
	}
	msg := fmt.Sprintf("cpustop: %s cpu%d: %v", op, e.CPU, e.Err)
	if name := errnoName(e.Err); name != "" {
		msg += " (" + name + ")"
	}
	return msg
}

func (e *CPUError) Unwrap() error { return e.Err }
