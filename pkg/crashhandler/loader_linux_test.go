package crashhandler

import (
	"errors"
	"syscall"
	"testing"
)

// The signature errnos (EKEYREJECTED and its kin) exist only in Linux's
// syscall package, so this row of TestClassifyLoadError lives here and the
// rest of the table still compiles for GOOS=darwin.
func TestClassifyLoadErrorSignature(t *testing.T) {
	got := classifyLoadError(syscall.EKEYREJECTED)
	for _, w := range []error{ErrSignature, syscall.EKEYREJECTED} {
		if !errors.Is(got, w) {
			t.Errorf("%v does not match %v", got, w)
		}
	}
	if errors.Is(got, ErrNotPermitted) {
		t.Errorf("%v matches %v", got, ErrNotPermitted)
	}
}
