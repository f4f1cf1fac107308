package crashhandler

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The fuzzers of what a crashed kernel leaves behind and of the files this
// package reads back. FuzzParseNotes, FuzzParseDmesgRecord,
// FuzzParseCrashkernel, FuzzPlaceRamoops and FuzzCmdlineRoundTrip live
// beside their tests.

// fuzzRecs turns fuzz input into printk records: texts separated by NUL,
// and per record two bytes of meta (the descriptor state and the caller).
func fuzzRecs(texts string, meta []byte) []fakeRec {
	parts := strings.Split(texts, "\x00")
	if len(parts) > 1<<fakeCountBits {
		parts = parts[:1<<fakeCountBits]
	}
	var recs []fakeRec
	for i, text := range parts {
		if len(text) > 200 {
			text = text[:200]
		}
		r := fakeRec{state: descFinalized, seq: uint64(i), ts: uint64(i) * 1_000_000, text: text}
		if len(meta) >= 2*(i+1) {
			r.state = uint64(meta[2*i] & 3)
			r.caller = uint32(meta[2*i+1])
			r.idSkew = uint64(meta[2*i] >> 6)
		}
		recs = append(recs, r)
	}
	return recs
}

// FuzzReadEvidence fuzzes what the crashed kernel wrote (the log records'
// texts, states and callers, where the ring starts, extra VMCOREINFO lines
// and raw bytes over the printk ring) inside a vmcore whose ELF structure
// is valid. Mutating the whole file, as this fuzzer once did, broke the ELF
// header or the note list in nearly every input, so no input got further
// than OpenVmcore and the coverage stalled at the seeds.
func FuzzReadEvidence(f *testing.F) {
	f.Add("Linux version 6.1.0-56-amd64\x00sysrq: Trigger a crash\x00Kernel panic - not syncing: sysrq triggered crash\x00CPU: 1 PID: 245 Comm: sh Not tainted 6.1.0-56-amd64 #1", []byte{2, 0, 2, 245, 2, 245, 1, 245}, uint64(9), uint64(2<<fakeSizeBits+296), "", []byte(nil), uint16(0))
	f.Add("Kernel panic - not syncing: Oops: Fatal exception\x00BUG: kernel NULL pointer dereference, address: 0000000000000000", []byte{2, 3, 2, 3}, uint64(0), uint64(0), "CRASHTIME=1700000123\nOSRELEASE=6.1.0-28-amd64", []byte{0xff, 0xff}, uint16(0x2008))
	f.Fuzz(func(t *testing.T, texts string, meta []byte, firstID, firstLpos uint64, info string, ring []byte, ringAt uint16) {
		core := fakeVmcoreCore(fuzzRecs(texts, meta), firstID, firstLpos, prstatusNote(245, 0xffffffff81123456))
		if info != "" {
			core.notes[len(core.notes)-1].desc = []byte(vmcoreinfo61(strings.Split(info, "\n")...))
		}
		direct := core.loads[1].data
		if len(ring) > 0 {
			copy(direct[int(ringAt)%len(direct):], ring)
		}
		b := core.bytes()
		ev, err := ReadEvidence(bytes.NewReader(b), EvidenceOptions{})
		if err != nil {
			return
		}
		if ev == nil {
			t.Fatal("nil evidence without error")
		}
		if n := strings.Count(texts, "\x00") + strings.Count(texts, "\n") + 2; len(ev.Log) > n+len(ring) {
			t.Errorf("%d log lines from %d records", len(ev.Log), n)
		}
	})
}

// FuzzReadPrintkLog walks a printk ring whose descriptors, infos and text
// are arbitrary bytes: the layout comes from a valid 6.1 VMCOREINFO and
// the ring's head and tail from the input.
func FuzzReadPrintkLog(f *testing.F) {
	f.Add([]byte(nil), uint16(0), uint64(9), uint64(2<<fakeSizeBits+296))
	f.Add(bytes.Repeat([]byte{0x80, 0, 0, 0, 0, 0, 0, 0x40}, 64), uint16(0), uint64(0), uint64(0))
	f.Add([]byte("\x09\x00\x00\x00\x00\x00\x00\x80hello"), uint16(0x2000+296), uint64(9), uint64(2<<fakeSizeBits+296))
	f.Fuzz(func(t *testing.T, raw []byte, at uint16, firstID, firstLpos uint64) {
		core := fakeVmcoreCore(sysrqCrash, firstID, firstLpos)
		direct := core.loads[1].data
		copy(direct[int(at)%len(direct):], raw)
		v, err := OpenVmcore(bytes.NewReader(core.bytes()))
		if err != nil {
			t.Fatalf("OpenVmcore of a valid core: %v", err)
		}
		vi, err := v.VMCOREINFO()
		if err != nil {
			t.Fatalf("VMCOREINFO of a valid core: %v", err)
		}
		recs, err := ReadPrintkLog(v, vi)
		if err != nil {
			return
		}
		if len(recs) > 1<<fakeCountBits {
			t.Errorf("%d records from a ring of %d descriptors", len(recs), 1<<fakeCountBits)
		}
		for _, r := range recs {
			if len(r.Text) > 1<<fakeSizeBits {
				t.Errorf("record of %d bytes from a %d-byte text ring", len(r.Text), 1<<fakeSizeBits)
			}
		}
	})
}

// FuzzReadVmcoreSegments parses arbitrary bytes as an ELF64 core: the
// segments the crash kernel checks against the recorded memory map.
func FuzzReadVmcoreSegments(f *testing.F) {
	f.Add(sysrqCrashVmcore())
	f.Add(fakeCore{machine: emX86_64}.bytes())
	f.Add(fakeCore{machine: emX86_64, loads: []fakeLoad{{vaddr: 0xffff888000000000, paddr: 0, data: []byte("abcd"), memsz: 1 << 40}}}.bytes())
	f.Fuzz(func(t *testing.T, b []byte) {
		segs, err := ReadVmcoreSegments(bytes.NewReader(b))
		if err != nil {
			return
		}
		for _, s := range segs {
			if s.Type != ptLoad {
				t.Errorf("Loads returned a segment of type %d", s.Type)
			}
		}
		_ = CheckMemoryMap(qemuMemoryMap(), segs)
	})
}

// FuzzReadState reads an arbitrary crash state file (crash.json): it is
// accepted only with the version this build writes, and what is accepted
// survives a write and a read back.
func FuzzReadState(f *testing.F) {
	f.Add([]byte(`{"version":1,"mode":"two-stage","cmdline":"console=ttyS0 fastreboot.crash=two-stage","previous_sysctls":{"kernel.panic_on_oops":"0"},"memory_map":[{"start":0,"end":655359,"type":"System RAM"}]}`))
	f.Add([]byte(`{"version":2}`))
	f.Add([]byte(`{"version":1,"sizing":{"total":-1}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := fuzzDir(t)
		if err := os.WriteFile(filepath.Join(dir, stateFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		s, err := ReadState(dir)
		if err != nil {
			return
		}
		if s == nil || s.Version != stateVersion {
			t.Fatalf("ReadState = %+v without error, want the version %d", s, stateVersion)
		}
		// Written back as writeState writes it, without its fsyncs (a
		// fuzzer that syncs runs a few inputs a minute on a busy disk).
		js, err := json.MarshalIndent(s, "", "  ")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, stateFile), append(js, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := ReadState(dir)
		if err != nil {
			t.Fatalf("reading back a state that was read once: %v", err)
		}
		b1, _ := json.Marshal(s)
		b2, _ := json.Marshal(again)
		if !bytes.Equal(b1, b2) {
			t.Errorf("state changed across a write:\n%s\n%s", b1, b2)
		}
	})
}

// FuzzReadSavedEvidence reads an arbitrary evidence.json.
func FuzzReadSavedEvidence(f *testing.F) {
	f.Add([]byte(`{"reason":"Kernel panic - not syncing: sysrq triggered crash","cpu":1,"log":["sysrq: Trigger a crash"],"generation":2,"mode":"direct"}`))
	f.Add([]byte(`{"log":null,"cpus":[{"pid":-1}]}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		dir := fuzzDir(t)
		if err := os.WriteFile(filepath.Join(dir, EvidenceFile), b, 0o600); err != nil {
			t.Fatal(err)
		}
		ev, err := ReadSavedEvidence(dir)
		if err != nil {
			return
		}
		// Written back as Save writes it, without its fsyncs.
		js, err := json.MarshalIndent(ev, "", "  ")
		if err != nil {
			t.Fatalf("marshalling evidence that was read: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, EvidenceFile), append(js, '\n'), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := ReadSavedEvidence(dir); err != nil {
			t.Fatalf("reading back saved evidence: %v", err)
		}
	})
}

// fuzzDir is a new directory, removed when the input is done. t.TempDir
// is not used: with it the fuzzers ran a handful of inputs a minute.
func fuzzDir(t *testing.T) string {
	dir, err := os.MkdirTemp("", "fuzz")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}
