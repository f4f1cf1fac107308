package crashhandler

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
)

// Evidence is what the crash kernel keeps of the crashed one.
type Evidence struct {
	// Time is the crash time (VMCOREINFO CRASHTIME, wall clock, seconds).
	Time time.Time `json:"time"`
	// Reason is the panic line, e.g. "Kernel panic - not syncing: sysrq
	// triggered crash" ("" if the log has none).
	Reason string `json:"reason"`
	// Cause is the last line before the panic that names a fault (a BUG:,
	// Oops, soft or hard lockup, hung task, unknown NMI, WARNING, RCU
	// stall, sysrq crash), e.g. "watchdog: BUG: soft lockup - CPU#0 stuck
	// for 22s! [sh:245]"; "" if none. An oops panics with the uninformative
	// "Fatal exception", so this is the line to show.
	Cause string `json:"cause,omitempty"`
	// CPU is the panicking CPU, -1 if unknown: from the "CPU: N PID: P"
	// line panic()/oops print, else from the panic record's caller ID when
	// it was printed outside task context (NMI).
	CPU int `json:"cpu"`
	// KernelRelease is the crashed kernel's release (VMCOREINFO OSRELEASE).
	KernelRelease string `json:"kernel_release"`
	// Log is the tail of the crashed kernel's log, dmesg style: the last
	// EvidenceOptions.TailLines lines, from the Cause line on if that is
	// further back (by at most TailLines more).
	Log []string `json:"log"`
	// LogLines is the number of lines in the whole log (Save writes them
	// all to log.txt).
	LogLines int `json:"log_lines"`
	// CPUs has one entry per NT_PRSTATUS note: the CPUs that saved their
	// registers when the crash kexec stopped them.
	CPUs []CPUState `json:"cpus,omitempty"`
	// Problems lists parts that could not be read (the rest is still
	// valid), e.g. a log buffer already overwritten in direct mode.
	Problems []string `json:"problems,omitempty"`
	// Generation is the fastreboot generation that crashed, Mode the
	// crash path's mode that recovered it (0 and "" when unknown).
	Generation int  `json:"generation,omitempty"`
	Mode       Mode `json:"mode,omitempty"`
	// Source is where the evidence was read: "vmcore", "pstore", or ""
	// when none could be read (then only Time, Generation, Mode and
	// Problems are known, and Time is when the next kernel booted).
	Source string `json:"source,omitempty"`
	// ProductionKernel, after a two-stage crash, is how the crash stage
	// loaded production's kernel: "elf" (its decompressed kernel, mapped
	// from the crashed kernel's memory and checked against its SHA-256:
	// it started at once after the jump) or "compressed" (it decompressed
	// itself after the jump; ProductionKernelWhy says why the ELF was not
	// used). "" in direct mode.
	ProductionKernel    string `json:"production_kernel,omitempty"`
	ProductionKernelWhy string `json:"production_kernel_why,omitempty"`

	fullLog []string
}

// CPUState is the content of one NT_PRSTATUS note.
type CPUState struct {
	// Note is the note's position among the PRSTATUS notes (the order of
	// possible CPUs, skipping those that saved nothing).
	Note int `json:"note"`
	// PID of the task that ran on the CPU (0: idle).
	PID int `json:"pid"`
	// IP is the instruction pointer saved (x86-64 rip, arm64 pc; 0 if the
	// architecture is not known).
	IP uint64 `json:"ip"`
}

// EvidenceOptions tune CollectEvidence / ReadEvidence.
type EvidenceOptions struct {
	// Root is where /proc/vmcore is read ("/" when empty).
	Root string
	// TailLines is the number of log lines kept in Evidence.Log (100 when
	// 0).
	TailLines int
}

const panicPrefix = "Kernel panic - not syncing: "

var cpuLine = regexp.MustCompile(`^CPU: (\d+) (?:UID: \d+ )?PID: (-?\d+)`)

// ReadEvidence extracts the evidence from a vmcore (an ELF64 core such as
// /proc/vmcore). It fails only if r is not a readable vmcore with a
// VMCOREINFO note; a printk ring buffer it cannot walk leaves Log empty and
// is listed in Problems.
func ReadEvidence(r io.ReaderAt, opts EvidenceOptions) (*Evidence, error) {
	if opts.TailLines <= 0 {
		opts.TailLines = 100
	}
	v, err := OpenVmcore(r)
	if err != nil {
		return nil, err
	}
	notes, err := v.Notes()
	if err != nil {
		return nil, err
	}
	var vi VMCOREINFO
	ev := &Evidence{CPU: -1}
	for _, n := range notes {
		switch {
		case n.Name == "VMCOREINFO":
			vi = ParseVMCOREINFO(n.Desc)
		case n.Name == "CORE" && n.Type == ntPRStatus:
			ev.CPUs = append(ev.CPUs, v.prstatus(len(ev.CPUs), n.Desc))
		}
	}
	if vi == nil {
		return nil, fmt.Errorf("%w: no VMCOREINFO note", ErrBadVmcore)
	}
	ev.KernelRelease = vi["OSRELEASE"]
	if t, err := strconv.ParseInt(vi["CRASHTIME"], 10, 64); err == nil {
		ev.Time = time.Unix(t, 0).UTC()
	}

	recs, err := ReadPrintkLog(v, vi)
	if err != nil {
		ev.Problems = append(ev.Problems, "printk log: "+err.Error())
		return ev, nil
	}
	ev.fromLog(recs, opts.TailLines)
	return ev, nil
}

// fromLog fills the panic reason, cause, CPU and log from the records.
func (ev *Evidence) fromLog(recs []LogRecord, tail int) {
	panicIdx := -1
	for i := len(recs) - 1; i >= 0 && panicIdx < 0; i-- {
		for _, line := range strings.Split(recs[i].Text, "\n") {
			if strings.HasPrefix(line, panicPrefix) {
				ev.Reason, panicIdx = strings.TrimSpace(line), i
				break
			}
		}
	}
	ev.CPU = panicCPU(recs, panicIdx)
	ev.Cause = panicCause(recs, panicIdx)
	for _, r := range recs {
		ev.fullLog = append(ev.fullLog, r.Lines()...)
	}
	ev.LogLines = len(ev.fullLog)
	ev.Log = ev.fullLog[tailStart(ev.fullLog, tail, ev.Cause):]
}

// tailStart returns where the last tail lines of log begin, moved back (by
// at most tail more lines) to the cause line if the tail would miss it: a
// soft lockup prints two register dumps between its line and the panic.
func tailStart(log []string, tail int, cause string) int {
	start := max(0, len(log)-tail)
	if cause == "" || slices.ContainsFunc(log[start:], func(l string) bool { return strings.Contains(l, cause) }) {
		return start
	}
	for i := start - 1; i >= 0 && i >= start-tail; i-- {
		if strings.Contains(log[i], cause) {
			return i
		}
	}
	return start
}

// panicCPU finds the panicking CPU: the first "CPU: N PID:" line after the
// panic record (panic() dumps the stack after its message), else the last
// one before it (an oops prints it before panic("Fatal exception")), else
// the panic record's caller ID if printed outside task context.
func panicCPU(recs []LogRecord, panicIdx int) int {
	if panicIdx < 0 {
		return -1
	}
	find := func(r LogRecord) (int, bool) {
		for _, line := range strings.Split(r.Text, "\n") {
			if m := cpuLine.FindStringSubmatch(line); m != nil {
				n, err := strconv.Atoi(m[1])
				return n, err == nil
			}
		}
		return 0, false
	}
	for _, r := range recs[panicIdx:] {
		if n, ok := find(r); ok {
			return n
		}
	}
	for i := panicIdx - 1; i >= 0; i-- {
		if n, ok := find(recs[i]); ok {
			return n
		}
	}
	if n, ok := recs[panicIdx].callerCPU(); ok {
		return n
	}
	return -1
}

// causeMarkers start (or, after a "watchdog: " prefix, contain) the lines
// the kernel prints for the faults routed to panic.
var causeMarkers = []string{
	"BUG: ", "Oops: ", "general protection fault", "kernel BUG at",
	"Watchdog detected hard LOCKUP", "INFO: task ", "Uhhuh. NMI received",
	"NMI: IOCK error", "NMI: PCI system error", "WARNING: CPU: ",
	"detected stalls on CPUs", "self-detected stall on CPU", "sysrq: Trigger a crash",
}

// causeWindow bounds how long before the panic a fault line may have been
// printed to count as its cause.
const causeWindow = 60e9

// panicCause returns the last fault line in the records before the panic
// (and in the panic record itself). An "Oops:" line gives way to the "BUG:"
// line a few records before it, which says what the oops was.
func panicCause(recs []LogRecord, panicIdx int) string {
	if panicIdx < 0 {
		return ""
	}
	cause, causeIdx := "", -1
	for i := panicIdx; i >= 0 && i >= panicIdx-500; i-- {
		// A fault that leads to a panic prints its line just before it;
		// older fault lines (a warning at boot) did not cause it.
		if recs[i].TsNsec+causeWindow < recs[panicIdx].TsNsec {
			break
		}
		lines := strings.Split(recs[i].Text, "\n")
		for j := len(lines) - 1; j >= 0; j-- {
			line := strings.TrimSpace(lines[j])
			if !isCauseLine(line) {
				continue
			}
			switch {
			case cause == "":
				cause, causeIdx = line, i
				if !strings.HasPrefix(line, "Oops: ") {
					return cause
				}
			case strings.HasPrefix(line, "BUG: "):
				return line
			}
		}
		if cause != "" && causeIdx-i >= 10 {
			break
		}
	}
	return cause
}

// dieLine matches the line x86's die() prints for a trap in kernel mode,
// e.g. "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI" or "divide error: 0000
// [#1] SMP" (arch/x86/kernel/dumpstack.c __die_header).
var dieLine = regexp.MustCompile(`^[a-z ]+: [0-9a-f]{4} \[#\d+\]`)

func isCauseLine(line string) bool {
	if dieLine.MatchString(line) {
		return true
	}
	for _, m := range causeMarkers {
		if strings.HasPrefix(line, m) || strings.HasPrefix(line, "watchdog: "+m) || strings.HasPrefix(line, "rcu: INFO: ") && strings.Contains(line, m) {
			return true
		}
	}
	return false
}

// prstatus decodes the fields of struct elf_prstatus that are the same on
// every 64-bit architecture (pr_pid at 32) and the instruction pointer of
// x86-64 (pr_reg at 112, rip is register 16) and arm64 (pc is register 32).
func (v *Vmcore) prstatus(i int, d []byte) CPUState {
	c := CPUState{Note: i}
	if len(d) >= 36 {
		c.PID = int(int32(v.order.Uint32(d[32:])))
	}
	var ipOff int
	switch v.Machine {
	case emX86_64:
		ipOff = 112 + 16*8
	case emAArch64:
		ipOff = 112 + 32*8
	}
	if ipOff > 0 && len(d) >= ipOff+8 {
		c.IP = v.order.Uint64(d[ipOff:])
	}
	return c
}

// CollectEvidence reads Root/proc/vmcore. It returns ErrNoVmcore when the
// running kernel is not a crash kernel.
func CollectEvidence(opts EvidenceOptions) (*Evidence, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	f, err := os.Open(filepath.Join(opts.Root, "proc/vmcore"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNoVmcore, err)
	}
	if err != nil {
		return nil, fmt.Errorf("opening vmcore: %w", err)
	}
	defer f.Close()
	return ReadEvidence(f, opts)
}

// Evidence file names in the directory Save writes.
const (
	EvidenceFile = "evidence.json"
	LogFile      = "log.txt"
)

// Save writes dir/evidence.json and dir/log.txt (the whole log), each
// atomically and mode 0600 (the log may hold what only root should read):
// a temporary file, fsync'd, renamed into place, and the directory fsync'd
// (atomicfile), creating dir durably. A caller erases the evidence's
// source (pstore) only after Save returned nil.
func (e *Evidence) Save(dir string) error {
	if err := atomicfile.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("saving crash evidence: %w", err)
	}
	b, err := json.MarshalIndent(e, "", "  ")
	if err != nil {
		return fmt.Errorf("saving crash evidence: %w", err)
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, EvidenceFile), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("saving crash evidence: %w", err)
	}
	log := e.fullLog
	if log == nil {
		log = e.Log
	}
	var sb strings.Builder
	for _, l := range log {
		sb.WriteString(l)
		sb.WriteByte('\n')
	}
	if err := atomicfile.WriteFile(filepath.Join(dir, LogFile), []byte(sb.String()), 0o600); err != nil {
		return fmt.Errorf("saving crash evidence: %w", err)
	}
	return nil
}

// SaveEvidence is CollectEvidence followed by Save: run it first thing in
// the crash kernel.
func SaveEvidence(dir string, opts EvidenceOptions) (*Evidence, error) {
	ev, err := CollectEvidence(opts)
	if err != nil {
		return nil, err
	}
	return ev, ev.Save(dir)
}

// ReadSavedEvidence reads dir/evidence.json written by Save.
func ReadSavedEvidence(dir string) (*Evidence, error) {
	b, err := os.ReadFile(filepath.Join(dir, EvidenceFile))
	if err != nil {
		return nil, fmt.Errorf("reading crash evidence: %w", err)
	}
	var e Evidence
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("crash evidence %s: %w", filepath.Join(dir, EvidenceFile), err)
	}
	return &e, nil
}
