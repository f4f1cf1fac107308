package harness

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

// ErrTimeout is returned by a wait that ran out of time.
var ErrTimeout = errors.New("timed out")

// ErrExited is returned by a wait on a VM whose QEMU process has exited (or
// whose console was closed) before the wait was satisfied.
var ErrExited = errors.New("VM exited")

// Line is one console line with the host time (since QEMU started) at which
// its first byte arrived.
type Line struct {
	T    time.Duration
	Text string
	off  int // of the line's first byte in the output
}

// Match is what an Expect found.
type Match struct {
	// Text is the matched text (the whole line for line matches).
	Text string
	// Groups are the regexp's submatches; Groups[0] is the match itself.
	Groups []string
	// At is the host time since QEMU started at which the matched text began
	// to arrive.
	At  time.Duration
	off int // of the match in the output
}

// Console collects a serial console stream: the text (carriage returns
// dropped), a timestamp for every line, a log, and a read cursor for
// expect-style waits. It is an io.Writer fed by the VM's output; its methods
// are safe for concurrent use.
type Console struct {
	mu      sync.Mutex
	start   time.Time
	now     func() time.Time
	buf     []byte
	chunks  []chunk // arrival time of buf offsets, ascending
	lines   []Line
	lineT   time.Duration // arrival of the current partial line's first byte
	inLine  bool
	cursor  int
	changed chan struct{} // closed and replaced on every write or close
	closed  bool
	err     error
	log     io.Writer
	echo    io.Writer
}

type chunk struct {
	off int
	t   time.Duration
}

// NewConsole returns a console whose timestamps count from start. Every
// completed line is also written to log (if not nil) as "[  12.345] text".
func NewConsole(start time.Time, log io.Writer) *Console {
	return &Console{start: start, now: time.Now, log: log, changed: make(chan struct{})}
}

// Echo also writes every completed, timestamped line to w (e.g. os.Stderr
// for a live demo).
func (c *Console) Echo(w io.Writer) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.echo = w
}

// Write appends output from the VM.
func (c *Console) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now().Sub(c.start)
	c.chunks = append(c.chunks, chunk{off: len(c.buf), t: t})
	for _, b := range p {
		if b == '\r' || b == 0 {
			continue
		}
		if !c.inLine {
			c.inLine, c.lineT = true, t
		}
		c.buf = append(c.buf, b)
		if b == '\n' {
			start := bytes.LastIndexByte(c.buf[:len(c.buf)-1], '\n') + 1
			c.addLine(Line{T: c.lineT, Text: string(c.buf[start : len(c.buf)-1]), off: start})
			c.inLine = false
		}
	}
	c.notify()
	return len(p), nil
}

func (c *Console) addLine(l Line) {
	c.lines = append(c.lines, l)
	for _, w := range []io.Writer{c.log, c.echo} {
		if w != nil {
			fmt.Fprintf(w, "[%8.3f] %s\n", l.T.Seconds(), l.Text)
		}
	}
}

// Logf writes a harness note (not console output) into the log, marked "##".
func (c *Console) Logf(format string, args ...any) {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.now().Sub(c.start)
	for _, w := range []io.Writer{c.log, c.echo} {
		if w != nil {
			fmt.Fprintf(w, "[%8.3f] ## %s\n", t.Seconds(), fmt.Sprintf(format, args...))
		}
	}
}

func (c *Console) notify() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// Close marks the stream finished: waits that are not yet satisfied fail
// with ErrExited wrapping err (if not nil). A partial last line is kept.
func (c *Console) Close(err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return
	}
	if c.inLine {
		start := bytes.LastIndexByte(c.buf, '\n') + 1
		c.addLine(Line{T: c.lineT, Text: string(c.buf[start:]), off: start})
		c.inLine = false
	}
	c.closed, c.err = true, err
	c.notify()
}

// timeAt returns the arrival time of byte off of buf. c.mu must be held.
func (c *Console) timeAt(off int) time.Duration {
	i := sort.Search(len(c.chunks), func(i int) bool { return c.chunks[i].off > off })
	if i == 0 {
		return 0
	}
	return c.chunks[i-1].t
}

// Expect waits until a complete console line after the cursor matches re,
// moves the cursor past that line and returns the match. Lines, not the raw
// stream, are matched so that a pattern such as `READY .*` never matches a
// line still arriving. It fails with ErrTimeout after timeout, or ErrExited
// when the VM is gone.
func (c *Console) Expect(timeout time.Duration, re *regexp.Regexp) (*Match, error) {
	return c.wait(timeout, re, func() (*Match, int) {
		end := bytes.LastIndexByte(c.buf[c.cursor:], '\n')
		if end < 0 {
			return nil, 0
		}
		end += c.cursor
		off := c.cursor
		for off <= end {
			nl := off + bytes.IndexByte(c.buf[off:end+1], '\n')
			line := c.buf[off:nl]
			if m := re.FindSubmatch(line); m != nil {
				return &Match{Text: string(line), Groups: strs(m), At: c.timeAt(off), off: off}, nl + 1
			}
			off = nl + 1
		}
		return nil, 0
	})
}

// ExpectRaw is Expect on the raw stream after the cursor (matches may span
// lines or end inside one, e.g. a shell prompt); the cursor moves to the end
// of the match.
func (c *Console) ExpectRaw(timeout time.Duration, re *regexp.Regexp) (*Match, error) {
	return c.wait(timeout, re, func() (*Match, int) {
		loc := re.FindSubmatchIndex(c.buf[c.cursor:])
		if loc == nil {
			return nil, 0
		}
		groups := make([]string, len(loc)/2)
		for i := range groups {
			if loc[2*i] >= 0 {
				groups[i] = string(c.buf[c.cursor+loc[2*i] : c.cursor+loc[2*i+1]])
			}
		}
		return &Match{Text: groups[0], Groups: groups, At: c.timeAt(c.cursor + loc[0]), off: c.cursor + loc[0]}, c.cursor + loc[1]
	})
}

func (c *Console) wait(timeout time.Duration, re *regexp.Regexp, find func() (*Match, int)) (*Match, error) {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		m, next := find()
		if m != nil {
			c.cursor = next
			c.mu.Unlock()
			return m, nil
		}
		closed, err, changed := c.closed, c.err, c.changed
		c.mu.Unlock()
		if closed {
			if err != nil {
				return nil, fmt.Errorf("waiting for %q: %w: %w", re, ErrExited, err)
			}
			return nil, fmt.Errorf("waiting for %q: %w", re, ErrExited)
		}
		select {
		case <-changed:
		case <-timer.C:
			c.mu.Lock()
			seen := c.seenLocked()
			c.mu.Unlock()
			return nil, fmt.Errorf("waiting %v for %q: %w (%s)", timeout, re, ErrTimeout, seen)
		}
	}
}

// seenLocked says what arrived past the cursor, for a timeout's error: a
// failed test's message then tells whether the guest went quiet (and on
// which line) or kept printing, even where only that message is kept.
func (c *Console) seenLocked() string {
	n := 0
	for i := len(c.lines) - 1; i >= 0 && c.lines[i].off >= c.cursor; i-- {
		n++
	}
	if n == 0 {
		if len(c.lines) == 0 {
			return "no console line yet"
		}
		l := c.lines[len(c.lines)-1]
		return fmt.Sprintf("no console line since the wait began; the last one, at %.3fs: %q", l.T.Seconds(), l.Text)
	}
	l := c.lines[len(c.lines)-1]
	return fmt.Sprintf("%d console line(s) since the wait began, the last at %.3fs: %q", n, l.T.Seconds(), l.Text)
}

func strs(m [][]byte) []string {
	out := make([]string, len(m))
	for i, b := range m {
		out[i] = string(b)
	}
	return out
}

// Cursor returns the read position (bytes of output consumed by waits).
func (c *Console) Cursor() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cursor
}

// Since returns the output from byte offset off up to now.
func (c *Console) Since(off int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	if off > len(c.buf) {
		off = len(c.buf)
	}
	return string(c.buf[off:])
}

// LastOutput returns when output last arrived (host time since QEMU
// started), 0 if none has.
func (c *Console) LastOutput() time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.chunks) == 0 {
		return 0
	}
	return c.chunks[len(c.chunks)-1].t
}

// Lines returns the completed lines so far.
func (c *Console) Lines() []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]Line(nil), c.lines...)
}

// LineTime returns the time of the first completed line matching re, from
// the start of the output (independent of the cursor).
func (c *Console) LineTime(re *regexp.Regexp) (time.Duration, bool) {
	if ts := c.LineTimes(re); len(ts) > 0 {
		return ts[0], true
	}
	return 0, false
}

// LineTimes returns the times of all completed lines matching re.
func (c *Console) LineTimes(re *regexp.Regexp) []time.Duration {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []time.Duration
	for _, l := range c.lines {
		if re.MatchString(l.Text) {
			out = append(out, l.T)
		}
	}
	return out
}

// Tail returns the last n completed lines, timestamped like the log.
func (c *Console) Tail(n int) string {
	c.mu.Lock()
	defer c.mu.Unlock()
	lines := c.lines
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	var b strings.Builder
	for _, l := range lines {
		fmt.Fprintf(&b, "[%8.3f] %s\n", l.T.Seconds(), l.Text)
	}
	return b.String()
}

// linesBetween returns the completed lines starting in [from, to).
func (c *Console) linesBetween(from, to int) []Line {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Line
	for _, l := range c.lines {
		if l.off >= from && l.off < to {
			out = append(out, l)
		}
	}
	return out
}

// kernelStampRE matches a kernel printk timestamp, "[    5.738396] ".
var kernelStampRE = regexp.MustCompile(`\[\s*\d+\.\d{6}\] `)

// Healed returns lines with the kernel's messages taken out of the middle of
// userspace lines. Guest userspace and the kernel share the serial console,
// and a printk can land inside a line a program is writing:
//
//	fastreboot: ... evidence from "vmcore" in 0.1[    5.738396] hrtimer: interrupt took 155410490 ns
//	2s, memory map check ok, ...
//
// Healed gives the kernel message a line of its own and joins the program's
// two halves into one line (at the first half's time). Only a message that
// starts right after a non-space character is taken for an intrusion, so
// a program that prints kernel lines after a prefix ("frguest: [ ...") is
// left alone.
func Healed(lines []Line) []Line {
	out := make([]Line, 0, len(lines))
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		loc := kernelStampRE.FindStringIndex(l.Text)
		if loc == nil || loc[0] == 0 || l.Text[loc[0]-1] == ' ' || i+1 == len(lines) {
			out = append(out, l)
			continue
		}
		out = append(out, Line{T: l.T, Text: l.Text[loc[0]:], off: l.off + loc[0]})
		next := lines[i+1]
		out = append(out, Line{T: l.T, Text: l.Text[:loc[0]] + next.Text, off: l.off})
		i++
	}
	return out
}
