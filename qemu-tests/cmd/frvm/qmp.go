package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"
)

// qmp is a QMP client on QEMU's unix socket: one command at a time,
// events skipped.
type qmp struct {
	conn net.Conn
	r    *bufio.Reader
}

// dialQMP connects to path, retrying until QEMU listens or timeout
// passes, and leaves capabilities negotiation mode.
func dialQMP(path string, timeout time.Duration) (*qmp, error) {
	deadline := time.Now().Add(timeout)
	for {
		conn, err := net.Dial("unix", path)
		if err == nil {
			q := &qmp{conn: conn, r: bufio.NewReader(conn)}
			if _, err := q.r.ReadBytes('\n'); err != nil { // the greeting
				conn.Close()
				return nil, fmt.Errorf("QMP %s: greeting: %w", path, err)
			}
			if _, err := q.do("qmp_capabilities", nil); err != nil {
				conn.Close()
				return nil, err
			}
			return q, nil
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("QMP %s: %w", path, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// do runs cmd with args and returns its "return" value.
func (q *qmp) do(cmd string, args any) (json.RawMessage, error) {
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	q.conn.SetDeadline(time.Now().Add(2 * time.Minute))
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	for {
		line, err := q.r.ReadBytes('\n')
		if err != nil {
			return nil, fmt.Errorf("QMP %s: %w", cmd, err)
		}
		var m struct {
			Return json.RawMessage `json:"return"`
			Error  *struct {
				Class string `json:"class"`
				Desc  string `json:"desc"`
			} `json:"error"`
			Event string `json:"event"`
		}
		if err := json.Unmarshal(line, &m); err != nil {
			return nil, fmt.Errorf("QMP %s: %q: %w", cmd, line, err)
		}
		switch {
		case m.Event != "":
			continue
		case m.Error != nil:
			return nil, fmt.Errorf("QMP %s: %s: %s", cmd, m.Error.Class, m.Error.Desc)
		}
		return m.Return, nil
	}
}

// status is query-status's status ("running", "inmigrate", "postmigrate").
func (q *qmp) status() (string, error) {
	r, err := q.do("query-status", nil)
	if err != nil {
		return "", err
	}
	var s struct{ Status string }
	err = json.Unmarshal(r, &s)
	return s.Status, err
}

// counter reads the guest's counter with the monitor's xp: the guest's
// own view of its RAM.
// counterTwice reads the counter, and again a second later: a guest that
// runs has counted on in between.
func (q *qmp) counterTwice() (first, later uint32, err error) {
	if first, err = q.counter(); err != nil {
		return 0, 0, err
	}
	time.Sleep(time.Second)
	later, err = q.counter()
	return first, later, err
}

func (q *qmp) counter() (uint32, error) {
	r, err := q.do("human-monitor-command", map[string]string{"command-line": fmt.Sprintf("xp /1wx %#x", CounterAddr)})
	if err != nil {
		return 0, err
	}
	var out string
	if err := json.Unmarshal(r, &out); err != nil {
		return 0, err
	}
	// "0000000000007000: 0x0001e240"
	f := strings.Fields(out)
	if len(f) != 2 {
		return 0, fmt.Errorf("xp: %q", out)
	}
	n, err := strconv.ParseUint(strings.TrimPrefix(f[1], "0x"), 16, 32)
	if err != nil {
		return 0, fmt.Errorf("xp: %q: %w", out, err)
	}
	return uint32(n), nil
}

// waitStatus polls query-status until it says want.
func (q *qmp) waitStatus(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		s, err := q.status()
		if err != nil {
			return err
		}
		if s == want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU status %q after %v, want %q", s, timeout, want)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (q *qmp) Close() error { return q.conn.Close() }
