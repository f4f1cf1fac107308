package crashpath

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// evidenceRoot writes a fake root: a /proc/vmcore (unless vmcore is "") and
// a pstore dmesg record (unless dmesg is "").
func evidenceRoot(t *testing.T, vmcore, dmesg string) string {
	t.Helper()
	root := t.TempDir()
	write := func(rel, s string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if vmcore != "" {
		write("proc/vmcore", vmcore)
	}
	if dmesg != "" {
		write(filepath.Join(crashhandler.PstoreDir, "dmesg-ramoops-0"), dmesg)
	}
	return root
}

const (
	pstorePanic   = "Panic#1 Part1\n<4>[   16.000000] sysrq: Trigger a crash\n<0>[   16.100000] Kernel panic - not syncing: sysrq triggered crash\n<4>[   16.100100] CPU: 3 PID: 170 Comm: oncpu Not tainted 6.1.0 #1\n"
	pstoreNoPanic = "Panic#1 Part1\n<6>[   10.000000] booting\n"
)

func TestCollectCrashEvidenceOrder(t *testing.T) {
	for _, tc := range []struct {
		name           string
		vmcore, dmesg  string
		mode           crashhandler.Mode
		wantFrom       string
		wantReason     bool
		wantProblems   []string // substrings, in order
		wantNoProblems bool
	}{
		// Direct mode trusts pstore first: the vmcore is not even read.
		{"direct, pstore has the panic", "not an ELF core", pstorePanic, crashhandler.ModeDirect, "pstore", true, nil, true},
		// Two-stage reads the vmcore first and falls back to pstore.
		{"two-stage, vmcore unreadable", "not an ELF core", pstorePanic, crashhandler.ModeTwoStage, "pstore", true, []string{"vmcore: "}, false},
		// No panic line anywhere: the first evidence read, with every problem.
		{"direct, no panic line", "", pstoreNoPanic, crashhandler.ModeDirect, "pstore", false, []string{"pstore: no panic line", "vmcore: "}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := evidenceRoot(t, tc.vmcore, tc.dmesg)
			ev, from, err := collectEvidence(crashhandler.EvidenceOptions{Root: root}, tc.mode)
			if err != nil {
				t.Fatal(err)
			}
			if from != tc.wantFrom || (ev.Reason != "") != tc.wantReason {
				t.Errorf("from %q reason %q, want from %q, a reason: %v", from, ev.Reason, tc.wantFrom, tc.wantReason)
			}
			if tc.wantNoProblems && len(ev.Problems) != 0 {
				t.Errorf("problems %q, want none", ev.Problems)
			}
			if len(ev.Problems) < len(tc.wantProblems) {
				t.Fatalf("problems %q, want %q", ev.Problems, tc.wantProblems)
			}
			for i, p := range tc.wantProblems {
				if got := ev.Problems[len(ev.Problems)-len(tc.wantProblems)+i]; !strings.HasPrefix(got, p) {
					t.Errorf("problem %d = %q, want it to start with %q", i, got, p)
				}
			}
		})
	}
	// Nothing to read: one error naming both sources.
	_, _, err := collectEvidence(crashhandler.EvidenceOptions{Root: t.TempDir()}, crashhandler.ModeTwoStage)
	if err == nil || !strings.Contains(err.Error(), "vmcore: ") || !strings.Contains(err.Error(), "pstore: ") {
		t.Errorf("no evidence anywhere: %v, want an error naming vmcore and pstore", err)
	}
}
