package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
)

// TestCrashArmNoRearm: the running command line has no crashkernel= (the
// reservation came from elsewhere) and neither has the manifest: crash arm
// refuses, loads nothing and says how to go on; --allow-no-rearm arms and
// warns on stderr (in the JSON object with --json).
func TestCrashArmNoRearm(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	h.writeRoot(map[string]string{"proc/cmdline": goodRoot["proc/cmdline"]})
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)

	r := h.run("crash", "arm", p)
	if r.code != ExitFailed || !strings.Contains(r.stderr, "could not re-arm") || !strings.Contains(r.stderr, "--allow-no-rearm") || !strings.Contains(r.stderr, p) {
		t.Errorf("crash arm: exit %d, stderr %q; want a refusal naming %s and --allow-no-rearm", r.code, r.stderr, p)
	}
	r = h.run("crash", "arm", p, "--json")
	var e ErrorV1
	decodeStdout(t, r, &e)
	if r.code != ExitFailed || !strings.Contains(strings.Join(e.Error.Kinds, " "), "crashhandler.no_rearm") {
		t.Errorf("crash arm --json: exit %d, %+v; want the no_rearm kind", r.code, e)
	}
	if h.loader.Calls() != 0 {
		t.Fatalf("a refused arm loaded %d times", h.loader.Calls())
	}

	r = h.run("crash", "arm", p, "--allow-no-rearm")
	if r.code != ExitOK || !strings.Contains(r.stderr, "warning: the generation booted after a crash has no crashkernel=") || !strings.Contains(r.stdout, "crash path armed") {
		t.Errorf("crash arm --allow-no-rearm: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if n := strings.Count(r.stderr, "warning: the generation booted after a crash has no crashkernel="); n != 1 {
		t.Errorf("crash arm --allow-no-rearm printed the re-arm warning %d times, want once: %q", n, r.stderr)
	}
	var rep crashpath.ArmReport
	r = h.run("crash", "arm", p, "--allow-no-rearm", "--json")
	decode(t, r, &rep)
	rearm := 0
	for _, w := range rep.Warnings {
		if strings.Contains(w, "could not re-arm") {
			rearm++
		}
	}
	if !rep.Armed || rearm != 1 || strings.Contains(r.stderr, "warning:") {
		t.Errorf("crash arm --allow-no-rearm --json: warnings %q, stderr %q; want the warning in the object only", rep.Warnings, r.stderr)
	}

	// status --check finds it too.
	r = h.run("status", "--check")
	if r.code != ExitProblem || !strings.Contains(r.stdout, "problem: armed crash image v1: the generation booted after a crash has no crashkernel=") {
		t.Errorf("status --check: exit %d, stdout %q; want the re-arm problem", r.code, r.stdout)
	}
}

// TestStatusCheckRearm: a crash path armed with the running crashkernel=
// passes; a staged update whose manifest sets a crashkernel= too small for
// the armed image is a problem.
func TestStatusCheckRearm(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	v1, v2 := testimage.Update()
	_, p1 := v1.WriteTemp(t)
	v2.Cmdline = "console=ttyS0 crashkernel=16M"
	_, p2 := v2.WriteTemp(t)
	h.startDaemon()
	if r := h.run("crash", "arm", p1); r.code != ExitOK {
		t.Fatalf("crash arm: %s", r.stderr)
	}
	var st statusReport
	decodeStdout(t, h.run("status", "--json"), &st)
	for _, p := range st.Problems {
		if strings.Contains(p, "re-arm") {
			t.Errorf("a re-arm problem with crashkernel=384M: %s", p)
		}
	}
	if r := h.run("stage", p2); r.code != ExitOK {
		t.Fatalf("stage: %s", r.stderr)
	}
	r := h.run("status", "--check")
	if r.code != ExitProblem || !strings.Contains(r.stderr, "staged image v2: the generation it boots has crashkernel=16M") {
		t.Errorf("status --check: exit %d, stderr %q; want the staged image's re-arm problem", r.code, r.stderr)
	}
}

func TestCrashEstimateCommand(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("33554432"))
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)

	r := h.run("crash", "estimate", p)
	for _, s := range []string{"image:        v1 (built from the cache, not loaded)", "needs:        crashkernel=", "two-stage mode", "reservation:  32.0 MiB: too small", "after crash:  the next generation boots with crashkernel=384M", "problem:"} {
		if !strings.Contains(r.stdout, s) {
			t.Errorf("crash estimate: stdout %q lacks %q", r.stdout, s)
		}
	}
	if r.code != ExitOK {
		t.Errorf("crash estimate exit %d: %s", r.code, r.stderr)
	}
	var est crashpath.EstimateReport
	decode(t, h.run("crash", "estimate", "--mode", "direct", p, "--json"), &est)
	if est.From != "built" || est.Mode != crashhandler.ModeDirect || est.Sizing.Total == 0 || est.Crashkernel == "" || est.ReservationBytes != 32<<20 {
		t.Errorf("crash estimate --json: %+v", est)
	}
	if h.loader.Calls() != 0 {
		t.Errorf("crash estimate loaded %d times", h.loader.Calls())
	}
	// The JSON names are the interface for programs.
	var fields map[string]json.RawMessage
	json.Unmarshal([]byte(h.run("crash", "estimate", p, "--json").stdout), &fields)
	for _, f := range []string{"mode", "sizing", "crashkernel", "reservation_bytes", "fits", "next_cmdline", "from"} {
		if _, ok := fields[f]; !ok {
			t.Errorf("crash estimate --json has no %q", f)
		}
	}

	// Armed: the estimate without a manifest is the armed image's,
	// through the daemon.
	if err := os.WriteFile(filepath.Join(h.root, "sys/kernel/kexec_crash_size"), []byte("402653184\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	h.startDaemon()
	if r := h.run("crash", "arm", p); r.code != ExitOK {
		t.Fatalf("crash arm: %s", r.stderr)
	}
	r = h.run("crash", "estimate")
	if r.code != ExitOK || !strings.Contains(r.stdout, "(the armed image)") || !strings.Contains(r.stdout, "384.0 MiB: fits") || strings.Contains(r.stdout, "problem:") {
		t.Errorf("crash estimate of the armed image: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestCrashEstimateErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"bad mode", []string{"crash", "estimate", "--mode", "kdump"}, ExitUsage, "kdump"},
		{"two manifests", []string{"crash", "estimate", "a.json", "b.json"}, ExitUsage, "at most one manifest"},
		{"nothing armed on a cold boot", []string{"crash", "estimate"}, ExitFailed, "give the manifest"},
		{"no such manifest", []string{"crash", "estimate", "/nonexistent/m.json"}, ExitFailed, "/nonexistent/m.json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(crashFiles("0"))
			r := h.run(tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.text) {
				t.Errorf("exit %d stderr %q, want %d and %q", r.code, r.stderr, tc.code, tc.text)
			}
		})
	}
}
