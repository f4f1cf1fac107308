//go:build !linux

package agent

import (
	"errors"
	"net"
)

// peerCred is Linux-only (SO_PEERCRED): elsewhere every peer is refused.
func peerCred(*net.UnixConn) peer {
	return peer{err: errors.ErrUnsupported}
}

func supplementaryGroups(int) ([]int, error) { return nil, errors.ErrUnsupported }
