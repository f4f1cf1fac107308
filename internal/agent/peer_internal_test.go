package agent

import (
	"errors"
	"os"
	"testing"
)

func TestPeerAllowed(t *testing.T) {
	self := os.Geteuid()
	other := self + 12345
	for _, tc := range []struct {
		name string
		p    peer
		gid  int
		ok   bool
	}{
		{"root", peer{uid: 0, gid: 0}, -1, true},
		{"the daemon's user", peer{uid: self, gid: 7}, -1, true},
		{"another user", peer{uid: other, gid: other}, -1, false},
		{"another user in the group (primary)", peer{uid: other, gid: 4242}, 4242, true},
		{"another user not in the group", peer{uid: other, gid: other, pid: -1}, 4242, false},
		{"no credentials", peer{err: errors.New("none")}, 4242, false},
	} {
		err := tc.p.allowed(tc.gid, "g")
		if (err == nil) != tc.ok || (err != nil && !errors.Is(err, ErrNotAuthorized)) {
			t.Errorf("%s: allowed = %v, want ok %v (and ErrNotAuthorized otherwise)", tc.name, err, tc.ok)
		}
	}
}
