package cli

import (
	"runtime"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

func TestStageLoadMethod(t *testing.T) {
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)

	t.Run("unknown method", func(t *testing.T) {
		h := newHarness(t)
		r := h.run("--no-daemon", "stage", "--load=kexec", p1)
		if r.code != ExitUsage || !strings.Contains(r.stderr, "--load") {
			t.Errorf("exit %d, stderr %q; want a usage error naming --load", r.code, r.stderr)
		}
	})
	t.Run("segments under lockdown", func(t *testing.T) {
		h := newHarness(t)
		h.writeRoot(map[string]string{"sys/kernel/security/lockdown": "none [integrity] confidentiality\n"})
		r := h.run("--no-daemon", "stage", "--load=segments", p1)
		if r.code != ExitFailed || !strings.Contains(r.stderr, "--load=file") || !strings.Contains(r.stderr, "kexec_load") {
			t.Errorf("exit %d, stderr %q; want a failure pointing at --load=file", r.code, r.stderr)
		}
		if h.loader.Calls() != 0 {
			t.Error("kexec_file_load was called: the segments method must not fall back")
		}
	})
	t.Run("segments dry run", func(t *testing.T) {
		if runtime.GOOS != "linux" {
			t.Skip("the segments are planned with u-root's Linux-only kexec package")
		}
		h := newHarness(t)
		h.writeRoot(map[string]string{
			"proc/iomem":                  "00001000-0009fbff : System RAM\n00100000-7ffdffff : System RAM\n",
			"sys/kernel/boot_params/data": strings.Repeat("\x00", 4096),
			"sys/firmware/memmap/0/start": "0x0\n",
			"sys/firmware/memmap/0/end":   "0x9fbff\n",
			"sys/firmware/memmap/0/type":  "System RAM\n",
			"sys/firmware/memmap/1/start": "0x100000\n",
			"sys/firmware/memmap/1/end":   "0x7ffdffff\n",
			"sys/firmware/memmap/1/type":  "System RAM\n",
		})
		r := h.run("--no-daemon", "stage", "--load=segments", "--dry-run", p1)
		if r.code != ExitOK || !strings.Contains(r.stdout, "load: segments (kexec_load)") {
			t.Fatalf("exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
		}
		var rep fastreboot.StageReport
		r = h.run("--no-daemon", "stage", "--load=segments", "--dry-run", "--json", p1)
		decode(t, r, &rep)
		if rep.Load != fastreboot.LoadSegments || rep.Segments == nil || rep.Segments.Entry == 0 || h.loader.Calls() != 0 {
			t.Errorf("report: load %q, segments %+v, kexec_file_load calls %d", rep.Load, rep.Segments, h.loader.Calls())
		}
	})
}
