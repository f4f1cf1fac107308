package crashpath_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/faketree"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// crashRoot is faketree.CrashRoot.
func crashRoot(t *testing.T, reserve int64) string { return faketree.CrashRoot(t, reserve) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// TestLastCrash: the evidence saved in the state directory wins over the
// one the handoff carried.
func TestLastCrash(t *testing.T) {
	root, state := t.TempDir(), t.TempDir()
	if crashpath.LastCrash(root, state) != nil {
		t.Fatal("LastCrash without any evidence is not nil")
	}
	ev := &crashhandler.Evidence{Reason: "Kernel panic - not syncing: sysrq triggered crash", CPU: 2, Log: []string{"a"}}
	if err := ev.Save(filepath.Join(state, crashpath.EvidenceDir)); err != nil {
		t.Fatal(err)
	}
	got := crashpath.LastCrash(root, state)
	if got == nil || got.Reason != ev.Reason || got.CPU != 2 {
		t.Errorf("LastCrash = %+v, want %+v", got, ev)
	}
}

// TestRecoverNotCrashKernel: the crash stage refuses to run in a kernel
// the crash path did not start.
func TestRecoverNotCrashKernel(t *testing.T) {
	root := crashRoot(t, 384<<20)
	_, err := crashpath.Recover(context.Background(), crashpath.Config{Root: root, StateDir: t.TempDir()}, crashpath.RecoverOptions{})
	if !errors.Is(err, crashpath.ErrNotCrashKernel) {
		t.Errorf("Recover = %v, want ErrNotCrashKernel", err)
	}
}

// ramoopsWords is faketree.RamoopsWords.
var ramoopsWords = faketree.RamoopsWords

func writeRootFile(t *testing.T, root, rel, content string) { faketree.Write(t, root, rel, content) }

// crashHandoff writes the handoff a crash image carries into root: reason
// crash, generation gen, the crash mode, and evidence if given.
func crashHandoff(t *testing.T, root string, gen int, reason fastreboot.Reason, mode crashhandler.Mode, ev *crashhandler.Evidence) {
	t.Helper()
	im, _ := testimage.Update()
	h := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: gen, Reason: reason, Manifest: *im.Manifest(),
		Crash: &fastreboot.HandoffCrash{Mode: mode, Evidence: ev}}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	writeRootFile(t, root, fastreboot.HandoffFile, string(b))
}

// TestLastCrashOfCrashGeneration: a generation the crash path started
// always shows a crash, and never an older crash's evidence as its own.
func TestLastCrashOfCrashGeneration(t *testing.T) {
	old := &crashhandler.Evidence{Reason: "Kernel panic - not syncing: old", CPU: 1, Generation: 1}
	this := &crashhandler.Evidence{Reason: "Kernel panic - not syncing: this", CPU: 0, Generation: 2}
	for _, tc := range []struct {
		name    string
		reason  fastreboot.Reason
		carried *crashhandler.Evidence
		want    string // Reason of the result; "-" nil; "" a record without evidence
	}{
		{"crash, nothing carried", fastreboot.ReasonCrash, nil, ""},
		{"crash, an older crash carried", fastreboot.ReasonCrash, old, ""},
		{"crash, this crash carried", fastreboot.ReasonCrash, this, this.Reason},
		{"update after a crash", fastreboot.ReasonUpdate, old, old.Reason},
		{"update, no crash", fastreboot.ReasonUpdate, nil, "-"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeRootFile(t, root, "proc/uptime", "10.00 20.00\n")
			crashHandoff(t, root, 3, tc.reason, crashhandler.ModeDirect, tc.carried)
			got := crashpath.LastCrash(root, t.TempDir())
			switch {
			case tc.want == "-":
				if got != nil {
					t.Errorf("LastCrash = %+v, want nil", got)
				}
			case got == nil:
				t.Fatalf("LastCrash = nil, want a crash")
			case got.Reason != tc.want:
				t.Errorf("LastCrash reason %q, want %q", got.Reason, tc.want)
			case tc.want == "":
				if got.Generation != 2 || got.Mode != crashhandler.ModeDirect || len(got.Problems) == 0 ||
					time.Since(got.Time) < 9*time.Second || time.Since(got.Time) > time.Minute {
					t.Errorf("LastCrash = %+v, want generation 2, mode direct, a problem, the time the kernel booted (10 s ago)", got)
				}
			}
		})
	}
}

// directCrashRoot is the root of a direct-mode crash kernel: the crash
// handoff (generation 3: generation 2 crashed), no vmcore.
func directCrashRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := crashRoot(t, 384<<20)
	writeRootFile(t, root, "proc/cmdline", cmdline+"\n")
	writeRootFile(t, root, "proc/uptime", "5.00 5.00\n")
	crashHandoff(t, root, 3, fastreboot.ReasonCrash, crashhandler.ModeDirect, nil)
	return root
}

// TestRecoverRecordsEveryCrash: with no evidence anywhere, crash recover
// still saves a record, and LastCrash returns it.
func TestRecoverRecordsEveryCrash(t *testing.T) {
	root := directCrashRoot(t, "console=ttyS0 crashkernel=384M fastreboot.crash=direct")
	state := t.TempDir()
	rep, err := crashpath.Recover(context.Background(), crashpath.Config{Root: root, StateDir: state}, crashpath.RecoverOptions{})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if rep.EvidenceError == "" || rep.EvidenceFrom != "" {
		t.Errorf("report: evidence error %q from %q, want an error and no source", rep.EvidenceError, rep.EvidenceFrom)
	}
	ev := rep.Evidence
	if ev == nil || ev.Generation != 2 || ev.Mode != crashhandler.ModeDirect || ev.Source != "" || ev.Reason != "" ||
		len(ev.Problems) == 0 || !strings.Contains(ev.Problems[0], "no evidence of the crashed kernel could be read") {
		t.Fatalf("evidence %+v, want generation 2, direct, no reason, a problem saying why", ev)
	}
	last := crashpath.LastCrash(root, state)
	if diff := cmp.Diff(ev.Problems, last.Problems); last == nil || diff != "" || last.Generation != 2 {
		t.Errorf("LastCrash = %+v, want the saved record (problems -saved +last:\n%s)", last, diff)
	}
}

// fakeModules stands in for finit_module: loading ramoops registers the
// backend.
type fakeModules struct {
	root  string
	err   error
	calls []string
}

func (m *fakeModules) LoadModule(f *os.File, params string) error {
	m.calls = append(m.calls, strings.TrimSpace(filepath.Base(f.Name())+" "+params))
	if m.err != nil {
		return m.err
	}
	if strings.HasPrefix(filepath.Base(f.Name()), "ramoops.ko") {
		return os.WriteFile(filepath.Join(m.root, "sys/module/pstore/parameters/backend"), []byte("ramoops\n"), 0o644)
	}
	return nil
}

// TestRecoverPstore: crash recover loads ramoops for the region its command
// line names, mounts pstore, reads the panic there, and erases pstore only
// once the evidence is saved.
func TestRecoverPstore(t *testing.T) {
	const rel = "6.1.0-48-amd64"
	cmdline := "console=ttyS0 crashkernel=384M " + strings.Join(ramoopsWords, " ") + " fastreboot.crash=direct"
	for _, tc := range []struct {
		name       string
		loadErr    error
		stateFile  bool // the state directory is a file: saving fails
		wantFrom   string
		wantErased bool
		warning    string
	}{
		{name: "read, saved, erased", wantFrom: "pstore", wantErased: true},
		{name: "not saved, not erased", stateFile: true, wantFrom: "pstore", warning: "saving crash evidence"},
		{name: "ramoops does not load", loadErr: errors.New("finit_module: EPERM"), warning: "loading ramoops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := directCrashRoot(t, cmdline)
			writeRootFile(t, root, "proc/sys/kernel/osrelease", rel+"\n")
			writeRootFile(t, root, "sys/module/pstore/parameters/backend", "(null)\n")
			writeRootFile(t, root, "proc/self/mounts", "sysfs /sys sysfs rw 0 0\n")
			writeRootFile(t, root, filepath.Join("lib/modules", rel, "modules.dep"), "kernel/fs/pstore/ramoops.ko: kernel/lib/reed_solomon/reed_solomon.ko\nkernel/lib/reed_solomon/reed_solomon.ko:\n")
			writeRootFile(t, root, filepath.Join("lib/modules", rel, "kernel/fs/pstore/ramoops.ko"), "\x7fELF")
			writeRootFile(t, root, filepath.Join("lib/modules", rel, "kernel/lib/reed_solomon/reed_solomon.ko"), "\x7fELF")
			// What ramoops shows once registered and pstore mounted.
			dmesg := filepath.Join(root, crashhandler.PstoreDir, "dmesg-ramoops-0")
			writeRootFile(t, root, filepath.Join(crashhandler.PstoreDir, "dmesg-ramoops-0"),
				"Panic#1 Part1\n<0>[   16.100000] Kernel panic - not syncing: sysrq triggered crash\n")
			state := t.TempDir()
			if tc.stateFile {
				state = filepath.Join(state, "file")
				writeRootFile(t, filepath.Dir(state), "file", "")
			}
			mods := &fakeModules{root: root, err: tc.loadErr}
			var mounted []string
			opts := crashpath.Config{Root: root, StateDir: state, Pstore: crashhandler.PstoreOptions{
				Modules: mods, Mount: func(target string) error { mounted = append(mounted, target); return nil },
			}}
			rep, err := crashpath.Recover(context.Background(), opts, crashpath.RecoverOptions{})
			if err != nil {
				t.Fatalf("Recover: %v", err)
			}
			if rep.EvidenceFrom != tc.wantFrom && tc.loadErr == nil {
				t.Errorf("evidence from %q, want %q", rep.EvidenceFrom, tc.wantFrom)
			}
			if rep.Evidence == nil || rep.Evidence.Generation != 2 {
				t.Errorf("evidence %+v, want a record of generation 2", rep.Evidence)
			}
			if tc.loadErr == nil {
				want := []string{"reed_solomon.ko", "ramoops.ko mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}
				if diff := cmp.Diff(want, mods.calls); diff != "" {
					t.Errorf("modules loaded (-want +got):\n%s", diff)
				}
				if len(mounted) != 1 || mounted[0] != filepath.Join(root, crashhandler.PstoreDir) || rep.PstoreBackend != "ramoops" {
					t.Errorf("mounts %q, backend %q; want pstore mounted once, backend ramoops", mounted, rep.PstoreBackend)
				}
			} else if len(mounted) != 0 {
				t.Errorf("pstore mounted %q without a backend", mounted)
			}
			_, statErr := os.Stat(dmesg)
			if erased := errors.Is(statErr, os.ErrNotExist); erased != tc.wantErased {
				t.Errorf("pstore record erased = %v, want %v", erased, tc.wantErased)
			}
			found := tc.warning == ""
			for _, w := range rep.Warnings {
				found = found || strings.Contains(w, tc.warning)
			}
			if !found || tc.warning == "" && len(rep.Warnings) > 0 {
				t.Errorf("warnings %q, want one containing %q", rep.Warnings, tc.warning)
			}
		})
	}
}

// TestDefaultInitrd: minimal in two-stage mode, production's initrd
// otherwise; ParseInitrd leaves "" to it.
func TestDefaultInitrd(t *testing.T) {
	for mode, want := range map[crashhandler.Mode]crashpath.Initrd{
		crashhandler.ModeTwoStage: crashpath.InitrdMinimal,
		crashhandler.ModeDirect:   crashpath.InitrdImage,
	} {
		if got := crashpath.DefaultInitrd(mode); got != want {
			t.Errorf("DefaultInitrd(%s) = %q, want %q", mode, got, want)
		}
	}
	if c, err := crashpath.ParseInitrd(""); c != "" || err != nil {
		t.Errorf(`ParseInitrd("") = %q, %v; want "", nil (the mode's default)`, c, err)
	}
}
