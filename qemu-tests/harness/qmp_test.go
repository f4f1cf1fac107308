package harness

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"
)

// fakeQMP serves the QMP protocol on one end of a pipe: a greeting, replies
// to commands, and a RESET event before answering "system_reset".
func fakeQMP(t *testing.T, conn net.Conn) {
	t.Helper()
	go func() {
		defer conn.Close()
		fmt.Fprintln(conn, `{"QMP": {"version": {"qemu": {"major": 7}}, "capabilities": []}}`)
		s := bufio.NewScanner(conn)
		for s.Scan() {
			var req struct {
				Execute   string            `json:"execute"`
				Arguments map[string]string `json:"arguments"`
			}
			if err := json.Unmarshal(s.Bytes(), &req); err != nil {
				t.Errorf("fake QMP: bad request %q", s.Bytes())
				return
			}
			switch {
			case req.Execute == "qmp_capabilities":
				fmt.Fprintln(conn, `{"return": {}}`)
			case req.Execute == "human-monitor-command" && req.Arguments["command-line"] == "system_reset":
				fmt.Fprintln(conn, `{"timestamp": {"seconds": 1}, "event": "RESET", "data": {"guest": false}}`)
				fmt.Fprintln(conn, `{"return": ""}`)
			case req.Execute == "human-monitor-command":
				b, _ := json.Marshal(map[string]string{"return": "VM status: running\r\n"})
				fmt.Fprintf(conn, "%s\n", b)
			case req.Execute == "hang":
			default:
				fmt.Fprintln(conn, `{"error": {"class": "CommandNotFound", "desc": "The command nope has not been found"}}`)
			}
		}
	}()
}

func TestQMP(t *testing.T) {
	client, server := net.Pipe()
	fakeQMP(t, server)
	q, err := newQMP(client, time.Now(), 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer q.Close()

	out, err := q.HumanCommand("info status", time.Second)
	if err != nil || out != "VM status: running\r\n" {
		t.Errorf("HumanCommand(info status) = %q, %v", out, err)
	}
	if _, err := q.HumanCommand("system_reset", time.Second); err != nil {
		t.Errorf("HumanCommand(system_reset): %v", err)
	}
	if ev := q.Events(); len(ev) != 1 || ev[0].Name != "RESET" {
		t.Errorf("Events = %+v, want one RESET", ev)
	}
	if _, err := q.Execute("nope", nil, time.Second); !errors.Is(err, ErrQMP) {
		t.Errorf("Execute(nope) = %v, want ErrQMP", err)
	}
	if _, err := q.Execute("hang", nil, 50*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Execute(hang) = %v, want ErrTimeout", err)
	}
	// A command that timed out does not block the next one.
	if out, err := q.HumanCommand("info status", time.Second); err != nil || out == "" {
		t.Errorf("HumanCommand after a timeout = %q, %v", out, err)
	}
}

func TestQMPNoGreeting(t *testing.T) {
	client, server := net.Pipe()
	server.Close()
	if _, err := newQMP(client, time.Now(), time.Second); err == nil {
		t.Error("newQMP succeeded without a greeting")
	}
}
