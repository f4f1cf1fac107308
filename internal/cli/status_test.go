package cli

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
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
			"4 modules carried in the initrd; adopted 4 (",
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

// handoffBlob is a carried module's content for WriteHandoffPiece.
type handoffBlob struct {
	*bytes.Reader
	digest string
}

func (b handoffBlob) Digest() string { return b.digest }

// writeHandoff puts into root what the kernel unpacks from the handoff piece
// of an image carrying m's modules (read from dir); a module named tamper is
// carried with one byte changed.
func writeHandoff(t *testing.T, root string, m *bootimage.Manifest, dir, tamper string) {
	t.Helper()
	var blobs []fastreboot.Blob
	for _, mod := range m.Modules {
		b, err := os.ReadFile(filepath.Join(dir, mod.Source))
		if err != nil {
			t.Fatal(err)
		}
		if mod.Name == tamper {
			b[len(b)/2] ^= 0x40
		}
		blobs = append(blobs, handoffBlob{bytes.NewReader(b), mod.SHA256})
	}
	h := &fastreboot.Handoff{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: *m}
	var piece bytes.Buffer
	if _, err := fastreboot.WriteHandoffPiece(&piece, h, blobs); err != nil {
		t.Fatal(err)
	}
	if err := cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(piece.Bytes())), func(r cpio.Record) error {
		return cpio.CreateFileInRoot(r, root, false)
	}); err != nil {
		t.Fatal(err)
	}
}

// TestStatusAdoption: the daemon adopts the carried modules unverified and
// status shows the adoption and the verification (JSON names are a
// contract); a module that fails its verification is a problem.
func TestStatusAdoption(t *testing.T) {
	for _, tamper := range []string{"", "kmods.cpio.xz"} {
		t.Run("tamper="+tamper, func(t *testing.T) {
			im1, _ := testimage.Update()
			m1, p1 := im1.WriteTemp(t)
			h := newHarness(t)
			writeHandoff(t, h.root, m1, filepath.Dir(p1), tamper)
			h.startDaemon()
			var ls agent.CacheListing
			decode(t, h.run("cache", "ls", "--json"), &ls) // verifies what is pending

			r := h.run("status", "--json", "--check")
			var got statusReport
			if err := json.Unmarshal([]byte(r.stdout), &got); err != nil {
				t.Fatalf("status --json: %v", err)
			}
			if got.State == nil || got.State.Rehydrated.Unverified != 4 || got.State.Carried != 4 {
				t.Fatalf("status state %+v, want 4 carried modules adopted unverified", got.State)
			}
			want := modcache.AdoptionStats{Modules: 4, Bytes: testimage.TotalSize(m1), Verified: 4}
			if tamper != "" {
				want.Verified, want.Failed = 3, 1
			}
			if got.Agent == nil {
				t.Fatal("status shows no daemon")
			}
			ad := got.Agent.Cache.Adoption
			if diff := cmp.Diff(want, ad, cmpopts.IgnoreFields(modcache.AdoptionStats{}, "VerifyTime", "Failures")); diff != "" {
				t.Errorf("status agent.cache.adoption (-want +got):\n%s", diff)
			}
			if tamper == "" && (r.code != ExitOK || len(got.Problems) != 0) {
				t.Errorf("status --check exit %d, problems %q", r.code, got.Problems)
			}
			if tamper != "" && (r.code != ExitProblem || len(got.Problems) != 1 || !strings.Contains(got.Problems[0], tamper)) {
				t.Errorf("status --check exit %d, problems %q; want exit %d and a problem naming %s", r.code, got.Problems, ExitProblem, tamper)
			}

			// The JSON names are the interface for programs.
			var raw struct {
				State struct {
					Rehydrated map[string]any `json:"rehydrated"`
				} `json:"state"`
				Agent struct {
					Cache struct {
						Adoption map[string]any `json:"adoption"`
					} `json:"cache"`
				} `json:"agent"`
			}
			if err := json.Unmarshal([]byte(r.stdout), &raw); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{"modules", "bytes", "pending", "verified", "failed", "verify_ns"} {
				if _, ok := raw.Agent.Cache.Adoption[f]; !ok {
					t.Errorf("agent.cache.adoption has no %q: %v", f, raw.Agent.Cache.Adoption)
				}
			}
			if _, ok := raw.State.Rehydrated["unverified"]; !ok {
				t.Errorf("state.rehydrated has no \"unverified\": %v", raw.State.Rehydrated)
			}

			text := h.run("status").stdout
			for _, w := range []string{
				"4 modules carried in the initrd; adopted 4 (",
				"(4 adopted unverified)",
				fmt.Sprintf("carried modules adopted unverified: 4 (%s): %d verified, 0 pending, %d failed (", human(want.Bytes), want.Verified, want.Failed),
			} {
				if !strings.Contains(text, w) {
					t.Errorf("status output has no %q:\n%s", w, text)
				}
			}
		})
	}
}
