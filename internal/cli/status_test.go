package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func TestStatus(t *testing.T) {
	im1, _ := testimage.Update()
	m1 := im1.Manifest()
	start := time.Date(2025, 11, 25, 15, 0, 0, 0, time.UTC)
	state := &fastreboot.State{
		Generation: 2, Reason: fastreboot.ReasonUpdate,
		Timeline: fastreboot.Timeline{StageStart: start, StageEnd: start.Add(80 * time.Millisecond)},
		Resumed:  start.Add(3 * time.Second), Manifest: m1, Carried: 4,
		Rehydrated: modcache.RehydrateReport{Modules: 4, Bytes: testimage.TotalSize(m1)}, RehydrateTime: 2 * time.Millisecond,
	}

	t.Run("resumed generation", func(t *testing.T) {
		h := newHarness(t)
		if err := fastreboot.SaveState(h.stateDir, state); err != nil {
			t.Fatal(err)
		}
		var got statusReport
		before := time.Now()
		decode(t, h.run("status", "--json", "--check"), &got)
		// proc/uptime says the kernel started 125.5 s ago.
		if ks := got.Timeline.KernelStart; ks.Before(before.Add(-126*time.Second)) || ks.After(time.Now().Add(-125*time.Second)) {
			t.Errorf("kernel_start %v, want about 125.5 s before %v", ks, before)
		}
		got.Timeline.KernelStart = time.Time{}
		want := statusReport{
			Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: "v1",
			Timeline: timeline{Timeline: state.Timeline, Resumed: state.Resumed},
			State:    state,
			Preflight: fastreboot.Preflight(fastreboot.PreflightOptions{
				Root: h.root, Probe: h.cfg.machine.Probe,
			}),
		}
		// Fields other parts of fastreboot add (crash path) are theirs to test.
		got = statusReport{
			Generation: got.Generation, Reason: got.Reason, Manifest: got.Manifest, Timeline: got.Timeline,
			State: got.State, Preflight: got.Preflight, Agent: got.Agent, Problems: got.Problems,
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("status --json (-want +got):\n%s", diff)
		}
		if !got.Preflight.OK() || len(got.Preflight.Checks) == 0 {
			t.Errorf("preflight on the good fake root: %+v", got.Preflight)
		}
		// The JSON field names are the interface for programs.
		r := h.run("status", "--json")
		var fields map[string]json.RawMessage
		if err := json.Unmarshal([]byte(r.stdout), &fields); err != nil {
			t.Fatal(err)
		}
		for _, f := range []string{"generation", "reason", "manifest", "timeline", "state", "preflight"} {
			if _, ok := fields[f]; !ok {
				t.Errorf("status --json has no %q field: %s", f, r.stdout)
			}
		}
		var tl map[string]any
		json.Unmarshal(fields["timeline"], &tl)
		for _, f := range []string{"stage_start", "stage_end", "kernel_start", "resumed"} {
			if _, ok := tl[f]; !ok {
				t.Errorf("timeline has no %q: %s", f, fields["timeline"])
			}
		}

		r = h.run("status")
		for _, w := range []string{
			"generation 2, reason update, image v1\n",
			"staged by the previous generation: 2025-11-25T15:00:00Z .. 2025-11-25T15:00:00.08Z (80ms)",
			"handoff carried 4 modules; rehydrated 4 (",
			"kexec: image loaded no, crash image loaded no, lockdown none",
			"cache: no daemon running",
		} {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("status output has no %q:\n%s", w, r.stdout)
			}
		}
		if strings.Contains(r.stdout, "FAIL") || strings.Contains(r.stdout, "problem") {
			t.Errorf("status on a good root reports problems:\n%s", r.stdout)
		}
	})

	t.Run("cold boot", func(t *testing.T) {
		h := newHarness(t)
		var got statusReport
		decode(t, h.run("status", "--json"), &got)
		if got.Generation != 1 || got.Reason != fastreboot.ReasonCold || got.State != nil || got.Agent != nil || len(got.Problems) != 0 {
			t.Errorf("status --json of a cold boot: %+v", got)
		}
	})

	for _, tc := range []struct {
		name  string
		state *fastreboot.State
		raw   string // state.json content instead of state
		files map[string]string
		want  string
	}{
		{
			name:  "rehydration incomplete",
			state: &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, Carried: 4, RehydrateError: "modcache: abc: digest mismatch"},
			want:  "rehydration: modcache: abc: digest mismatch",
		},
		{
			name:  "kexec disabled",
			files: map[string]string{"proc/sys/kernel/kexec_load_disabled": "1\n"},
			want:  "preflight " + fastreboot.CheckKexecLoadOff,
		},
		{
			name:  "no CAP_SYS_BOOT",
			files: map[string]string{"proc/self/status": "Name:\tx\nCapEff:\t000001ffffbfffff\n"},
			want:  "preflight " + fastreboot.CheckCapSysBoot,
		},
		{
			name: "unreadable state",
			raw:  "{",
			want: "state.json: unexpected end of JSON input",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(tc.files)
			if tc.state != nil {
				if err := fastreboot.SaveState(h.stateDir, tc.state); err != nil {
					t.Fatal(err)
				}
			}
			if tc.raw != "" {
				if err := os.WriteFile(filepath.Join(h.stateDir, fastreboot.StateFile), []byte(tc.raw), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			r := h.run("status", "--check")
			if r.code != ExitProblem || !strings.Contains(r.stderr, tc.want) || !strings.Contains(r.stdout, "problem: ") {
				t.Errorf("status --check: exit %d, want %d with %q in stderr", r.code, ExitProblem, tc.want)
			}
			// Under --json the report that names the problem is the one
			// JSON document on stdout: no error object follows it.
			r = h.run("status", "--check", "--json")
			var checked statusReport
			decodeStdout(t, r, &checked)
			if r.code != ExitProblem || len(checked.Problems) == 0 {
				t.Errorf("status --check --json: exit %d, problems %q, want %d and the problem", r.code, checked.Problems, ExitProblem)
			}
			// Without --check a problem is reported, not an exit code.
			var got statusReport
			decode(t, h.run("status", "--json"), &got)
			if len(got.Problems) == 0 || !strings.Contains(strings.Join(got.Problems, "\n"), tc.want) {
				t.Errorf("problems %q, want one containing %q", got.Problems, tc.want)
			}
		})
	}
}

func TestReboot(t *testing.T) {
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	loaded := map[string]string{"sys/kernel/kexec_loaded": "1\n"}
	for _, tc := range []struct {
		name     string
		files    map[string]string
		args     []string
		code     int
		stdout   string
		stderr   string
		reboots  []string
		loads    int
		wantPlan *fastreboot.RebootPlan
	}{
		{
			name: "dry run, image loaded", files: loaded, args: []string{"--dry-run"},
			stdout: "dry run: would sync and reboot through kexec\n",
		},
		{
			name: "dry run, nothing loaded", args: []string{"--dry-run"}, code: ExitFailed,
			stderr: "no kexec image loaded",
		},
		{
			name: "dry run, firmware fallback", args: []string{"--dry-run", "--fallback", "firmware", "--json"},
			wantPlan: &fastreboot.RebootPlan{Mode: "firmware", DryRun: true},
		},
		{
			name: "dry run of a manifest", args: []string{"--dry-run", "--json", p1},
			wantPlan: &fastreboot.RebootPlan{Mode: "kexec", DryRun: true, Staged: &fastreboot.StageReport{Manifest: "v1", DryRun: true}, StopCPUs: "kernel"},
		},
		{
			name: "image loaded", files: loaded, stdout: "rebooting through kexec at ",
			reboots: []string{"sync", fastreboot.RebootKexec.String()},
		},
		{
			name: "stage and reboot", files: loaded, args: []string{p1}, loads: 1,
			stdout: "rebooting through kexec at ", reboots: []string{"sync", fastreboot.RebootKexec.String()},
		},
		{
			name: "nothing loaded, firmware fallback", args: []string{"--fallback", "firmware"},
			stdout: "rebooting through the firmware: no kexec image loaded", reboots: []string{"sync", fastreboot.RebootRestart.String()},
		},
		{
			name: "nothing loaded", code: ExitFailed, stderr: "reboot refused",
		},
		{
			name: "no CAP_SYS_BOOT", files: map[string]string{"sys/kernel/kexec_loaded": "1\n", "proc/self/status": "CapEff:\t0000000000000000\n"},
			code: ExitFailed, stderr: "CAP_SYS_BOOT is not effective",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(tc.files)
			r := h.run(append([]string{"--no-daemon", "reboot"}, tc.args...)...)
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			if !strings.Contains(r.stdout, tc.stdout) || !strings.Contains(r.stderr, tc.stderr) {
				t.Errorf("stdout %q, stderr %q; want %q and %q in them", r.stdout, r.stderr, tc.stdout, tc.stderr)
			}
			if diff := cmp.Diff(tc.reboots, h.rebooter.Calls()); diff != "" {
				t.Errorf("rebooter calls (-want +got):\n%s", diff)
			}
			if h.loader.Calls() != tc.loads {
				t.Errorf("loader called %d times, want %d", h.loader.Calls(), tc.loads)
			}
			if tc.wantPlan != nil {
				var plan fastreboot.RebootPlan
				decode(t, r, &plan)
				if plan.Staged != nil {
					// Only the identity of the staged image matters here.
					plan.Staged = &fastreboot.StageReport{Manifest: plan.Staged.Manifest, DryRun: plan.Staged.DryRun}
				}
				plan.Why = ""
				if diff := cmp.Diff(*tc.wantPlan, plan); diff != "" {
					t.Errorf("reboot --json plan (-want +got):\n%s", diff)
				}
			}
		})
	}
}
