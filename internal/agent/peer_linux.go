package agent

import (
	"bufio"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// peerCred reads the credentials of c's peer as of its connect(2)
// (getsockopt SO_PEERCRED).
func peerCred(c *net.UnixConn) peer {
	raw, err := c.SyscallConn()
	if err != nil {
		return peer{err: err}
	}
	var (
		cred *unix.Ucred
		cerr error
	)
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return peer{err: err}
	}
	if cerr != nil {
		return peer{err: fmt.Errorf("getsockopt(SO_PEERCRED): %w", cerr)}
	}
	return peer{pid: int(cred.Pid), uid: int(cred.Uid), gid: int(cred.Gid)}
}

// supplementaryGroups returns the supplementary groups of process pid
// (the Groups: line of /proc/PID/status; the real /proc, as the peer is
// a real process).
func supplementaryGroups(pid int) ([]int, error) {
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "Groups:")
		if !ok {
			continue
		}
		var out []int
		for _, w := range strings.Fields(rest) {
			g, err := strconv.Atoi(w)
			if err != nil {
				return nil, fmt.Errorf("/proc/%d/status: Groups: %q: %w", pid, w, err)
			}
			out = append(out, g)
		}
		return out, nil
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("/proc/%d/status: no Groups: line", pid)
}
