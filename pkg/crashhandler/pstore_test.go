package crashhandler

import (
	"errors"
	"path/filepath"
	"testing"
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

func FuzzParseDmesgRecord(f *testing.F) {
	f.Add("Panic#1 Part1\n<0>[   16.100000] Kernel panic - not syncing: x\ncontinued\n")
	f.Fuzz(func(t *testing.T, s string) {
		for _, r := range ParseDmesgRecord(s) {
			_ = r.Lines()
		}
	})
}
