package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
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

	var st agent.CrashStatusReport
	decode(t, h.run("crash", "status", "--json"), &st)
	if st.Armed || !st.Supported || st.ReservationBytes != 384<<20 {
		t.Errorf("crash status before arming: %+v", st)
	}

	var rep agent.CrashArmReport
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
