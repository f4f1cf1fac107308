package harness

import (
	"errors"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

var rebootingRE = regexp.MustCompile(`^fastreboot: rebooting through kexec`)

func TestFindJump(t *testing.T) {
	sec := func(n float64) time.Duration { return time.Duration(n * float64(time.Second)) }
	line := func(at float64, text string) Line { return Line{T: sec(at), Text: text} }
	const ready = "FRGUEST_READY uptime=1.00 release=v2 cpus=0-3 memtotal_kb=1 modules=1/1 daemon=started"
	for _, tc := range []struct {
		name    string
		lines   []Line
		sent    time.Duration
		marker  *regexp.Regexp
		want    *Reboot
		wantErr error
	}{{
		name: "line seen",
		lines: []Line{
			line(10, "fastreboot: staged image v2"),
			line(11, "fastreboot: rebooting through kexec"),
			line(12, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(14, "FRGUEST_START uptime=1.20"),
			line(15, ready),
		},
		sent: sec(10), marker: rebootingRE,
		want: &Reboot{Sent: sec(10), Requested: sec(11)},
	}, {
		// The fresh-clone CI failure: the line was still in the tty
		// buffer when the CPUs stopped.
		name: "line lost",
		lines: []Line{
			line(12, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(14, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10), marker: rebootingRE,
		want: &Reboot{Sent: sec(10), Requested: sec(10), LineLost: true},
	}, {
		name: "no marker asked for",
		lines: []Line{
			line(11, "fastreboot: rebooting through kexec"),
			line(12, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(14, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10),
		want: &Reboot{Sent: sec(10), Requested: sec(10), LineLost: true},
	}, {
		// Two-stage crash: the crash kernel's banner and its line, then
		// production's banner. The jump into production is the banner
		// after the crash stage's line.
		name: "two kernels: the last banner before userspace",
		lines: []Line{
			line(11, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(13, "fastreboot: rebooting through kexec"),
			line(16, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(18, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10), marker: rebootingRE,
		want: &Reboot{Sent: sec(10), Requested: sec(13)},
	}, {
		name: "marker only before the banner counts",
		lines: []Line{
			line(12, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(13, "fastreboot: rebooting through kexec"),
			line(14, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10), marker: rebootingRE,
		want: &Reboot{Sent: sec(10), Requested: sec(10), LineLost: true},
	}, {
		name: "marker older than the request",
		lines: []Line{
			line(9, "fastreboot: rebooting through kexec"),
			line(12, "[    0.000000] Linux version 6.1.0-28-amd64"),
			line(14, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10), marker: rebootingRE,
		want: &Reboot{Sent: sec(10), Requested: sec(10), LineLost: true},
	}, {
		// Userspace again, but no kernel booted: not a jump.
		name: "no banner",
		lines: []Line{
			line(11, "fastreboot: rebooting through kexec"),
			line(14, "FRGUEST_START uptime=1.20"),
		},
		sent: sec(10), marker: rebootingRE,
		wantErr: ErrNoJump,
	}, {
		name: "banner after userspace only",
		lines: []Line{
			line(14, "FRGUEST_START uptime=1.20"),
			line(16, "[    0.000000] Linux version 6.1.0-28-amd64"),
		},
		sent: sec(10), marker: rebootingRE,
		wantErr: ErrNoJump,
	}, {
		name:    "no userspace",
		lines:   []Line{line(12, "[    0.000000] Linux version 6.1.0-28-amd64")},
		sent:    sec(10),
		wantErr: ErrNoJump,
	}} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := findJump(tc.lines, tc.sent, tc.marker)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("findJump: %v, want %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("findJump mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestWaitReboot drives WaitReboot on a fake console: the old generation's
// line arrives or is lost, the next kernel boots, and the downtime counts
// from the line or, without it, from the command.
func TestWaitReboot(t *testing.T) {
	const next = "[    0.000000] Linux version 6.1.0-28-amd64\n" +
		"[    0.500000] smp: Brought up 1 node, 4 CPUs\n" +
		"FRGUEST_START uptime=1.20\n" +
		"FRGUEST_READY uptime=1.40 release=v2 cpus=0-3 memtotal_kb=2014204 modules=11/12 daemon=started\n" +
		"$ "
	for _, tc := range []struct {
		name     string
		old      string
		wantLost bool
	}{
		{"line seen", "fastreboot: rebooting through kexec\n", false},
		{"line lost", "", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var log strings.Builder
			c, _ := newTestConsole(&log) // every write 1s later
			vm := &VM{console: c}
			io.WriteString(c, "$ ")                  // t=1s
			sent := 1500 * time.Millisecond          // the command
			io.WriteString(c, "fastreboot reboot\n") // t=2s: the echo
			io.WriteString(c, tc.old)                // t=3s
			done := make(chan *Reboot)
			go func() {
				r, err := vm.WaitReboot(sent, rebootingRE, 5*time.Second)
				if err != nil {
					t.Errorf("WaitReboot: %v", err)
				}
				done <- r
			}()
			io.WriteString(c, next) // t=4s
			r := <-done
			if r == nil {
				return
			}
			wantReq := sent
			if !tc.wantLost {
				wantReq = 3 * time.Second
			}
			if r.LineLost != tc.wantLost || r.Requested != wantReq || r.Sent != sent {
				t.Errorf("reboot: lost %v, requested %v, sent %v; want lost %v, requested %v, sent %v", r.LineLost, r.Requested, r.Sent, tc.wantLost, wantReq, sent)
			}
			if r.Boot.KernelAt != 4*time.Second || r.Boot.Release != "v2" || r.Downtime() != r.Boot.StartAt-wantReq {
				t.Errorf("boot %+v, downtime %v; want the kernel at 4s, release v2", r.Boot, r.Downtime())
			}
			if noted := strings.Contains(log.String(), "never reached the console"); noted != tc.wantLost {
				t.Errorf("console log notes a lost line: %v, want %v:\n%s", noted, tc.wantLost, log.String())
			}
		})
	}

	t.Run("no new kernel", func(t *testing.T) {
		c, _ := newTestConsole(nil)
		vm := &VM{console: c}
		io.WriteString(c, "$ fastreboot reboot\nFRGUEST_START uptime=9.00\n"+
			"FRGUEST_READY uptime=9.10 release=v1 cpus=0-3 memtotal_kb=1 modules=1/1 daemon=started\n$ ")
		if _, err := vm.WaitReboot(0, rebootingRE, time.Second); !errors.Is(err, ErrNoJump) {
			t.Errorf("WaitReboot without a kernel banner: %v, want ErrNoJump", err)
		}
	})
}
