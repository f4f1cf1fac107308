package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// fakeClock advances by step on every reading.
type fakeClock struct {
	t    time.Time
	step time.Duration
}

func (c *fakeClock) now() time.Time {
	c.t = c.t.Add(c.step)
	return c.t
}

func newTestConsole(log io.Writer) (*Console, *fakeClock) {
	start := time.Unix(1000, 0)
	clk := &fakeClock{t: start, step: time.Second}
	c := NewConsole(start, log)
	c.now = clk.now
	return c, clk
}

func TestConsoleLinesAndTimes(t *testing.T) {
	var log strings.Builder
	c, _ := newTestConsole(&log)
	io.WriteString(c, "Linux version 6.1\r\nhal")             // t=1s
	io.WriteString(c, "f line\r\nFRGUEST_READY uptime=1\r\n") // t=2s
	io.WriteString(c, "$ ")                                   // t=3s, partial

	want := []Line{{T: time.Second, Text: "Linux version 6.1"}, {T: time.Second, Text: "half line"}, {T: 2 * time.Second, Text: "FRGUEST_READY uptime=1"}}
	if diff := cmp.Diff(want, c.Lines(), cmp.AllowUnexported(Line{}), cmp.FilterPath(func(p cmp.Path) bool { return p.Last().String() == ".off" }, cmp.Ignore())); diff != "" {
		t.Errorf("Lines mismatch (-want +got):\n%s", diff)
	}
	if d, ok := c.LineTime(ReadyRE); !ok || d != 2*time.Second {
		t.Errorf("LineTime(ReadyRE) = %v, %v; want 2s", d, ok)
	}
	if _, ok := c.LineTime(regexp.MustCompile("nope")); ok {
		t.Error("LineTime found a line that is not there")
	}
	wantLog := "[   1.000] Linux version 6.1\n[   1.000] half line\n[   2.000] FRGUEST_READY uptime=1\n"
	if log.String() != wantLog {
		t.Errorf("log = %q, want %q", log.String(), wantLog)
	}
	c.Close(nil)
	if got := c.Lines(); got[len(got)-1].Text != "$ " {
		t.Errorf("Close did not keep the partial last line: %v", got)
	}
}

func TestConsoleExpect(t *testing.T) {
	c, _ := newTestConsole(nil)
	io.WriteString(c, "one\nFRGUEST_READY uptime=3.5 rel")

	// A line still arriving does not match a pattern that could match it.
	_, err := c.Expect(50*time.Millisecond, regexp.MustCompile(`^FRGUEST_READY .*`))
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("Expect on a partial line = %v, want ErrTimeout", err)
	}
	// The timeout says what did arrive: a failed test keeps that much.
	if want := `1 console line(s) since the wait began, the last at 1.000s: "one"`; !strings.Contains(err.Error(), want) {
		t.Errorf("timeout error %q does not say %q", err, want)
	}
	done := make(chan *Match)
	go func() {
		m, err := c.Expect(5*time.Second, regexp.MustCompile(`^FRGUEST_READY uptime=(\S+) (.*)`))
		if err != nil {
			t.Error(err)
		}
		done <- m
	}()
	time.Sleep(20 * time.Millisecond)
	io.WriteString(c, "ease=v1\nnext\n")
	m := <-done
	if m == nil {
		t.FailNow()
	}
	if diff := cmp.Diff([]string{"FRGUEST_READY uptime=3.5 release=v1", "3.5", "release=v1"}, m.Groups); diff != "" {
		t.Errorf("groups (-want +got):\n%s", diff)
	}
	if m.At != time.Second {
		t.Errorf("match At = %v, want 1s (when the line began)", m.At)
	}
	// The cursor moved past the matched line: it does not match again.
	if _, err := c.Expect(20*time.Millisecond, regexp.MustCompile(`FRGUEST_READY`)); !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), `1 console line(s) since the wait began, the last at 2.000s: "next"`) {
		t.Errorf("second Expect = %v, want ErrTimeout saying the one line since (next)", err)
	}
	if m, err := c.ExpectRaw(time.Second, regexp.MustCompile(`ne(x)`)); err != nil || m.Groups[1] != "x" {
		t.Errorf("ExpectRaw = %+v, %v", m, err)
	}
	if _, err := c.Expect(20*time.Millisecond, regexp.MustCompile(`never`)); !strings.Contains(err.Error(), `no console line since the wait began; the last one, at 2.000s: "next"`) {
		t.Errorf("Expect with nothing new = %v, want it to name the last line", err)
	}
	c.Close(errors.New("exit status 1"))
	_, err = c.Expect(5*time.Second, regexp.MustCompile(`never`))
	if !errors.Is(err, ErrExited) || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("Expect after close = %v, want ErrExited with the reason", err)
	}
}

// fakeVM is a VM whose "guest" is a goroutine imitating a tty (echo) and
// gosh (prompt after each command).
func fakeVM(t *testing.T, run func(cmd string) (out string, code int)) *VM {
	t.Helper()
	pr, pw := io.Pipe()
	c, _ := newTestConsole(nil)
	c.now = time.Now
	vm := &VM{console: c, stdin: pw, exited: make(chan struct{})}
	marker := regexp.MustCompile(`^\{ (.*); \} 2>&1; echo (__FR_DONE_\d+_)\$\?$`)
	go func() {
		io.WriteString(c, "$ ")
		s := bufio.NewScanner(pr)
		for s.Scan() {
			line := s.Text()
			io.WriteString(c, line+"\r\n") // tty echo
			m := marker.FindStringSubmatch(line)
			if m == nil {
				io.WriteString(c, "$ ")
				continue
			}
			out, code := run(m[1])
			io.WriteString(c, strings.ReplaceAll(out, "\n", "\r\n"))
			fmt.Fprintf(c, "%s%d\r\n$ ", m[2], code)
		}
	}()
	t.Cleanup(func() { pw.Close() })
	return vm
}

func TestRun(t *testing.T) {
	vm := fakeVM(t, func(cmd string) (string, int) {
		switch cmd {
		case "cat /mnt/hello.txt":
			return "hello\nworld\n", 0
		case "printf x":
			return "x", 0
		case "false":
			return "", 1
		case "hang":
			select {}
		}
		return "gosh: " + cmd + ": not found\n", 127
	})
	for _, tt := range []struct {
		cmd      string
		wantOut  string
		wantCode int
	}{
		{"cat /mnt/hello.txt", "hello\nworld\n", 0},
		{"printf x", "x", 0},
		{"false", "", 1},
		{"nope", "gosh: nope: not found\n", 127},
	} {
		out, code, err := vm.Run(tt.cmd, 5*time.Second)
		if err != nil {
			t.Fatalf("Run(%q): %v", tt.cmd, err)
		}
		if out != tt.wantOut || code != tt.wantCode {
			t.Errorf("Run(%q) = %q, %d; want %q, %d", tt.cmd, out, code, tt.wantOut, tt.wantCode)
		}
	}
	if _, err := vm.RunOK("false", 5*time.Second); err == nil || !strings.Contains(err.Error(), "exit status 1") {
		t.Errorf("RunOK(false) = %v, want exit status 1", err)
	}
	if _, _, err := vm.Run("a\nb", time.Second); err == nil {
		t.Error("Run accepted a multi-line command")
	}
	if _, _, err := vm.Run(strings.Repeat("x", 2000), time.Second); err == nil {
		t.Error("Run accepted an overlong command")
	}
	if _, _, err := vm.Run("hang", 100*time.Millisecond); !errors.Is(err, ErrTimeout) {
		t.Errorf("Run(hang) = %v, want ErrTimeout", err)
	}
}

func TestParseReady(t *testing.T) {
	for _, tt := range []struct {
		line    string
		want    Ready
		wantErr bool
	}{
		{
			line: "FRGUEST_READY uptime=3.10 release=v1 cpus=0-3 memtotal_kb=2014204 modules=11/12 daemon=started",
			want: Ready{Uptime: 3100 * time.Millisecond, Release: "v1", CPUs: "0-3", MemTotalKB: 2014204, ModulesLoaded: 11, ModulesListed: 12, Daemon: "started"},
		},
		{
			// The shell's prompt overtook the marker (promptFirst).
			line: "$ FRGUEST_READY uptime=7.57 release=v2 cpus=0-3 memtotal_kb=1947096 modules=15/16 daemon=started",
			want: Ready{Uptime: 7570 * time.Millisecond, Release: "v2", CPUs: "0-3", MemTotalKB: 1947096, ModulesLoaded: 15, ModulesListed: 16, Daemon: "started"},
		},
		{line: "FRGUEST_READY uptime=3.10", wantErr: true},
		{line: "FRGUEST_START uptime=3.10", wantErr: true},
		{line: "FRGUEST_READY uptime=x release=v1 cpus=0 memtotal_kb=1 modules=1/1 daemon=off", wantErr: true},
		{line: "FRGUEST_READY uptime=1 release=v1 cpus=0 memtotal_kb=1 modules=11 daemon=off", wantErr: true},
		{line: "FRGUEST_READY uptime=1 release=v1 cpus=0 memtotal_kb=1 modules=1/1 daemon", wantErr: true},
	} {
		got, err := ParseReady(tt.line)
		if (err != nil) != tt.wantErr {
			t.Errorf("ParseReady(%q) error = %v, wantErr %v", tt.line, err, tt.wantErr)
			continue
		}
		if err != nil && !errors.Is(err, ErrBadMarker) {
			t.Errorf("ParseReady(%q) error %v is not ErrBadMarker", tt.line, err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("ParseReady(%q) (-want +got):\n%s", tt.line, diff)
		}
	}
}

func FuzzParseReady(f *testing.F) {
	f.Add("FRGUEST_READY uptime=3.10 release=v1 cpus=0-3 memtotal_kb=2014204 modules=11/12 daemon=started")
	f.Add("FRGUEST_READY uptime=1e308 release= cpus= memtotal_kb=-1 modules=/ daemon=")
	f.Fuzz(func(t *testing.T, line string) {
		r, err := ParseReady(line)
		if err == nil && r.Uptime < 0 {
			t.Errorf("ParseReady(%q) gave a negative uptime %v", line, r.Uptime)
		}
	})
}

// TestCrashStageRE: both crash stages' first lines give their mode; the
// minimal stage's later lines and other fastreboot lines do not match.
func TestCrashStageRE(t *testing.T) {
	for _, tt := range []struct {
		line, mode string // mode "": no match
	}{
		{"FRGUEST_RECOVER mode=two-stage uptime=2.94", "two-stage"},
		{"FRGUEST_RECOVER mode=direct uptime=3.40", "direct"},
		{"fastreboot: crash stage mode=two-stage uptime=2.71 memtotal_kb=215000 memfree_kb=170000 memavailable_kb=160000", "two-stage"},
		{`fastreboot: crash stage recovered: evidence from "vmcore" in 0.50s`, ""},
		{"fastreboot: crash stage failed: no handoff; rebooting through the firmware in 10s", ""},
		{"fastreboot: rebooting through kexec at 2026-12-04T16:26:37Z", ""},
		{"frguest: FRGUEST_RECOVER mode=two-stage", ""},
	} {
		var got string
		if m := CrashStageRE.FindStringSubmatch(tt.line); m != nil {
			got = m[1]
		}
		if got != tt.mode {
			t.Errorf("CrashStageRE on %q: mode %q, want %q", tt.line, got, tt.mode)
		}
	}
}

// TestCrashKernelRE: the crash kernel's command line line gives its mode;
// a production kernel's does not match.
func TestCrashKernelRE(t *testing.T) {
	for _, tt := range []struct {
		line, mode string
	}{
		{"[    0.151025] Kernel command line: console=ttyS0 memmap=1M$0x7f000000 fastreboot.crash=two-stage reset_devices irqpoll panic=3", "two-stage"},
		{"[    0.151025] Kernel command line: console=ttyS0 fastreboot.crash=direct possible_cpus=9", "direct"},
		{"[    0.151025] Kernel command line: console=ttyS0 panic=-1 crashkernel=416M", ""},
		{"[    0.000000] Command line: console=ttyS0 fastreboot.crash=two-stage", ""},
	} {
		got := ""
		if m := CrashKernelRE.FindStringSubmatch(tt.line); m != nil {
			got = m[1]
		}
		if got != tt.mode {
			t.Errorf("%q: mode %q, want %q", tt.line, got, tt.mode)
		}
	}
}

// TestHealed: a kernel message inside a program's line is taken out and the
// program's line joined; lines that merely quote kernel lines stay as they
// are.
func TestHealed(t *testing.T) {
	in := []Line{
		{T: 1, Text: `fastreboot: crash stage recovered: evidence from "vmcore" in 0.1[    5.738396] hrtimer: interrupt took 155410490 ns`},
		{T: 2, Text: `2s, memory map check ok, production initrd 28240484 bytes staged`},
		{T: 3, Text: `frguest: [    1.234567] ramoops: using 0x100000@0x7f000000`},
		{T: 4, Text: `[    5.900000] virtio_blk virtio1: [vda] 2048 512-byte logical blocks`},
	}
	var got []string
	for _, l := range Healed(in) {
		got = append(got, l.Text)
	}
	want := []string{
		`[    5.738396] hrtimer: interrupt took 155410490 ns`,
		`fastreboot: crash stage recovered: evidence from "vmcore" in 0.12s, memory map check ok, production initrd 28240484 bytes staged`,
		`frguest: [    1.234567] ramoops: using 0x100000@0x7f000000`,
		`[    5.900000] virtio_blk virtio1: [vda] 2048 512-byte logical blocks`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Healed (-want +got):\n%s", diff)
	}
	re := regexp.MustCompile(`evidence from "[^"]*vmcore" in \S+, memory map check ok`)
	if !re.MatchString(got[1]) {
		t.Errorf("the joined line does not match %s", re)
	}
}

func TestGroupStderr(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"fastreboot status --check", "{ fastreboot status --check; } 2>&1"},
		{"echo a; echo b; ", "{ echo a; echo b; } 2>&1"},
		{"sleep 100 &", "{ sleep 100 & } 2>&1"},
		{"true && false", "{ true && false; } 2>&1"},
	} {
		if got := groupStderr(tc.in); got != tc.want {
			t.Errorf("groupStderr(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestWaitBootPromptFirst: a boot whose shell prompt reached the console
// ahead of frguest's ready line (u-root's init copies each child's output
// from its own goroutine) is a boot: the markers are found behind the
// prompt, and no second prompt is waited for.
func TestWaitBootPromptFirst(t *testing.T) {
	c, _ := newTestConsole(nil)
	vm := &VM{console: c}
	io.WriteString(c, "[    0.000000] Linux version 6.1.0-48-amd64\n")
	io.WriteString(c, "FRGUEST_START uptime=5.57\n")
	io.WriteString(c, "FRGUEST_CRASH_ARM ok took=0.31s: crash path not armed\n")
	io.WriteString(c, "$ FRGUEST_READY uptime=7.57 release=v2 cpus=0-3 memtotal_kb=1947096 modules=15/16 daemon=started\n")
	b, err := vm.WaitBoot(time.Second)
	if err != nil {
		t.Fatalf("WaitBoot: %v", err)
	}
	if b.Release != "v2" || b.Daemon != "started" || b.KernelAt != time.Second || b.StartAt != 2*time.Second || b.ReadyAt != 4*time.Second {
		t.Errorf("boot %+v: want v2 with its daemon, the kernel at 1s, userspace at 2s, ready at 4s", b)
	}
}
