package crashhandler

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestCollectPstoreEvidence(t *testing.T) {
	root := t.TempDir()
	if _, err := CollectPstoreEvidence(EvidenceOptions{Root: root}); !errors.Is(err, ErrNoPstore) {
		t.Fatalf("no pstore: %v, want ErrNoPstore", err)
	}
	dir := filepath.Join(root, PstoreDir)
	// Part2 holds the older text, Part1 the newest (written first, id 0).
	writeFile(t, filepath.Join(dir, "dmesg-ramoops-1"), "Panic#1 Part2\n<6>[   10.000000] booting\n<4>[   16.000000] Uhhuh. NMI received for unknown reason 21 on CPU 2.\n")
	writeFile(t, filepath.Join(dir, "dmesg-ramoops-0"), "Panic#1 Part1\n<0>[   16.100000] Kernel panic - not syncing: NMI: Not continuing\n<4>[   16.100100] CPU: 2 PID: 0 Comm: swapper/2 Not tainted 6.1.0 #1\n")
	writeFile(t, filepath.Join(dir, "console-ramoops-0"), "ignored\n")
	ev, err := CollectPstoreEvidence(EvidenceOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Reason != "Kernel panic - not syncing: NMI: Not continuing" || ev.CPU != 2 ||
		ev.Cause != "Uhhuh. NMI received for unknown reason 21 on CPU 2." || ev.LogLines != 4 || ev.Time.IsZero() {
		t.Errorf("evidence = %+v", ev)
	}
}

// TestCollectPstoreEvidenceNewestDump: records of an older dump nobody
// erased (a crash the two-stage path recovered from) are left out; the
// newest dump is the evidence, whatever the record numbers.
func TestCollectPstoreEvidenceNewestDump(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, PstoreDir)
	older := filepath.Join(dir, "dmesg-ramoops-2")
	writeFile(t, older, "Panic#1 Part1\n<6>[   30.000000] sysrq: Trigger a crash\n<0>[   30.000100] Kernel panic - not syncing: sysrq triggered crash\n")
	writeFile(t, filepath.Join(dir, "dmesg-ramoops-0"), "Panic#1 Part1\n<4>[   12.000000] Uhhuh. NMI received for unknown reason 21 on CPU 1.\n<0>[   12.000100] Kernel panic - not syncing: NMI: Not continuing\n")
	then := time.Now().Add(-time.Minute)
	if err := os.Chtimes(older, then, then); err != nil {
		t.Fatal(err)
	}
	ev, err := CollectPstoreEvidence(EvidenceOptions{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if ev.Reason != "Kernel panic - not syncing: NMI: Not continuing" || ev.LogLines != 2 || ev.Time.Before(then.Add(30*time.Second)) {
		t.Errorf("evidence = %+v, want the newest dump (the NMI) alone", ev)
	}
}

func FuzzParseDmesgRecord(f *testing.F) {
	f.Add("Panic#1 Part1\n<0>[   16.100000] Kernel panic - not syncing: x\ncontinued\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range ParseDmesgRecord(s) {
			_ = r.Lines()
		}
	})
}
