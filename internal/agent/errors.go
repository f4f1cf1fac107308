package agent

import (
	"errors"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// errorKinds are the sentinel errors that keep their identity across the
// daemon socket: the daemon names the ones an error wraps, and the client's
// error wraps them again, so that errors.Is works on a Client's errors as
// it does on an in-process Agent's. The names are part of the protocol.
var errorKinds = []struct {
	name string
	err  error
}{
	{"bootimage.schema", bootimage.ErrSchema},
	{"bootimage.invalid", bootimage.ErrInvalid},
	{"bootimage.cmdline_too_long", bootimage.ErrCmdlineTooLong},
	{"bootimage.not_bzimage", bootimage.ErrNotBzImage},
	{"bootimage.bad_initrd", bootimage.ErrBadInitrd},
	{"modcache.no_source", modcache.ErrNoSource},
	{"modcache.not_cached", modcache.ErrNotCached},
	{"modcache.digest_mismatch", modcache.ErrDigestMismatch},
	{"modcache.size_mismatch", modcache.ErrSizeMismatch},
	{"modcache.closed", modcache.ErrClosed},
	{"fastreboot.not_supported", fastreboot.ErrNotSupported},
	{"fastreboot.not_permitted", fastreboot.ErrNotPermitted},
	{"fastreboot.signature", fastreboot.ErrSignature},
	{"fastreboot.busy", fastreboot.ErrBusy},
	{"fastreboot.no_memory", fastreboot.ErrNoMemory},
	{"fastreboot.not_loaded", fastreboot.ErrNotLoaded},
	{"fastreboot.preflight", fastreboot.ErrPreflight},
	{"fastreboot.no_handoff", fastreboot.ErrNoHandoff},
	{"fastreboot.handoff", fastreboot.ErrHandoff},
	{"fastreboot.kexec_load_forbidden", fastreboot.ErrKexecLoadForbidden},
	{"fastreboot.kernel_elf_mismatch", fastreboot.ErrKernelELFMismatch},
	{"fastreboot.not_kernel_elf", fastreboot.ErrNotKernelELF},
	{"cpustop.unknown_policy", cpustop.ErrUnknownPolicy},
	{"cpustop.cpus_missing", cpustop.ErrCPUsMissing},
	{"crashhandler.not_supported", crashhandler.ErrNotSupported},
	{"crashhandler.no_reservation", crashhandler.ErrNoReservation},
	{"crashhandler.reservation_too_small", crashhandler.ErrReservationTooSmall},
	{"crashhandler.invalid_image", crashhandler.ErrInvalidImage},
	{"crashhandler.not_permitted", crashhandler.ErrNotPermitted},
	{"crashhandler.no_memory_map", crashhandler.ErrNoMemoryMap},
	{"crashhandler.fault_routing", crashhandler.ErrFaultRouting},
	{"crashhandler.no_rearm", crashhandler.ErrNoRearm},
	{"crashhandler.not_armed", crashhandler.ErrNotArmed},
}

// Kinds names the sentinel errors err wraps, by their protocol names
// ("modcache.digest_mismatch", ...): what the daemon sends, and what the
// CLI's --json error object lists.
func Kinds(err error) []string {
	var out []string
	for _, k := range errorKinds {
		if errors.Is(err, k.err) {
			out = append(out, k.name)
		}
	}
	return out
}

// RemoteError is an error the daemon returned: its message, wrapping the
// sentinel errors the daemon's error wrapped (see errors.Is). Kinds are
// their protocol names; names this client does not know are kept there.
type RemoteError struct {
	Msg   string
	Kinds []string
}

func (e *RemoteError) Error() string { return e.Msg }

// Unwrap returns the sentinel errors named by Kinds.
func (e *RemoteError) Unwrap() []error {
	var out []error
	for _, name := range e.Kinds {
		for _, k := range errorKinds {
			if k.name == name {
				out = append(out, k.err)
			}
		}
	}
	return out
}
