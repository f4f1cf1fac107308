package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"
)

// ErrQMP is returned when QEMU answers a QMP command with an error.
var ErrQMP = errors.New("QMP error")

// Event is a QMP event (RESET, SHUTDOWN, GUEST_PANICKED, ...) with the host
// time since QEMU started at which it arrived.
type Event struct {
	Name string
	T    time.Duration
	Data json.RawMessage
}

// qmpClient speaks QEMU's machine protocol over a unix socket: one command
// at a time, events recorded as they come.
type qmpClient struct {
	conn  net.Conn
	start time.Time
	cmdMu sync.Mutex // one command in flight

	mu      sync.Mutex
	events  []Event
	replies chan qmpReply
	done    chan struct{}
	err     error
}

type qmpReply struct {
	Return json.RawMessage `json:"return"`
	Error  *struct {
		Class string `json:"class"`
		Desc  string `json:"desc"`
	} `json:"error"`
}

type qmpMessage struct {
	qmpReply
	Event     string          `json:"event"`
	Data      json.RawMessage `json:"data"`
	Greeting  json.RawMessage `json:"QMP"`
	Timestamp json.RawMessage `json:"timestamp"`
}

// dialQMP connects to a QMP unix socket, retrying until timeout (QEMU
// creates it while starting), and negotiates capabilities.
func dialQMP(path string, start time.Time, timeout time.Duration) (*qmpClient, error) {
	deadline := time.Now().Add(timeout)
	var conn net.Conn
	for {
		var err error
		conn, err = net.Dial("unix", path)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("QMP dial %s: %w", path, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return newQMP(conn, start, timeout)
}

func newQMP(conn net.Conn, start time.Time, timeout time.Duration) (*qmpClient, error) {
	q := &qmpClient{conn: conn, start: start, replies: make(chan qmpReply, 1), done: make(chan struct{})}
	greeting := make(chan error, 1)
	go q.read(greeting)
	select {
	case err := <-greeting:
		if err != nil {
			conn.Close()
			return nil, err
		}
	case <-time.After(timeout):
		conn.Close()
		return nil, fmt.Errorf("QMP greeting: %w", ErrTimeout)
	}
	if _, err := q.Execute("qmp_capabilities", nil, timeout); err != nil {
		conn.Close()
		return nil, err
	}
	return q, nil
}

func (q *qmpClient) read(greeting chan<- error) {
	defer close(q.done)
	s := bufio.NewScanner(q.conn)
	s.Buffer(make([]byte, 64<<10), 16<<20)
	first := true
	for s.Scan() {
		var m qmpMessage
		if err := json.Unmarshal(s.Bytes(), &m); err != nil {
			continue
		}
		switch {
		case m.Greeting != nil:
			if first {
				greeting <- nil
				first = false
			}
		case m.Event != "":
			q.mu.Lock()
			q.events = append(q.events, Event{Name: m.Event, T: time.Since(q.start), Data: m.Data})
			q.mu.Unlock()
		default:
			select {
			case q.replies <- m.qmpReply:
			default: // nobody waits (a timed-out command): drop
			}
		}
	}
	err := s.Err()
	if err == nil {
		err = errors.New("QMP connection closed")
	}
	q.mu.Lock()
	q.err = err
	q.mu.Unlock()
	if first {
		greeting <- fmt.Errorf("QMP greeting: %w", err)
	}
}

// Execute runs a QMP command and returns its "return" value.
func (q *qmpClient) Execute(cmd string, args any, timeout time.Duration) (json.RawMessage, error) {
	q.cmdMu.Lock()
	defer q.cmdMu.Unlock()
	req := map[string]any{"execute": cmd}
	if args != nil {
		req["arguments"] = args
	}
	b, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	// Drop a stale reply of an earlier timed-out command.
	select {
	case <-q.replies:
	default:
	}
	if _, err := q.conn.Write(append(b, '\n')); err != nil {
		return nil, fmt.Errorf("QMP %s: %w", cmd, err)
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case r := <-q.replies:
		if r.Error != nil {
			return nil, fmt.Errorf("QMP %s: %w: %s: %s", cmd, ErrQMP, r.Error.Class, r.Error.Desc)
		}
		return r.Return, nil
	case <-q.done:
		q.mu.Lock()
		defer q.mu.Unlock()
		return nil, fmt.Errorf("QMP %s: %w", cmd, q.err)
	case <-t.C:
		return nil, fmt.Errorf("QMP %s: %w after %v", cmd, ErrTimeout, timeout)
	}
}

// HumanCommand runs a human monitor command (e.g. "nmi", "system_reset",
// "info cpus") and returns its output.
func (q *qmpClient) HumanCommand(cmd string, timeout time.Duration) (string, error) {
	ret, err := q.Execute("human-monitor-command", map[string]string{"command-line": cmd}, timeout)
	if err != nil {
		return "", err
	}
	var out string
	if err := json.Unmarshal(ret, &out); err != nil {
		return "", fmt.Errorf("QMP human-monitor-command %q: reply %s: %w", cmd, ret, err)
	}
	return out, nil
}

// Events returns the events received so far.
func (q *qmpClient) Events() []Event {
	q.mu.Lock()
	defer q.mu.Unlock()
	return append([]Event(nil), q.events...)
}

func (q *qmpClient) Close() error {
	err := q.conn.Close()
	<-q.done
	return err
}
