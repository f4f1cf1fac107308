package agent

import (
	"errors"
	"fmt"
	"sort"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/pkg/bootentry"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/oldmem"
	"github.com/fastreboot/fastreboot/pkg/preserve"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// ErrorKinds names this package's own sentinel errors for the registry.
func ErrorKinds() map[string]error {
	return map[string]error{
		"agent.no_storage":        ErrNoStorage,
		"agent.no_daemon":         ErrNoDaemon,
		"agent.not_authorized":    ErrNotAuthorized,
		"agent.request_too_large": ErrRequestTooLarge,
		"agent.request_timeout":   ErrRequestTimeout,
		"agent.client_timeout":    ErrClientTimeout,
	}
}

type errorKind struct {
	name string
	err  error
}

// errorKinds are the sentinel errors that keep their identity across the
// daemon socket: the daemon names the ones an error wraps, and the client's
// error wraps them again, so that errors.Is works on a Client's errors as
// it does on an in-process Agent's. The names are part of the protocol.
// The list is built from each package's ErrorKinds, sorted by name; a
// sentinel listed by two packages is a bug (the init panics), so the
// re-exported kexec kinds are named once, by internal/kexecsys.
// TestEveryErrorCrossesTheSocket fails when an exported Err* sentinel of
// any package is missing.
var errorKinds = buildErrorKinds(
	kexecsys.ErrorKinds(),
	bootimage.ErrorKinds(),
	bootentry.ErrorKinds(),
	memmap.ErrorKinds(),
	keptmem.ErrorKinds(),
	preserve.ErrorKinds(),
	modcache.ErrorKinds(),
	cpustop.ErrorKinds(),
	crashhandler.ErrorKinds(),
	fastreboot.ErrorKinds(),
	crashpath.ErrorKinds(),
	oldmem.ErrorKinds(),
	manifestsig.ErrorKinds(),
	rollback.ErrorKinds(),
	ErrorKinds(),
)

// oldKindNames are wire names daemons used before the kexec kinds were
// shared; a client still decodes them.
var oldKindNames = map[string]string{
	"fastreboot.not_supported":        "kexec.not_supported",
	"fastreboot.not_permitted":        "kexec.not_permitted",
	"fastreboot.signature":            "kexec.signature",
	"fastreboot.busy":                 "kexec.busy",
	"fastreboot.no_memory":            "kexec.no_memory",
	"fastreboot.kexec_load_forbidden": "kexec.kexec_load_forbidden",
	"crashhandler.not_supported":      "kexec.not_supported",
	"crashhandler.not_permitted":      "kexec.not_permitted",
	"crashhandler.no_memory_map":      "memmap.no_firmware_map",
}

func buildErrorKinds(sets ...map[string]error) []errorKind {
	var out []errorKind
	byErr := map[error]string{}
	for _, set := range sets {
		for name, err := range set {
			if prev, ok := byErr[err]; ok {
				panic(fmt.Sprintf("agent: error %q registered as both %s and %s", err, prev, name))
			}
			byErr[err] = name
			out = append(out, errorKind{name, err})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].name < out[j].name })
	for i := 1; i < len(out); i++ {
		if out[i].name == out[i-1].name {
			panic("agent: error kind " + out[i].name + " registered twice")
		}
	}
	return out
}

// kindByName returns the sentinel a wire name stands for (old names
// included), or nil.
func kindByName(name string) error {
	if n, ok := oldKindNames[name]; ok {
		name = n
	}
	i := sort.Search(len(errorKinds), func(i int) bool { return errorKinds[i].name >= name })
	if i < len(errorKinds) && errorKinds[i].name == name {
		return errorKinds[i].err
	}
	return nil
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
		if err := kindByName(name); err != nil {
			out = append(out, err)
		}
	}
	return out
}
