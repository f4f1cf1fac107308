package agent_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
)

// withCmdline writes root/proc/cmdline.
func withCmdline(t *testing.T, root, cmdline string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Join(root, "proc"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(root, "proc/cmdline"), []byte(cmdline+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestStageInheritsCrashkernel: an update staged from a manifest without
// crashkernel= (as `manifest create` writes it) keeps the running
// system's; a manifest's own crashkernel= is kept as it is.
func TestStageInheritsCrashkernel(t *testing.T) {
	for _, tc := range []struct {
		name, running, manifest, want string
	}{
		{"inherited", "BOOT_IMAGE=/vmlinuz crashkernel=384M ro", "console=ttyS0 quiet", "console=ttyS0 quiet crashkernel=384M"},
		{"the manifest's own", "crashkernel=384M", "console=ttyS0 crashkernel=512M", "console=ttyS0 crashkernel=512M"},
		{"nothing to inherit", "ro", "console=ttyS0 quiet", "console=ttyS0 quiet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im, _ := testimage.Update()
			im.Cmdline = tc.manifest
			_, p := im.WriteTemp(t)
			root := t.TempDir()
			withCmdline(t, root, tc.running)
			a, l := newAgent(t, agent.Options{Root: root})
			rep, err := a.Stage(context.Background(), agent.StageRequest{Manifest: p})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, got := l.last(); got != tc.want || rep.Cmdline != tc.want {
				t.Errorf("staged command line %q (report %q), want %q", got, rep.Cmdline, tc.want)
			}
		})
	}
}
