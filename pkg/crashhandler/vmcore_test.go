package crashhandler

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestOpenVmcoreSegmentsAndNotes(t *testing.T) {
	core := sysrqCrashVmcore()
	v, err := OpenVmcore(bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	if v.Machine != emX86_64 {
		t.Errorf("Machine = %d, want %d", v.Machine, emX86_64)
	}
	loads := v.Loads()
	var got []Segment
	for _, s := range loads {
		got = append(got, Segment{Type: s.Type, Vaddr: s.Vaddr, Paddr: s.Paddr, Memsz: s.Memsz})
	}
	want := []Segment{
		{Type: ptLoad, Vaddr: fakeTextVA, Paddr: fakeTextPA, Memsz: 0x1000},
		{Type: ptLoad, Vaddr: fakeDirectVA, Paddr: fakeDirectPA, Memsz: 0x2000 + 512},
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("PT_LOAD segments (-want +got):\n%s", d)
	}
	segs, err := ReadVmcoreSegments(bytes.NewReader(core))
	if err != nil || len(segs) != 2 {
		t.Errorf("ReadVmcoreSegments = %d segments, %v; want 2", len(segs), err)
	}

	notes, err := v.Notes()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, n := range notes {
		names = append(names, n.Name)
	}
	if d := cmp.Diff([]string{"CORE", "CORE", "VMCOREINFO"}, names); d != "" {
		t.Errorf("note names (-want +got):\n%s", d)
	}
	vi, err := v.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	if vi["OSRELEASE"] != "6.1.0-56-amd64" {
		t.Errorf("OSRELEASE = %q", vi["OSRELEASE"])
	}
	if a, ok := vi.Symbol("prb"); !ok || a != fakePrbSym {
		t.Errorf("SYMBOL(prb) = %#x, %v", a, ok)
	}
	if n, ok := vi.Size("prb_desc"); !ok || n != 24 {
		t.Errorf("SIZE(prb_desc) = %d, %v", n, ok)
	}
	if n, ok := vi.Offset("printk_info.caller_id"); !ok || n != 20 {
		t.Errorf("OFFSET(printk_info.caller_id) = %d, %v", n, ok)
	}
	if _, ok := vi.Number("missing"); ok {
		t.Error("NUMBER(missing) found")
	}
}

func TestReadVirt(t *testing.T) {
	// Two adjacent segments, the first with a file size below its memory
	// size: reads cross the boundary and see zeros past the file size.
	core := fakeCore{machine: emX86_64, loads: []fakeLoad{
		{vaddr: 0x1000, data: []byte("abcd"), memsz: 8},
		{vaddr: 0x1008, data: []byte("efgh")},
	}}.bytes()
	v, err := OpenVmcore(bytes.NewReader(core))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		va      uint64
		n       int
		want    string
		wantErr bool
	}{
		{va: 0x1000, n: 4, want: "abcd"},
		{va: 0x1002, n: 10, want: "cd\x00\x00\x00\x00efgh"},
		{va: 0x100a, n: 2, want: "gh"},
		{va: 0x100a, n: 3, wantErr: true},
		{va: 0x2000, n: 1, wantErr: true},
		{va: 0x1000, n: -1, wantErr: true},
	} {
		got, err := v.ReadVirt(tc.va, tc.n)
		if tc.wantErr {
			if !errors.Is(err, ErrBadVmcore) {
				t.Errorf("ReadVirt(%#x, %d) error = %v, want ErrBadVmcore", tc.va, tc.n, err)
			}
			continue
		}
		if err != nil || string(got) != tc.want {
			t.Errorf("ReadVirt(%#x, %d) = %q, %v; want %q", tc.va, tc.n, got, err, tc.want)
		}
	}
}

func TestOpenVmcoreRejects(t *testing.T) {
	good := sysrqCrashVmcore()
	mutate := func(f func(b []byte) []byte) []byte { return f(append([]byte(nil), good...)) }
	for name, b := range map[string][]byte{
		"empty":        nil,
		"not ELF":      mutate(func(b []byte) []byte { b[0] = 'X'; return b }),
		"ELF32":        mutate(func(b []byte) []byte { b[4] = 1; return b }),
		"bad encoding": mutate(func(b []byte) []byte { b[5] = 7; return b }),
		"not a core":   mutate(func(b []byte) []byte { le.PutUint16(b[16:], 2); return b }),
		"phentsize":    mutate(func(b []byte) []byte { le.PutUint16(b[54:], 32); return b }),
		"truncated":    good[:elfHeaderSize+10],
		"PN_XNUM, no section header": mutate(func(b []byte) []byte {
			le.PutUint16(b[56:], pnXNum)
			le.PutUint64(b[40:], 1<<40)
			return b
		}),
		"phoff outside": mutate(func(b []byte) []byte { le.PutUint64(b[32:], 1<<40); return b }),
	} {
		if _, err := OpenVmcore(bytes.NewReader(b)); !errors.Is(err, ErrBadVmcore) {
			t.Errorf("%s: error = %v, want ErrBadVmcore", name, err)
		}
	}
}

func TestParseNotesOverrun(t *testing.T) {
	var b [12]byte
	le.PutUint32(b[0:], 5)
	le.PutUint32(b[4:], 100)
	le.PutUint32(b[8:], 1)
	if _, err := parseNotes(append(b[:], "CORE\x00\x00\x00\x00"...), le); !errors.Is(err, ErrBadVmcore) {
		t.Errorf("error = %v, want ErrBadVmcore", err)
	}
}

func TestReadPrintkLog(t *testing.T) {
	v, err := OpenVmcore(bytes.NewReader(sysrqCrashVmcore()))
	if err != nil {
		t.Fatal(err)
	}
	vi, err := v.VMCOREINFO()
	if err != nil {
		t.Fatal(err)
	}
	recs, err := ReadPrintkLog(v, vi)
	if err != nil {
		t.Fatal(err)
	}
	var want []LogRecord
	for _, r := range sysrqCrash[1:] { // the reusable one is skipped
		want = append(want, LogRecord{Seq: r.seq, TsNsec: r.ts, CallerID: r.caller, Text: r.text})
	}
	if d := cmp.Diff(want, recs); d != "" {
		t.Errorf("records (-want +got):\n%s", d)
	}
	if got, want := recs[1].Lines(), []string{"[    5.123456] sysrq: Trigger a crash"}; !cmp.Equal(got, want) {
		t.Errorf("Lines() = %q, want %q", got, want)
	}
}

func TestReadPrintkLogSkipsStaleAndDataless(t *testing.T) {
	recs := []fakeRec{
		{state: descFinalized, seq: 7, text: "kept"},
		{state: descFinalized, idSkew: 8, seq: 8, text: "stale descriptor: other ID"},
		{state: 0, seq: 9, text: "reserved: still being written"},
		{state: descFinalized, seq: 10, text: ""},
		{state: descCommitted, seq: 11, text: "last"},
	}
	// IDs near the 62-bit wrap, text near the ring's start.
	v, err := OpenVmcore(bytes.NewReader(fakeVmcore(recs, descIDMask-1, 5<<fakeSizeBits)))
	if err != nil {
		t.Fatal(err)
	}
	vi, _ := v.VMCOREINFO()
	got, err := ReadPrintkLog(v, vi)
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, r := range got {
		texts = append(texts, r.Text)
	}
	if d := cmp.Diff([]string{"kept", "", "last"}, texts); d != "" {
		t.Errorf("texts (-want +got):\n%s", d)
	}
}

func TestBlockData(t *testing.T) {
	ring := make([]byte, 64)
	copy(ring[8:], "wrapped!")
	copy(ring[40:], "01234567")
	for _, tc := range []struct {
		name        string
		begin, next uint64
		want        string
		ok          bool
	}{
		{"regular", 64*3 + 32, 64*3 + 48, "01234567", true},
		{"wrapping", 64*3 + 56, 64*4 + 16, "wrapped!", true},
		{"no data", lposNoData, lposNoData, "", true},
		{"failed", 1, 1, "", false},
		{"too far apart", 64*3 + 8, 64*5 + 8, "", false},
		{"unaligned", 64*3 + 33, 64*3 + 49, "", false},
		{"shorter than ID", 64*3 + 32, 64*3 + 36, "", false},
	} {
		got, ok := blockData(ring, 6, tc.begin, tc.next)
		if ok != tc.ok || string(got) != tc.want {
			t.Errorf("%s: blockData = %q, %v; want %q, %v", tc.name, got, ok, tc.want, tc.ok)
		}
	}
}

func TestReadEvidence(t *testing.T) {
	ev, err := ReadEvidence(bytes.NewReader(sysrqCrashVmcore()), EvidenceOptions{TailLines: 3})
	if err != nil {
		t.Fatal(err)
	}
	want := &Evidence{
		Time:          time.Unix(1700000000, 0).UTC(),
		Reason:        "Kernel panic - not syncing: sysrq triggered crash",
		Cause:         "sysrq: Trigger a crash",
		CPU:           1,
		KernelRelease: "6.1.0-56-amd64",
		// The last 3 lines, from the cause line on.
		Log: []string{
			"[    5.123456] sysrq: Trigger a crash",
			"[    5.123500] Kernel panic - not syncing: sysrq triggered crash",
			"[    5.123600] CPU: 1 PID: 245 Comm: sh Not tainted 6.1.0-56-amd64 #1  Debian 6.1.192-2",
			"[    5.123600] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009)",
		},
		LogLines: 5,
		CPUs:     []CPUState{{Note: 0, PID: 0, IP: 0xffffffff81abcdef}, {Note: 1, PID: 245, IP: 0xffffffff81123456}},
	}
	if d := cmp.Diff(want, ev, cmp.AllowUnexported(Evidence{}), cmpIgnoreFullLog); d != "" {
		t.Errorf("evidence (-want +got):\n%s", d)
	}

	dir := t.TempDir()
	if err := ev.Save(dir); err != nil {
		t.Fatal(err)
	}
	saved, err := ReadSavedEvidence(dir)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(want, saved, cmp.AllowUnexported(Evidence{}), cmpIgnoreFullLog); d != "" {
		t.Errorf("saved evidence (-want +got):\n%s", d)
	}
	log, err := os.ReadFile(filepath.Join(dir, LogFile))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(log), "\n"); n != 5 || !strings.HasPrefix(string(log), "[    0.001500] Linux version") {
		t.Errorf("log.txt has %d lines:\n%s", n, log)
	}
	for _, f := range []string{EvidenceFile, LogFile} {
		fi, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s: mode %v, want 0600 (the kernel log is for root)", f, fi.Mode().Perm())
		}
	}
}

var cmpIgnoreFullLog = cmp.FilterPath(func(p cmp.Path) bool {
	return p.Last().String() == ".fullLog"
}, cmp.Ignore())

func TestPanicCPU(t *testing.T) {
	nmi := []LogRecord{
		{Text: "Uhhuh. NMI received for unknown reason 30 on CPU 2."},
		{CallerID: 0x80000002, Text: "Kernel panic - not syncing: NMI: Not continuing"},
	}
	oops := []LogRecord{
		{Text: "BUG: kernel NULL pointer dereference, address: 0000000000000000"},
		{Text: "CPU: 3 PID: 77 Comm: insmod Tainted: G           O       6.1.0-56-amd64 #1  Debian 6.1.192-2"},
		{CallerID: 77, Text: "Kernel panic - not syncing: Fatal exception"},
	}
	newFormat := []LogRecord{
		{CallerID: 1, Text: "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000100"},
		{CallerID: 1, Text: "CPU: 0 UID: 0 PID: 1 Comm: init Not tainted 6.12.0 #1"},
	}
	for _, tc := range []struct {
		name  string
		recs  []LogRecord
		panic int
		want  int
	}{
		{"NMI caller id", nmi, 1, 2},
		{"oops before panic", oops, 2, 3},
		{"UID field (6.12)", newFormat, 0, 0},
		{"no panic", oops, -1, -1},
		{"task context, no CPU line", []LogRecord{{CallerID: 5, Text: "Kernel panic - not syncing: x"}}, 0, -1},
	} {
		if got := panicCPU(tc.recs, tc.panic); got != tc.want {
			t.Errorf("%s: panicCPU = %d, want %d", tc.name, got, tc.want)
		}
	}
}

func TestPanicCause(t *testing.T) {
	for _, tc := range []struct {
		name string
		recs []LogRecord
		want string
	}{
		{"soft lockup", []LogRecord{
			{Text: "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:245]"},
			{Text: "Modules linked in: virtio_blk"},
			{Text: "Kernel panic - not syncing: softlockup: hung tasks"},
		}, "watchdog: BUG: soft lockup - CPU#0 stuck for 22s! [sh:245]"},
		{"oops", []LogRecord{
			{Text: "BUG: kernel NULL pointer dereference, address: 0000000000000000"},
			{Text: "Oops: 0002 [#1] PREEMPT SMP NOPTI"},
			{Text: "RIP: 0010:0xffffffffc0000000"},
			{Text: "Kernel panic - not syncing: Fatal exception"},
		}, "BUG: kernel NULL pointer dereference, address: 0000000000000000"},
		{"general protection fault", []LogRecord{
			{Text: "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI"},
			{Text: "Kernel panic - not syncing: Fatal exception"},
		}, "general protection fault, probably for non-canonical address 0xdead000000000100: 0000 [#1] PREEMPT SMP NOPTI"},
		{"invalid opcode trap", []LogRecord{
			{Text: "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI"},
			{Text: "RIP: 0010:__do_sys_sync+0x0/0x20"},
			{Text: "Kernel panic - not syncing: Fatal exception"},
		}, "invalid opcode: 0000 [#1] PREEMPT SMP NOPTI"},
		{"oops without BUG line", []LogRecord{
			{Text: "Oops: 0000 [#1] SMP"},
			{Text: "Kernel panic - not syncing: Fatal exception"},
		}, "Oops: 0000 [#1] SMP"},
		{"hung task", []LogRecord{
			{Text: "INFO: task sh:245 blocked for more than 120 seconds."},
			{Text: "Kernel panic - not syncing: hung_task: blocked tasks"},
		}, "INFO: task sh:245 blocked for more than 120 seconds."},
		{"rcu stall", []LogRecord{
			{Text: "rcu: INFO: rcu_preempt self-detected stall on CPU"},
			{Text: "Kernel panic - not syncing: RCU Stall"},
		}, "rcu: INFO: rcu_preempt self-detected stall on CPU"},
		{"none", []LogRecord{{Text: "hello"}, {Text: "Kernel panic - not syncing: VFS: Unable to mount root fs"}}, ""},
		{"old warning is no cause", []LogRecord{
			{TsNsec: 2e9, Text: "WARNING: CPU: 1 PID: 1 at arch/x86/mm/ioremap.c:211 __ioremap_caller+0x345/0x360"},
			{TsNsec: 300e9, Text: "Kernel panic - not syncing: Attempted to kill init! exitcode=0x00000000"},
		}, ""},
	} {
		if got := panicCause(tc.recs, len(tc.recs)-1); got != tc.want {
			t.Errorf("%s: cause = %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestReadEvidenceWithoutPrintk(t *testing.T) {
	core := fakeCore{machine: emX86_64, notes: []fakeNote{{name: "VMCOREINFO", desc: []byte("OSRELEASE=5.4.0\nCRASHTIME=x\n")}}}.bytes()
	ev, err := ReadEvidence(bytes.NewReader(core), EvidenceOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if ev.KernelRelease != "5.4.0" || !ev.Time.IsZero() || ev.CPU != -1 || len(ev.Problems) != 1 || !strings.Contains(ev.Problems[0], "SYMBOL(prb)") {
		t.Errorf("evidence = %+v, want release, no time, CPU -1 and a SYMBOL(prb) problem", ev)
	}
	if _, err := ReadEvidence(bytes.NewReader(fakeCore{machine: emX86_64}.bytes()), EvidenceOptions{}); !errors.Is(err, ErrBadVmcore) {
		t.Errorf("no VMCOREINFO: error = %v, want ErrBadVmcore", err)
	}
}

func TestCollectEvidence(t *testing.T) {
	root := t.TempDir()
	if _, err := CollectEvidence(EvidenceOptions{Root: root}); !errors.Is(err, ErrNoVmcore) {
		t.Errorf("no vmcore: error = %v, want ErrNoVmcore", err)
	}
	writeFile(t, filepath.Join(root, "proc/vmcore"), string(sysrqCrashVmcore()))
	out := filepath.Join(t.TempDir(), "evidence")
	ev, err := SaveEvidence(out, EvidenceOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Reason != "Kernel panic - not syncing: sysrq triggered crash" {
		t.Errorf("Reason = %q", ev.Reason)
	}
	if _, err := os.Stat(filepath.Join(out, EvidenceFile)); err != nil {
		t.Error(err)
	}
}

func TestCheckMemoryMap(t *testing.T) {
	mm := qemuMemoryMap()
	ok := []Segment{{Type: ptLoad, Paddr: 0x100000, Memsz: 0x1000000}, {Type: ptLoad, Paddr: 0x30000000, Memsz: 0x4fd00000}}
	if err := CheckMemoryMap(mm, ok); err != nil {
		t.Errorf("CheckMemoryMap(covered) = %v", err)
	}
	bad := append(ok, Segment{Type: ptLoad, Paddr: 0x7ffd0000, Memsz: 0x20000})
	if err := CheckMemoryMap(mm, bad); !errors.Is(err, ErrMemoryMapMismatch) || !strings.Contains(err.Error(), "0x7ffd0000") {
		t.Errorf("CheckMemoryMap(beyond RAM) = %v, want ErrMemoryMapMismatch naming 0x7ffd0000", err)
	}
}

func FuzzParseNotes(f *testing.F) {
	f.Add([]byte("\x05\x00\x00\x00\x04\x00\x00\x00\x01\x00\x00\x00CORE\x00\x00\x00\x00abcd"))
	f.Fuzz(func(t *testing.T, b []byte) {
		notes, err := parseNotes(b, le)
		if err != nil {
			return
		}
		for _, n := range notes {
			if len(n.Desc) > len(b) {
				t.Fatalf("note desc of %d bytes from %d bytes of input", len(n.Desc), len(b))
			}
		}
	})
}

func TestTailStart(t *testing.T) {
	log := []string{"a", "cause x", "b", "c", "d", "e", "f"}
	for _, tc := range []struct {
		name  string
		tail  int
		cause string
		want  int
	}{
		{"cause in the tail", 6, "cause x", 1},
		{"cause just before the tail", 4, "cause x", 1},
		{"cause too far back", 2, "cause x", 5},
		{"no cause", 3, "", 4},
		{"cause not in the log", 3, "other", 4},
		{"tail longer than the log", 10, "cause x", 0},
	} {
		if got := tailStart(log, tc.tail, tc.cause); got != tc.want {
			t.Errorf("%s: tailStart(tail %d, %q) = %d, want %d", tc.name, tc.tail, tc.cause, got, tc.want)
		}
	}
}
