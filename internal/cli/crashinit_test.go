package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// fakeInit records what the crash stage asked of the kernel, in order.
type fakeInit struct {
	root       string
	calls      []string
	recoverErr error
	kexecErr   error
	gotOpts    crashpath.Config
}

func (f *fakeInit) system() initSystem {
	return initSystem{
		mount: func(source, target, fstype string) error {
			rel, _ := filepath.Rel(f.root, target)
			f.calls = append(f.calls, "mount "+fstype+" "+rel)
			return nil
		},
		recover: func(_ context.Context, o crashpath.Config, _ crashpath.RecoverOptions) (*crashpath.RecoverReport, error) {
			f.calls = append(f.calls, "recover")
			f.gotOpts = o
			rep := &crashpath.RecoverReport{Mode: crashhandler.ModeTwoStage, EvidenceFrom: "vmcore",
				Evidence: &crashhandler.Evidence{Reason: "Kernel panic - not syncing: sysrq triggered crash", CPU: 1},
				Staged: &fastreboot.StageReport{InitrdBytes: 1234, Load: fastreboot.LoadSegments,
					Segments: &fastreboot.SegmentsReport{Compressed: true}}}
			return rep, f.recoverErr
		},
		kexec: func(context.Context) error {
			f.calls = append(f.calls, "kexec")
			if f.kexecErr == nil {
				return errors.New("kexec returned")
			}
			return f.kexecErr
		},
		firmware: func() error {
			f.calls = append(f.calls, "firmware")
			return errors.New("fake reboot returned")
		},
		sleep: func(d time.Duration) { f.calls = append(f.calls, "sleep "+d.String()) },
	}
}

func initRoot(t *testing.T, cmdline string) string {
	t.Helper()
	root := t.TempDir()
	for name, data := range map[string]string{
		"proc/cmdline": cmdline + "\n",
		"proc/uptime":  "2.71 5.00\n",
		"proc/meminfo": "MemTotal:         215000 kB\nMemFree:          170000 kB\nMemAvailable:     160000 kB\n",
	} {
		p := filepath.Join(root, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// TestCrashInit drives the PID-1 crash stage with a fake kernel: what it
// mounts, whether it recovers, kexecs or reboots through the firmware
// after the panic=N delay, and what it prints.
func TestCrashInit(t *testing.T) {
	mounts := []string{"mount proc proc", "mount sysfs sys", "mount devtmpfs dev"}
	for _, tt := range []struct {
		name       string
		cmdline    string
		recoverErr error
		wantCalls  []string
		wantOut    []string
	}{{
		name:      "two-stage recovers and kexecs; a failed kexec reboots through the firmware",
		cmdline:   "console=ttyS0 fastreboot.crash=two-stage panic=3 nr_cpus=4",
		wantCalls: append(mounts, "recover", "kexec", "sleep 3s", "firmware"),
		wantOut: []string{
			"fastreboot: crash stage mode=two-stage uptime=2.71 memtotal_kb=215000 memfree_kb=170000 memavailable_kb=160000",
			"fastreboot: crash stage recovered: evidence from \"vmcore\"",
			"production initrd 1234 bytes staged with kexec_load of the compressed kernel, took",
			"min_memfree_kb=170000 memfree_kb=170000",
			"sysrq triggered crash",
			"fastreboot: rebooting through kexec at ",
			"fastreboot: crash stage failed: kexec into production: kexec returned; rebooting through the firmware in 3s",
		},
	}, {
		name:       "a failed recover says why and reboots through the firmware",
		cmdline:    "fastreboot.crash=two-stage panic=5",
		recoverErr: errors.New("crash recover: staging production: no space"),
		wantCalls:  append(mounts, "recover", "sleep 5s", "firmware"),
		wantOut:    []string{"fastreboot: crash stage failed: crash recover: staging production: no space; rebooting through the firmware in 5s"},
	}, {
		name:      "not a crash kernel",
		cmdline:   "console=ttyS0",
		wantCalls: append(mounts, "sleep 10s", "firmware"),
		wantOut:   []string{"no fastreboot.crash= on its command line"},
	}, {
		name:      "a direct crash kernel runs production's init, not this",
		cmdline:   "fastreboot.crash=direct panic=-1",
		wantCalls: append(mounts, "sleep 0s", "firmware"),
		wantOut:   []string{"mode direct: fastreboot runs as init only in a two-stage crash kernel"},
	}} {
		t.Run(tt.name, func(t *testing.T) {
			root := initRoot(t, tt.cmdline)
			f := &fakeInit{root: root, recoverErr: tt.recoverErr}
			var out bytes.Buffer
			if code := crashInit(context.Background(), &out, root, f.system()); code != ExitFailed {
				t.Errorf("crashInit returned %d, want %d (it returns only when every reboot failed)", code, ExitFailed)
			}
			if diff := cmp.Diff(tt.wantCalls, f.calls); diff != "" {
				t.Errorf("calls (-want +got):\n%s", diff)
			}
			for _, w := range tt.wantOut {
				if !strings.Contains(out.String(), w) {
					t.Errorf("output lacks %q:\n%s", w, out.String())
				}
			}
			if f.gotOpts.Root != "" && (f.gotOpts.Root != root || f.gotOpts.StateDir != fastreboot.DefaultStateDir) {
				t.Errorf("recover options root %q state dir %q", f.gotOpts.Root, f.gotOpts.StateDir)
			}
		})
	}
}

func TestCrashInitDelay(t *testing.T) {
	for _, tt := range []struct {
		cmdline string
		want    time.Duration
	}{
		{"", DefaultCrashInitDelay},
		{"panic=7", 7 * time.Second},
		{"panic=0", DefaultCrashInitDelay},
		{"panic=-1", 0},
		{"panic=x", DefaultCrashInitDelay},
		{"panic=3 quiet panic=9", 9 * time.Second},
		{"panic=3 -- panic=9", 3 * time.Second}, // after "--": init's, not the kernel's
		{"oops=panic", DefaultCrashInitDelay},
	} {
		if got := crashInitDelay(tt.cmdline); got != tt.want {
			t.Errorf("crashInitDelay(%q) = %v, want %v", tt.cmdline, got, tt.want)
		}
	}
}

// TestCrashArmInitrdFlag: --initrd reaches the agent (minimal builds the
// crash init piece of Root/proc/self/exe, and crash estimate says which
// initrd it sized), and bad values are usage errors with nothing loaded.
func TestCrashArmInitrdFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		text string
	}{
		{"unknown initrd", []string{"crash", "arm", "--initrd", "tiny", "MANIFEST"}, `"tiny"`},
		{"minimal in direct mode", []string{"crash", "arm", "--mode", "direct", "--initrd", "minimal", "MANIFEST"}, "only for --mode two-stage"},
		{"estimate: unknown initrd", []string{"crash", "estimate", "--initrd", "tiny", "MANIFEST"}, `"tiny"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(crashFiles("402653184"))
			v1, _ := testimage.Update()
			_, p := v1.WriteTemp(t)
			for i, a := range tc.args {
				if a == "MANIFEST" {
					tc.args[i] = p
				}
			}
			if r := h.run(tc.args...); r.code != ExitUsage || !strings.Contains(r.stderr, tc.text) || h.loader.Calls() != 0 {
				t.Errorf("exit %d stderr %q, %d loads; want a usage error naming %s and nothing loaded", r.code, r.stderr, h.loader.Calls(), tc.text)
			}
		})
	}

	h := newHarness(t)
	files := crashFiles("402653184")
	files["proc/self/exe"] = strings.Repeat("fastreboot binary ", 100)
	h.writeRoot(files)
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)
	var est crashpath.EstimateReport
	decode(t, h.run("crash", "estimate", "--mode", "two-stage", "--initrd", "minimal", p, "--json"), &est)
	if est.Initrd != crashpath.InitrdMinimal || !est.Sizing.Minimal {
		t.Errorf("estimate --initrd minimal: initrd %q, sizing %+v", est.Initrd, est.Sizing)
	}
	r := h.run("crash", "arm", "--mode", "two-stage", "--initrd", "minimal", p)
	if r.code != ExitOK || !strings.Contains(r.stdout, "crash initrd: minimal") || h.loader.Calls() != 1 {
		t.Errorf("crash arm --initrd minimal: exit %d stdout %q stderr %q, %d loads", r.code, r.stdout, r.stderr, h.loader.Calls())
	}
}

// TestCrashInitrdDefaultFlag: without --initrd, two-stage mode (named or
// the default) arms and estimates the minimal crash initramfs, direct mode
// production's.
func TestCrashInitrdDefaultFlag(t *testing.T) {
	for _, tc := range []struct {
		name string
		mode []string
		want crashpath.Initrd
	}{
		{"no mode", nil, crashpath.InitrdMinimal},
		{"two-stage", []string{"--mode", "two-stage"}, crashpath.InitrdMinimal},
		{"direct", []string{"--mode", "direct"}, crashpath.InitrdImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(crashFiles("402653184"))
			v1, _ := testimage.Update()
			_, p := v1.WriteTemp(t)
			var est crashpath.EstimateReport
			decode(t, h.run(append(append([]string{"crash", "estimate"}, tc.mode...), p, "--json")...), &est)
			var rep crashpath.ArmReport
			decode(t, h.run(append(append([]string{"crash", "arm"}, tc.mode...), p, "--json")...), &rep)
			if est.Initrd != tc.want || rep.Initrd != tc.want || !rep.Armed {
				t.Errorf("crash estimate/arm %v: initrd %q/%q (armed %v), want %q", tc.mode, est.Initrd, rep.Initrd, rep.Armed, tc.want)
			}
		})
	}
}
