package cli

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// crashFiles add a crash reservation, a command line asking for it and the
// fault sysctls to goodRoot.
func crashFiles(reserve string) map[string]string {
	files := map[string]string{
		"proc/cmdline":                "BOOT_IMAGE=/boot/vmlinuz-6.1.0 root=/dev/vda ro quiet crashkernel=384M\n",
		"sys/kernel/kexec_crash_size": reserve + "\n",
		"proc/meminfo":                "MemTotal:        2000000 kB\n",
		"sys/firmware/memmap/0/start": "0x0\n", "sys/firmware/memmap/0/end": "0x9fbff\n", "sys/firmware/memmap/0/type": "System RAM\n",
		"sys/firmware/memmap/1/start": "0x100000\n", "sys/firmware/memmap/1/end": "0x7ffdefff\n", "sys/firmware/memmap/1/type": "System RAM\n",
		// The program a minimal crash initramfs (two-stage mode's
		// default) runs as /init.
		"proc/self/exe": strings.Repeat("fastreboot binary ", 100),
	}
	for _, n := range crashhandler.DefaultFaults {
		files[filepath.Join("proc/sys", strings.ReplaceAll(n, ".", "/"))] = "0\n"
	}
	return files
}

func TestCrashCommands(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)

	var st crashpath.StatusReport
	decode(t, h.run("crash", "status", "--json"), &st)
	if st.Armed || !st.Supported || st.ReservationBytes != 384<<20 {
		t.Errorf("crash status before arming: %+v", st)
	}

	var rep crashpath.ArmReport
	decode(t, h.run("crash", "arm", "--mode", "direct", p, "--json"), &rep)
	if !rep.Armed || rep.State.Mode != crashhandler.ModeDirect || h.loader.Calls() != 1 {
		t.Errorf("crash arm: %+v, loader calls %d", rep, h.loader.Calls())
	}
	if !strings.Contains(h.loader.cmdline, "fastreboot.crash=direct") {
		t.Errorf("crash cmdline %q", h.loader.cmdline)
	}
	if r := h.run("status"); r.code != ExitOK || !strings.Contains(r.stdout, "crash path:") {
		t.Errorf("status does not show the crash path: %q", r.stdout)
	}
	if r := h.run("crash", "disarm"); r.code != ExitOK || !strings.Contains(r.stdout, "disarmed") {
		t.Errorf("crash disarm: %+v", r)
	}
}

// TestCrashDisarmWarnings: the sysctls a tampered crash state names that
// disarm leaves alone are printed as warnings by the CLI, not only logged
// where the daemon runs, and --json carries them.
func TestCrashDisarmWarnings(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)
	tamper := func() {
		t.Helper()
		if r := h.run("crash", "arm", "--mode", "direct", p); r.code != ExitOK {
			t.Fatalf("crash arm: %+v", r)
		}
		path := filepath.Join(h.stateDir, "crash.json")
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		var st map[string]any
		if err := json.Unmarshal(b, &st); err != nil {
			t.Fatal(err)
		}
		st["previous_sysctls"].(map[string]any)["kernel.modprobe"] = "/tmp/evil"
		if b, err = json.Marshal(st); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}

	tamper()
	r := h.run("crash", "disarm")
	if r.code != ExitOK || !strings.Contains(r.stdout, "disarmed") || !strings.Contains(r.stderr, "warning: ") || !strings.Contains(r.stderr, "kernel.modprobe") {
		t.Errorf("crash disarm of a tampered state: %+v, want a warning naming kernel.modprobe on stderr", r)
	}

	tamper()
	r = h.run("crash", "disarm", "--json")
	var doc CrashStatusV1
	decode(t, r, &doc)
	if doc.Schema != schemaCrashDisarm || len(doc.Warnings) != 1 || !strings.Contains(doc.Warnings[0], "kernel.modprobe") {
		t.Errorf("crash disarm --json: schema %q, warnings %q; want one naming kernel.modprobe", doc.Schema, doc.Warnings)
	}
	if !strings.Contains(r.stderr, "kernel.modprobe") {
		t.Errorf("crash disarm --json: stderr %q lacks the warning", r.stderr)
	}
	if got := h.run("crash", "status", "--json").stdout; strings.Contains(got, "warnings") {
		t.Errorf("crash status --json after the disarm: %s, want no warnings", got)
	}
}

func TestCrashCommandErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		code int
		text string
	}{
		{"no subcommand", []string{"crash"}, ExitUsage, "subcommand"},
		{"unknown", []string{"crash", "explode"}, ExitUsage, "explode"},
		{"bad mode", []string{"crash", "arm", "--mode", "kdump"}, ExitUsage, "kdump"},
		{"no manifest on a cold boot", []string{"crash", "arm"}, ExitFailed, "give the manifest"},
		{"no reservation", []string{"crash", "arm", "MANIFEST"}, ExitFailed, "crashkernel="},
		{"no crash yet", []string{"crash", "last"}, ExitFailed, "no crash recorded"},
		{"recover outside a crash kernel", []string{"crash", "recover"}, ExitFailed, "not a crash kernel"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(crashFiles("0"))
			v1, _ := testimage.Update()
			_, p := v1.WriteTemp(t)
			args := append([]string(nil), tc.args...)
			for i, a := range args {
				if a == "MANIFEST" {
					args[i] = p
				}
			}
			r := h.run(args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.text) {
				t.Errorf("exit %d stderr %q, want %d and %q", r.code, r.stderr, tc.code, tc.text)
			}
			if h.loader.Calls() != 0 {
				t.Errorf("kexec_file_load called %d times", h.loader.Calls())
			}
		})
	}
}

// TestCrashLastAgreesWithStatus: a generation the crash path started shows
// a last crash even when no evidence of it could be read, whether crash
// recover ran in it or not.
func TestCrashLastAgreesWithStatus(t *testing.T) {
	im, _ := testimage.Update()
	m := im.Manifest()
	for _, recoverRan := range []bool{true, false} {
		t.Run(fmt.Sprintf("recover ran %v", recoverRan), func(t *testing.T) {
			h := newHarness(t)
			h.writeRoot(crashFiles("402653184"))
			// A direct-mode crash kernel: no vmcore, no pstore backend.
			h.writeRoot(map[string]string{"proc/cmdline": "console=ttyS0 crashkernel=384M fastreboot.crash=direct\n"})
			ho := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: 3, Reason: fastreboot.ReasonCrash, Manifest: *m,
				Crash: &fastreboot.HandoffCrash{Mode: crashhandler.ModeDirect}}
			b, err := json.Marshal(ho)
			if err != nil {
				t.Fatal(err)
			}
			h.writeRoot(map[string]string{fastreboot.HandoffFile: string(b)})
			if recoverRan {
				r := h.run("crash", "recover")
				if r.code != ExitOK || !strings.Contains(r.stdout, "no evidence: ") || !strings.Contains(r.stdout, "last crash:   cause unknown at ") {
					t.Errorf("crash recover: exit %d, stdout %q; want the record of a crash without evidence", r.code, r.stdout)
				}
			}
			// What the daemon's Resume saves in this generation.
			if err := fastreboot.SaveState(h.stateDir, &fastreboot.State{Generation: 3, Reason: fastreboot.ReasonCrash, Manifest: m}); err != nil {
				t.Fatal(err)
			}
			var st struct {
				Generation int               `json:"generation"`
				Reason     fastreboot.Reason `json:"reason"`
			}
			r := h.run("status", "--json")
			if err := json.Unmarshal([]byte(r.stdout), &st); err != nil || st.Reason != fastreboot.ReasonCrash || st.Generation != 3 {
				t.Fatalf("status: %+v (%v), want generation 3, reason crash", st, err)
			}
			var ev crashhandler.Evidence
			decode(t, h.run("crash", "last", "--json"), &ev)
			if ev.Generation != st.Generation-1 || ev.Mode != crashhandler.ModeDirect || len(ev.Problems) == 0 {
				t.Errorf("crash last = %+v, want generation %d, mode direct, a problem saying why there is no evidence", ev, st.Generation-1)
			}
			if r := h.run("crash", "last"); r.code != ExitOK || !strings.Contains(r.stdout, "generation 2, mode direct") {
				t.Errorf("crash last: exit %d, %q", r.code, r.stdout)
			}
		})
	}
}

// TestCrashArmWarnsWithoutEvidence: arming in a generation without a pstore
// backend says so on stderr.
func TestCrashArmWarnsWithoutEvidence(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(crashFiles("402653184"))
	v1, _ := testimage.Update()
	_, p := v1.WriteTemp(t)
	r := h.run("crash", "arm", "--mode", "direct", p)
	want := "warning: evidence of a crash before the next fast reboot: none in direct mode (no pstore backend in this generation); two-stage reads /proc/vmcore\n"
	if r.code != ExitOK || !strings.Contains(r.stderr, want) || strings.Contains(r.stdout, "warning:") {
		t.Errorf("crash arm: exit %d, stderr %q; want %q on stderr", r.code, r.stderr, want)
	}
}

// TestPrintEvidenceReload: `crash last` says how a two-stage crash stage
// reloaded production, and why not from its decompressed kernel; a direct
// crash's evidence says nothing of it.
func TestPrintEvidenceReload(t *testing.T) {
	for _, tc := range []struct {
		kernel, why, want string
	}{
		{"elf", "", "reloaded:     production's decompressed kernel, from the crashed kernel's memory\n"},
		{"compressed", "pages moved since the record", "reloaded:     production's compressed kernel (pages moved since the record)\n"},
		{"", "", ""},
	} {
		var b strings.Builder
		printEvidence(&b, &crashhandler.Evidence{Reason: "Kernel panic - not syncing: sysrq triggered crash", CPU: -1, ProductionKernel: tc.kernel, ProductionKernelWhy: tc.why})
		if got := b.String(); tc.want != "" && !strings.Contains(got, tc.want) || tc.want == "" && strings.Contains(got, "reloaded:") {
			t.Errorf("production kernel %q: printed\n%s\nwant the line %q", tc.kernel, got, tc.want)
		}
	}
}
