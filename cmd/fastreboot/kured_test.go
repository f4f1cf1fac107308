package main

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// kuredScript is kured's --reboot-command shipped in the package
// (dist/nfpm.yaml installs it as kuredInstalled).
const (
	kuredScript    = "dist/kured/fastreboot-kured-reboot"
	kuredInstalled = "/usr/lib/fastreboot/kured-reboot"
)

// fakeFastreboot is a fastreboot that appends its arguments to
// $FAKE_FASTREBOOT_LOG and exits with $FAKE_STAGE_STATUS for stage and
// $FAKE_REBOOT_STATUS for reboot.
const fakeFastreboot = `#!/bin/sh
echo "$*" >>"$FAKE_FASTREBOOT_LOG"
case "$1" in
stage) exit "${FAKE_STAGE_STATUS:-0}" ;;
reboot) exit "${FAKE_REBOOT_STATUS:-0}" ;;
esac
exit 3
`

// kuredPrefix is how kured runs its --reboot-command (kured's
// pkg/reboot/command.go, NewCommandRebooter): the words after
// `/usr/bin/nsenter -m/proc/1/ns/mnt --`, from a privileged pod with
// hostPID, so in the host's mount namespace. It returns nil with the reason
// when this process cannot do the same (not root, no nsenter, PID 1's
// namespace not enterable, or dir not visible there).
func kuredPrefix(dir string) ([]string, string) {
	if runtime.GOOS != "linux" {
		return nil, "kured runs on Linux"
	}
	if os.Geteuid() != 0 {
		return nil, "entering PID 1's mount namespace needs root"
	}
	nsenter, err := exec.LookPath("nsenter")
	if err != nil {
		return nil, "no nsenter on PATH"
	}
	prefix := []string{nsenter, "-m/proc/1/ns/mnt", "--"}
	probe := exec.Command(prefix[0], append(prefix[1:], "/bin/sh", "-c", `test -d "$1"`, "sh", dir)...)
	if out, err := probe.CombinedOutput(); err != nil {
		return nil, "cannot run in PID 1's mount namespace with the test's files (" + err.Error() + ": " + strings.TrimSpace(string(out)) + ")"
	}
	return prefix, ""
}

// TestKuredRebootCommand runs the kured reboot command with a fake
// fastreboot on PATH, directly and the way kured runs it (in PID 1's mount
// namespace, when this process may): it stages the default entry, then
// reboots; it does not reboot when staging fails; and it refuses clearly
// when there is no fastreboot.
func TestKuredRebootCommand(t *testing.T) {
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	script := filepath.Join(repoRoot(t), filepath.FromSlash(kuredScript))
	fi, err := os.Stat(script)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&0o111 == 0 {
		t.Errorf("%s is not executable (%v)", kuredScript, fi.Mode())
	}

	cases := []struct {
		name            string
		noFastreboot    bool
		stage, reboot   string
		wantCalls       []string
		wantStatus      int
		wantStderrParts []string
	}{
		{name: "success", stage: "0", reboot: "0",
			wantCalls: []string{"stage --default", "reboot"}, wantStatus: 0},
		{name: "stage fails", stage: "1", reboot: "0",
			wantCalls: []string{"stage --default"}, wantStatus: 1,
			wantStderrParts: []string{"stage --default failed", "no reboot"}},
		{name: "reboot fails", stage: "0", reboot: "1",
			wantCalls: []string{"stage --default", "reboot"}, wantStatus: 2,
			wantStderrParts: []string{"reboot failed", "stays loaded"}},
		{name: "no fastreboot", noFastreboot: true,
			wantStatus:      127,
			wantStderrParts: []string{"fastreboot is not on PATH", "nothing staged, no reboot"}},
	}
	for _, how := range []string{"direct", "kured"} {
		t.Run(how, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					dir := t.TempDir()
					bin := filepath.Join(dir, "bin")
					if err := os.Mkdir(bin, 0o755); err != nil {
						t.Fatal(err)
					}
					if !c.noFastreboot {
						if err := os.WriteFile(filepath.Join(bin, "fastreboot"), []byte(fakeFastreboot), 0o755); err != nil {
							t.Fatal(err)
						}
					}
					argv := []string{sh, script}
					if how == "kured" {
						prefix, why := kuredPrefix(dir)
						if prefix == nil {
							t.Skip(why)
						}
						argv = append(prefix, script)
					}
					log := filepath.Join(dir, "calls")
					cmd := exec.Command(argv[0], argv[1:]...)
					cmd.Env = []string{
						"PATH=" + bin,
						"FAKE_FASTREBOOT_LOG=" + log,
						"FAKE_STAGE_STATUS=" + c.stage,
						"FAKE_REBOOT_STATUS=" + c.reboot,
					}
					var stderr strings.Builder
					cmd.Stderr = &stderr
					err := cmd.Run()
					status := 0
					var ee *exec.ExitError
					if errors.As(err, &ee) {
						status = ee.ExitCode()
					} else if err != nil {
						t.Fatal(err)
					}
					if status != c.wantStatus {
						t.Errorf("exit status %d, want %d; stderr:\n%s", status, c.wantStatus, stderr.String())
					}
					var calls []string
					if b, err := os.ReadFile(log); err == nil {
						calls = strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
					} else if !os.IsNotExist(err) {
						t.Fatal(err)
					}
					if diff := cmp.Diff(c.wantCalls, calls); diff != "" {
						t.Errorf("fastreboot calls (-want +got):\n%s", diff)
					}
					for _, p := range c.wantStderrParts {
						if !strings.Contains(stderr.String(), p) {
							t.Errorf("stderr does not say %q:\n%s", p, stderr.String())
						}
					}
				})
			}
		})
	}
}

// TestKuredRebootCommandShipped checks that the package installs the kured
// reboot command where docs/distro.md says, executable, and that the doc
// gives kured what it needs (the command method and this path).
func TestKuredRebootCommandShipped(t *testing.T) {
	root := repoRoot(t)
	nfpm, err := os.ReadFile(filepath.Join(root, "dist", "nfpm.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	entry := "  - src: " + kuredScript + "\n    dst: " + kuredInstalled + "\n    file_info: {mode: 0755}\n"
	if !strings.Contains(string(nfpm), entry) {
		t.Errorf("dist/nfpm.yaml does not install %s as %s, mode 0755 (want the lines\n%s)", kuredScript, kuredInstalled, entry)
	}
	doc, err := os.ReadFile(filepath.Join(root, "docs", "distro.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, section, ok := strings.Cut(string(doc), "## Fleets: kured")
	if !ok {
		t.Fatal(`docs/distro.md has no "## Fleets: kured" section`)
	}
	section, _, _ = strings.Cut(section, "\n## ")
	for _, want := range []string{"--reboot-method=command", "--reboot-command=" + kuredInstalled} {
		if !strings.Contains(section, want) {
			t.Errorf("docs/distro.md, Fleets: kured, does not say %q", want)
		}
	}
}
