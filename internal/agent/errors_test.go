package agent

import (
	"errors"
	"fmt"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func TestErrorKinds(t *testing.T) {
	seen := map[string]bool{}
	for _, k := range errorKinds {
		if seen[k.name] {
			t.Errorf("kind %q listed twice", k.name)
		}
		seen[k.name] = true
		// Every kind survives the round trip on its own.
		re := &RemoteError{Msg: "x", Kinds: Kinds(fmt.Errorf("wrapped: %w", k.err))}
		if !errors.Is(re, k.err) {
			t.Errorf("kind %q: %v does not match its sentinel after the round trip", k.name, re.Kinds)
		}
	}
	err := fmt.Errorf("stage v2: %w", errors.Join(fmt.Errorf("module a: %w", modcache.ErrDigestMismatch), fastreboot.ErrKexecLoadForbidden))
	re := &RemoteError{Msg: err.Error(), Kinds: append(Kinds(err), "from.a.newer.daemon")}
	if !errors.Is(re, modcache.ErrDigestMismatch) || !errors.Is(re, fastreboot.ErrKexecLoadForbidden) || errors.Is(re, modcache.ErrNotCached) {
		t.Errorf("RemoteError kinds %v: want digest mismatch and kexec_load forbidden only", re.Kinds)
	}
	if re.Error() != err.Error() {
		t.Errorf("RemoteError message %q, want %q", re.Error(), err.Error())
	}
	if k := Kinds(errors.New("plain")); k != nil {
		t.Errorf("kinds of a plain error: %v", k)
	}
}
