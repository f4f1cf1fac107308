package cli

import (
	"context"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// TestRebootThroughSystemd: under systemd (run/systemd/system exists),
// reboot goes through systemctl kexec with the image loaded, and never
// calls reboot(2) itself; --force and a system without systemd jump
// directly; status says which path a reboot takes.
func TestRebootThroughSystemd(t *testing.T) {
	systemd := map[string]string{"sys/kernel/kexec_loaded": "1\n", "run/systemd/system/.unit": ""}
	for _, tc := range []struct {
		name      string
		files     map[string]string
		args      []string
		code      int
		stdout    string
		systemctl []string
		reboots   []string
		path      string
	}{
		{
			name: "systemd, image loaded", files: systemd,
			stdout: "rebooting through kexec with systemctl kexec at ", systemctl: []string{"kexec"}, path: "systemd",
		},
		{
			name: "systemd, --force", files: systemd, args: []string{"--force"},
			stdout: "rebooting through kexec at ", reboots: []string{"sync", fastreboot.RebootKexec.String()}, path: "systemd",
		},
		{
			name: "systemd, nothing loaded, firmware fallback", files: map[string]string{"run/systemd/system/.unit": ""},
			args: []string{"--fallback", "firmware"}, stdout: "rebooting through firmware with systemctl reboot", systemctl: []string{"reboot"}, path: "systemd",
		},
		{
			name: "systemd, nothing loaded", files: map[string]string{"run/systemd/system/.unit": ""}, code: ExitFailed, path: "systemd",
		},
		{
			name: "systemd, dry run", files: systemd, args: []string{"--dry-run"},
			stdout: "dry run: would reboot through kexec with systemctl kexec", path: "systemd",
		},
		{
			name: "no systemd", files: map[string]string{"sys/kernel/kexec_loaded": "1\n"},
			stdout: "rebooting through kexec at ", reboots: []string{"sync", fastreboot.RebootKexec.String()}, path: "direct",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(tc.files)
			var calls []string
			h.cfg.systemctl = func(_ context.Context, args ...string) error {
				calls = append(calls, strings.Join(args, " "))
				return nil
			}
			r := h.run(append([]string{"--no-daemon", "reboot"}, tc.args...)...)
			if r.code != tc.code || !strings.Contains(r.stdout, tc.stdout) {
				t.Errorf("exit %d, stdout %q; want %d and %q in it", r.code, r.stdout, tc.code, tc.stdout)
			}
			if diff := cmp.Diff(tc.systemctl, calls); diff != "" {
				t.Errorf("systemctl calls (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.reboots, h.rebooter.Calls()); diff != "" {
				t.Errorf("rebooter calls (-want +got):\n%s", diff)
			}
			var st StatusV1
			decode(t, h.run("--no-daemon", "status", "--json"), &st)
			if st.RebootPath != tc.path {
				t.Errorf("status reboot_path %q, want %q", st.RebootPath, tc.path)
			}
			if out := h.run("--no-daemon", "status").stdout; !strings.Contains(out, "reboot path: "+tc.path) {
				t.Errorf("status does not say reboot path: %s:\n%s", tc.path, out)
			}
		})
	}
}
