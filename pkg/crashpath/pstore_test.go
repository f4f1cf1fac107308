package crashpath_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
)

// TestCrashArmEvidence: the crash image gets the pstore region, and Arm
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
			_, mp := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			writeRootFile(t, root, "sys/module/pstore/parameters/backend", tc.backend+"\n")
			writeRootFile(t, root, "sys/module/kernel/parameters/crash_kexec_post_notifiers", tc.notifiers+"\n")
			if tc.iomem {
				writeRootFile(t, root, "proc/iomem", qemuIomem)
			}
			l := &flagLoader{}
			p := newPath(t, root, l)
			rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect})
			if err != nil {
				t.Fatalf("Arm: %v", err)
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

// TestLoadPstore: LoadPstore (the daemon calls it at start) loads ramoops
// for the region on the command line.
func TestLoadPstore(t *testing.T) {
	root := crashRoot(t, 384<<20)
	p := newPath(t, root, &flagLoader{})
	ld, err := p.LoadPstore()
	if err != nil || ld.Skipped == "" {
		t.Errorf("no ramoops words: LoadPstore = %+v, %v; want skipped", ld, err)
	}
	writeRootFile(t, root, "proc/cmdline", "crashkernel=384M "+strings.Join(ramoopsWords, " ")+"\n")
	writeRootFile(t, root, "sys/module/pstore/parameters/backend", "(null)\n")
	if _, err := p.LoadPstore(); err == nil || !strings.Contains(err.Error(), "loading ramoops") {
		t.Errorf("no modules: LoadPstore error %v, want one saying it could not load ramoops", err)
	}
}

// TestCrashHandoffCarriesNoOldEvidence: the crash image's handoff names the
// next crash; the last crash's evidence does not ride along to be taken
// for it.
func TestCrashHandoffCarriesNoOldEvidence(t *testing.T) {
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	state := t.TempDir()
	old := &crashhandler.Evidence{Reason: "Kernel panic - not syncing: old", Generation: 1}
	if err := old.Save(filepath.Join(state, crashpath.EvidenceDir)); err != nil {
		t.Fatal(err)
	}
	l := &flagLoader{}
	p := newPathConfig(t, crashpath.Config{Root: root, StateDir: state}, l)
	rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("Arm: %v", err)
	}
	if h := handoffOf(t, l.initrd, rep.Image); h.Crash != nil && h.Crash.Evidence != nil {
		t.Errorf("crash handoff carries %+v, want no evidence", h.Crash.Evidence)
	}
}
