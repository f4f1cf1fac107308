package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

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
