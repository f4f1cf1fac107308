package crashhandler

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// ErrNoPstore: no panic log is stored in pstore (the pstore file system is
// not mounted, no backend such as ramoops is loaded, or it holds no dmesg
// record).
var ErrNoPstore = errors.New("no panic log in pstore")

// PstoreDir is where the pstore file system is mounted.
const PstoreDir = "sys/fs/pstore"

// dmesgLine is one line of a pstore dmesg record: "<0>[   16.638862] text"
// (the <level> only when the kernel dumps in syslog format).
var dmesgLine = regexp.MustCompile(`^(?:<\d+>)?\[\s*(\d+)\.(\d{6})\] (.*)$`)

// CollectPstoreEvidence reads the panic log a pstore backend (ramoops over
// a memory region kept across kexec by memmap=SIZE$START) stored when the
// previous kernel panicked: Root/sys/fs/pstore/dmesg-*. It is the evidence
// of a direct-mode crash on x86, where /proc/vmcore cannot be read (the
// crashed kernel's memory is the new kernel's RAM, and reading it through
// ioremap is refused). The kernel must dump before the crash kexec:
// crash_kexec_post_notifiers on the crashed kernel's command line.
//
// The records of the most recent dump (parts numbered from the newest
// chunk, Part1, backwards) are put in order. Time is the record's time as
// pstore gives it (the file's modification time), CPU and reason come from
// the log as for a vmcore; there are no register notes.
func CollectPstoreEvidence(opts EvidenceOptions) (*Evidence, error) {
	if opts.Root == "" {
		opts.Root = "/"
	}
	if opts.TailLines <= 0 {
		opts.TailLines = 100
	}
	dir := filepath.Join(opts.Root, PstoreDir)
	ents, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w: %w", ErrNoPstore, err)
	}
	if err != nil {
		return nil, fmt.Errorf("reading pstore: %w", err)
	}
	type part struct {
		name string
		id   int
		at   time.Time
	}
	ev := &Evidence{CPU: -1}
	var parts []part
	for _, e := range ents {
		if !strings.HasPrefix(e.Name(), "dmesg-") {
			continue
		}
		// dmesg-ramoops-0, or dmesg-ramoops-0.enc.z when pstore could not
		// decompress the record.
		i := strings.LastIndexByte(e.Name(), '-')
		digits := strings.TrimRightFunc(e.Name()[i+1:], func(r rune) bool { return r < '0' || r > '9' })
		if j := strings.IndexFunc(digits, func(r rune) bool { return r < '0' || r > '9' }); j >= 0 {
			digits = digits[:j]
		}
		id, err := strconv.Atoi(digits)
		if err != nil {
			continue
		}
		if strings.HasSuffix(e.Name(), ".enc.z") {
			ev.Problems = append(ev.Problems, "pstore "+e.Name()+": compressed record pstore could not decompress")
			continue
		}
		parts = append(parts, part{name: e.Name(), id: id})
	}
	if len(parts) == 0 {
		return nil, fmt.Errorf("%w: %s has no dmesg record", ErrNoPstore, dir)
	}
	// ramoops numbers dmesg records in the order they were written; one
	// panic dump writes Part1 (the newest text) first.
	sort.Slice(parts, func(i, j int) bool { return parts[i].id < parts[j].id })
	// Records of earlier dumps that nobody erased (a crash the two-stage
	// path recovered from reads /proc/vmcore and leaves pstore alone) are
	// not this one's: keep the newest dump's parts, written within
	// dumpSpread of its newest record (pstore gives each record's time as
	// its file's modification time; a dump's parts are written at once).
	var newest time.Time
	for i := range parts {
		if fi, err := os.Stat(filepath.Join(dir, parts[i].name)); err == nil {
			parts[i].at = fi.ModTime()
			if parts[i].at.After(newest) {
				newest = parts[i].at
			}
		}
	}
	ev.Time = newest.UTC()
	var recs []LogRecord
	for i := len(parts) - 1; i >= 0; i-- {
		if parts[i].at.Before(newest.Add(-dumpSpread)) {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, parts[i].name))
		if err != nil {
			ev.Problems = append(ev.Problems, fmt.Sprintf("pstore %s: %v", parts[i].name, err))
			continue
		}
		recs = append(recs, ParseDmesgRecord(string(b))...)
	}
	ev.fromLog(recs, opts.TailLines)
	if ev.Reason == "" {
		ev.Problems = append(ev.Problems, "pstore: no panic line in the stored log")
	}
	return ev, nil
}

// dumpSpread bounds how far apart in time the parts of one pstore dump are.
const dumpSpread = 2 * time.Second

// ParseDmesgRecord parses the text of a pstore dmesg record ("Panic#1
// Part1" header, then one "<level>[seconds.micros] text" line per log
// line; continuation lines without a time stamp join the previous record).
func ParseDmesgRecord(s string) []LogRecord {
	var recs []LogRecord
	for _, line := range strings.Split(s, "\n") {
		m := dmesgLine.FindStringSubmatch(line)
		if m == nil {
			if n := len(recs); n > 0 && line != "" {
				recs[n-1].Text += "\n" + line
			}
			continue
		}
		sec, _ := strconv.ParseUint(m[1], 10, 64)
		usec, _ := strconv.ParseUint(m[2], 10, 64)
		recs = append(recs, LogRecord{TsNsec: sec*1e9 + usec*1e3, Text: m[3]})
	}
	return recs
}

// ErasePstore removes the dmesg records from Root/sys/fs/pstore (unlinking
// a pstore file erases the record from its backend), so that the next
// crash's dump is not mixed with this one's.
func ErasePstore(root string) error {
	if root == "" {
		root = "/"
	}
	dir := filepath.Join(root, PstoreDir)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("erasing pstore: %w", err)
	}
	var errs []error
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), "dmesg-") {
			if err := os.Remove(filepath.Join(dir, e.Name())); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
