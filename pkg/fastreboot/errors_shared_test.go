package fastreboot

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// The kexec kinds are one error each, whichever package names them.
func TestKexecKindsAreShared(t *testing.T) {
	for _, same := range [][]error{
		{ErrNotSupported, crashhandler.ErrNotSupported, cpustop.ErrNotSupported},
		{ErrNotPermitted, crashhandler.ErrNotPermitted},
		{ErrSignature, crashhandler.ErrSignature},
		{ErrBusy, crashhandler.ErrBusy},
		{ErrKexecLoadForbidden, crashhandler.ErrKexecLoadForbidden},
	} {
		for _, a := range same {
			for _, b := range same {
				if !errors.Is(fmt.Errorf("ctx: %w", a), b) {
					t.Errorf("errors.Is(%v, %v) = false", a, b)
				}
			}
		}
	}
	if errors.Is(ErrNotPermitted, ErrSignature) || errors.Is(ErrBusy, ErrNoMemory) {
		t.Error("distinct kinds match each other")
	}
}
