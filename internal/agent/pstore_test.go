package agent_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/faketree"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// qemuIomem is /proc/iomem of a 2 GiB QEMU guest with crashkernel=384M.
// qemuIomem and ramoopsWords are faketree's.
const qemuIomem = faketree.QEMUIomem

var ramoopsWords = faketree.RamoopsWords

func writeRootFile(t *testing.T, root, rel, content string) { faketree.Write(t, root, rel, content) }

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
