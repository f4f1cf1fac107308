package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// qemuIomem is /proc/iomem of a 2 GiB QEMU guest with crashkernel=384M.
const qemuIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000f0000-000fffff : Reserved
00100000-7ffdefff : System RAM
  01000000-01e00816 : Kernel code
  5e000000-75ffffff : Crash kernel
7ffdf000-7fffffff : Reserved
`

// ramoopsWords is the region a root with qemuIomem gets.
var ramoopsWords = []string{
	"memmap=1M$0x100000", "ramoops.mem_address=0x100000", "ramoops.mem_size=0x100000",
	"ramoops.record_size=0x40000", "crash_kexec_post_notifiers",
}

func writeRootFile(t *testing.T, root, rel, content string) {
	t.Helper()
	p := filepath.Join(root, rel)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func hasWords(cmdline string, words []string) bool {
	fields := strings.Fields(cmdline)
	for _, w := range words {
		found := false
		for _, f := range fields {
			found = found || f == w
		}
		if !found {
			return false
		}
	}
	return true
}

// TestCrashArmEvidence: the crash image gets the pstore region, and arm
// warns when a crash of this generation would leave no evidence.
func TestCrashArmEvidence(t *testing.T) {
	const noBackend = "evidence of a crash before the next fast reboot: none in direct mode (no pstore backend in this generation); two-stage reads /proc/vmcore"
	for _, tc := range []struct {
		name, backend, notifiers string
		iomem                    bool
		want                     []string // warnings, each a prefix
	}{
		{"no backend", "(null)", "N", true, []string{noBackend}},
		{"ramoops registered, post notifiers on", "ramoops", "Y", true, nil},
		{"backend but no post notifiers", "efi_pstore", "N", true,
			[]string{"evidence of a crash before the next fast reboot: none in direct mode (pstore backend efi_pstore registered, but crash_kexec_post_notifiers is off"}},
		{"no iomem: no region", "(null)", "N", false, []string{noBackend, "the crash image gets no pstore region: pstore region: open "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im, _ := testimage.Update()
			_, p := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			writeRootFile(t, root, "sys/module/pstore/parameters/backend", tc.backend+"\n")
			writeRootFile(t, root, "sys/module/kernel/parameters/crash_kexec_post_notifiers", tc.notifiers+"\n")
			if tc.iomem {
				writeRootFile(t, root, "proc/iomem", qemuIomem)
			}
			l := &flagLoader{}
			a := newCrashAgent(t, root, l)
			rep, err := a.CrashArm(context.Background(), agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect})
			if err != nil {
				t.Fatalf("CrashArm: %v", err)
			}
			if len(rep.Warnings) != len(tc.want) {
				t.Fatalf("warnings %q, want %d starting with %q", rep.Warnings, len(tc.want), tc.want)
			}
			for i, w := range tc.want {
				if !strings.HasPrefix(rep.Warnings[i], w) {
					t.Errorf("warning %d = %q, want it to start with %q", i, rep.Warnings[i], w)
				}
			}
			wantRegion := tc.iomem && tc.backend == "(null)"
			if got := hasWords(l.cmdline, ramoopsWords); got != wantRegion {
				t.Errorf("crash cmdline %q: has the ramoops region %v, want %v", l.cmdline, got, wantRegion)
			}
			if tc.iomem && !hasWords(l.cmdline, []string{"crash_kexec_post_notifiers"}) {
				t.Errorf("crash cmdline %q lacks crash_kexec_post_notifiers", l.cmdline)
			}
		})
	}
}

// TestStageEvidenceWords: every image staged gets the region once, the one
// the running kernel names if it names one.
func TestStageEvidenceWords(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	for _, tc := range []struct {
		name    string
		running string
		want    []string
	}{
		{"placed", "console=ttyS0 crashkernel=384M", ramoopsWords},
		{"inherited", "console=ttyS0 crashkernel=384M memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000",
			[]string{"memmap=1M$0x7f000000", "ramoops.mem_address=0x7f000000", "ramoops.mem_size=0x100000", "crash_kexec_post_notifiers"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, p := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			writeRootFile(t, root, "proc/cmdline", tc.running+"\n")
			writeRootFile(t, root, "proc/iomem", qemuIomem)
			a, l := newAgent(t, agent.Options{Root: root})
			if _, err := a.Stage(ctx, agent.StageRequest{Manifest: p}); err != nil {
				t.Fatalf("Stage: %v", err)
			}
			_, _, cmdline := l.last()
			// The running crashkernel= is inherited first (InheritCrashkernel).
			if want := m.Cmdline + " crashkernel=384M " + strings.Join(tc.want, " "); cmdline != want {
				t.Errorf("staged cmdline %q, want %q", cmdline, want)
			}
			// A manifest whose line has the words already gets nothing more.
			m.Cmdline = cmdline
			if _, err := a.Stage(ctx, agent.StageRequest{Inline: absolute(t, m, p)}); err != nil {
				t.Fatalf("Stage again: %v", err)
			}
			if _, _, again := l.last(); again != cmdline {
				t.Errorf("staged again: cmdline %q, want %q unchanged", again, cmdline)
			}
		})
	}
}

// absolute returns m with its module sources made absolute (an inline
// manifest's must be), relative to the manifest file p.
func absolute(t *testing.T, m *bootimage.Manifest, p string) *bootimage.Manifest {
	t.Helper()
	out := *m
	out.Modules = append([]bootimage.Module(nil), m.Modules...)
	for i := range out.Modules {
		out.Modules[i].Source = filepath.Join(filepath.Dir(p), out.Modules[i].Source)
	}
	return &out
}

// crashHandoff writes the handoff a crash image carries into root: reason
// crash, generation gen, the crash mode, and evidence if given.
func crashHandoff(t *testing.T, root string, gen int, reason fastreboot.Reason, mode crashhandler.Mode, ev *crashhandler.Evidence) {
	t.Helper()
	im, _ := testimage.Update()
	h := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: gen, Reason: reason, Manifest: *im.Manifest(),
		Extra: map[string]json.RawMessage{}}
	h.Extra[crashpath.ExtraCrashMode], _ = json.Marshal(mode)
	if ev != nil {
		h.Extra[crashpath.ExtraCrashEvidence], _ = json.Marshal(ev)
	}
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

// TestLoadPstore: the daemon's start loads ramoops for the region on the
// command line.
func TestLoadPstore(t *testing.T) {
	root := crashRoot(t, 384<<20)
	a, _ := newAgent(t, agent.Options{Root: root})
	ld, err := a.LoadPstore()
	if err != nil || ld.Skipped == "" {
		t.Errorf("no ramoops words: LoadPstore = %+v, %v; want skipped", ld, err)
	}
	writeRootFile(t, root, "proc/cmdline", "crashkernel=384M "+strings.Join(ramoopsWords, " ")+"\n")
	writeRootFile(t, root, "sys/module/pstore/parameters/backend", "(null)\n")
	if _, err := a.LoadPstore(); err == nil || !strings.Contains(err.Error(), "loading ramoops") {
		t.Errorf("no modules: LoadPstore error %v, want one saying it could not load ramoops", err)
	}
}

// TestCrashHandoffCarriesNoOldEvidence: the crash image's handoff names the
// next crash; the last crash's evidence does not ride along to be taken
// for it.
func TestCrashHandoffCarriesNoOldEvidence(t *testing.T) {
	im, _ := testimage.Update()
	_, p := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	state := t.TempDir()
	old := &crashhandler.Evidence{Reason: "Kernel panic - not syncing: old", Generation: 1}
	if err := old.Save(filepath.Join(state, crashpath.EvidenceDir)); err != nil {
		t.Fatal(err)
	}
	l := &flagLoader{}
	a, err := agent.New(context.Background(), agent.Options{Root: root, StateDir: state, Machine: fastreboot.Options{
		Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	rep, err := a.CrashArm(context.Background(), agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("CrashArm: %v", err)
	}
	if h := handoffOf(t, l.initrd, rep.Image); h.Extra[crashpath.ExtraCrashEvidence] != nil {
		t.Errorf("crash handoff carries %s, want no evidence", h.Extra[crashpath.ExtraCrashEvidence])
	}
}
