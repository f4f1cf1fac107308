package crashhandler

import (
	"errors"
	"fmt"
	"syscall"
	"testing"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

func TestClassifyLoadError(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want []error
		not  []error
	}{
		// A bare errno from a fake Loader gets the shared kinds (the
		// signature errnos are Linux's: loader_linux_test.go).
		{fmt.Errorf("fake: %w", syscall.EPERM), []error{ErrNotPermitted}, []error{ErrSignature}},
		{syscall.EBUSY, []error{ErrBusy}, nil},
		// The crash meaning comes on top of the shared kind.
		{syscall.EADDRNOTAVAIL, []error{ErrReservationTooSmall, kexecsys.ErrNoMemory}, nil},
		{&kexecsys.KexecError{Op: kexecsys.OpFileLoad, Errno: syscall.ENOMEM}, []error{ErrReservationTooSmall, kexecsys.ErrNoMemory, syscall.ENOMEM}, nil},
		{syscall.ENOEXEC, []error{ErrInvalidImage}, []error{ErrNotPermitted}},
		{&kexecsys.KexecError{Op: kexecsys.OpFileLoad, Errno: syscall.ENOSYS}, []error{ErrNotSupported}, nil},
	} {
		got := classifyLoadError(tc.err)
		for _, w := range tc.want {
			if !errors.Is(got, w) {
				t.Errorf("%v: %v does not match %v", tc.err, got, w)
			}
		}
		for _, n := range tc.not {
			if errors.Is(got, n) {
				t.Errorf("%v: %v matches %v", tc.err, got, n)
			}
		}
	}
}
