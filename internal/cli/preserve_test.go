package cli

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// preserveRoot gives h's fake root a kept region of 16 MiB at 1 GiB whose
// last 8 MiB are the areas part (/dev/pmem0 is a regular file), and the
// cgroup /work whose cgroup.events says frozen.
func preserveRoot(t *testing.T, h *harness, cmdline string) {
	t.Helper()
	h.writeRoot(map[string]string{
		"proc/cmdline":                     cmdline + "\n",
		"sys/block/pmem0/size":             "32768\n",
		"sys/block/pmem0/device/resource":  "0x40000000\n",
		"sys/fs/cgroup/work/cgroup.freeze": "0\n",
		"sys/fs/cgroup/work/cgroup.events": "populated 1\nfrozen 1\n",
		"sys/kernel/kexec_loaded":          "1\n",
	})
	if err := os.Truncate(filepath.Join(h.root, "dev/pmem0"), 16<<20); err != nil {
		if err := os.MkdirAll(filepath.Join(h.root, "dev"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(h.root, "dev/pmem0"), nil, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(filepath.Join(h.root, "dev/pmem0"), 16<<20); err != nil {
			t.Fatal(err)
		}
	}
}

const preserveCmdline = "console=ttyS0 memmap=16M!0x40000000 fastreboot.preserve=8M"

func TestPreserveCreateLsRm(t *testing.T) {
	h := newHarness(t)
	preserveRoot(t, h, preserveCmdline)
	r := h.run("preserve", "create", "state", "--size", "4M", "--cgroup", filepath.Join(h.root, "sys/fs/cgroup/work"))
	if r.code != ExitOK || !strings.Contains(r.stdout, "created state: 4M at offset 8454144 (0x810000) of "+filepath.Join(h.root, "dev/pmem0")) ||
		!strings.Contains(r.stdout, "cgroup /work") {
		t.Fatalf("create: exit %d, %q", r.code, r.stdout)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"create", "state", "--size", "4096"}, ExitFailed, `preserved area exists: "state"`},
		{[]string{"create", "big", "--size", "4M"}, ExitFailed, "no room for the preserved area: area \"big\" of 4M: 4032K of the 8M areas part is free"},
		{[]string{"create", "a/b", "--size", "4K"}, ExitFailed, "'/'"},
		{[]string{"create", "x", "--size", "lots"}, ExitUsage, `--size "lots"`},
		{[]string{"create", "x"}, ExitUsage, `--size ""`},
		{[]string{"create", "x", "--size", "4K", "--cgroup", "work"}, ExitUsage, "want a path under /sys/fs/cgroup"},
		{[]string{"rm", "nope"}, ExitFailed, `no such preserved area: "nope"`},
		{[]string{"frobnicate"}, ExitUsage, "unknown preserve subcommand"},
	} {
		r := h.run(append([]string{"preserve"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("preserve %v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
	r = h.run("preserve", "ls")
	if r.code != ExitOK || !strings.Contains(r.stdout, "areas part 8M at offset 8388608 (0x800000), 4032K free") ||
		!strings.Contains(r.stdout, "state  8454144  4M    /work") {
		t.Errorf("ls: %q", r.stdout)
	}
	r = h.run("preserve", "ls", "--json")
	var doc PreserveLsV1
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || r.code != ExitOK {
		t.Fatalf("ls --json: exit %d, %v", r.code, err)
	}
	if doc.Schema != schemaPreserveLs || len(doc.Areas) != 1 || doc.Areas[0].Offset != 8<<20+64<<10 || doc.Areas[0].Generation != 1 ||
		doc.AreasOffset != 8<<20 || doc.FreeBytes != 4<<20-64<<10 {
		t.Errorf("ls --json = %+v", doc)
	}
	if r := h.run("preserve", "rm", "state"); r.code != ExitOK {
		t.Fatalf("rm: %d", r.code)
	}
	r = h.run("preserve", "ls", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || len(doc.Areas) != 0 {
		t.Errorf("ls after rm: %v %+v", err, doc)
	}
}

func TestPreserveWithoutAreas(t *testing.T) {
	for _, tc := range []struct{ cmdline, msg string }{
		{"console=ttyS0 fastreboot.preserve=8M", "fastreboot.preserve=8M: the command line keeps no region"},
		{"console=ttyS0", "no areas part on the command line"},
		{"memmap=16M!0x40000000", "no fastreboot.preserve=SIZE word"},
	} {
		h := newHarness(t)
		preserveRoot(t, h, tc.cmdline)
		r := h.run("preserve", "ls", "--json")
		if r.code != ExitFailed || !strings.Contains(r.stderr, tc.msg) || !strings.Contains(r.stdout, "fastreboot.error.v1") {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want the error %q", tc.cmdline, r.code, r.stderr, r.stdout, tc.msg)
		}
	}
}

func TestRebootFreezesPreservedAreas(t *testing.T) {
	h := newHarness(t)
	preserveRoot(t, h, preserveCmdline)
	if r := h.run("preserve", "create", "state", "--size", "1M", "--cgroup", "/work"); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	r := h.run("--no-daemon", "reboot")
	if r.code != ExitOK || !strings.Contains(r.stderr, "1 preserved area(s) on "+filepath.Join(h.root, "dev/pmem0")+": froze /work in ") {
		t.Fatalf("reboot: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := readFile(t, filepath.Join(h.root, "sys/fs/cgroup/work/cgroup.freeze")); got != "1" {
		t.Errorf("cgroup.freeze = %q after the jump, want 1", got)
	}
	if calls := h.rebooter.Calls(); len(calls) != 2 {
		t.Errorf("rebooter calls %v, want sync and kexec", calls)
	}
}

func TestRebootThawsWhenTheJumpFails(t *testing.T) {
	h := newHarness(t)
	preserveRoot(t, h, preserveCmdline)
	h.cfg.machine.Rebooter = failingRebooter{}
	if r := h.run("preserve", "create", "state", "--size", "1M", "--cgroup", "/work"); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	r := h.run("--no-daemon", "reboot")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "froze /work") {
		t.Fatalf("reboot: exit %d, stderr %q", r.code, r.stderr)
	}
	if got := readFile(t, filepath.Join(h.root, "sys/fs/cgroup/work/cgroup.freeze")); got != "0" {
		t.Errorf("cgroup.freeze = %q after a failed jump, want 0 (thawed)", got)
	}
}

func TestRebootRefusedWhenAFreezeFails(t *testing.T) {
	h := newHarness(t)
	preserveRoot(t, h, preserveCmdline)
	if r := h.run("preserve", "create", "state", "--size", "1M", "--cgroup", "/gone"); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	r := h.run("--no-daemon", "reboot")
	if r.code != ExitFailed || !strings.Contains(r.stderr, "reboot refused, nothing done") || !strings.Contains(r.stderr, "/gone") {
		t.Errorf("reboot: exit %d, stderr %q; want refused naming /gone", r.code, r.stderr)
	}
	if calls := h.rebooter.Calls(); len(calls) != 0 {
		t.Errorf("rebooter calls %v, want none", calls)
	}
	r = h.run("--no-daemon", "reboot", "--force")
	if r.code != ExitOK || !strings.Contains(r.stderr, "rebooting anyway (--force)") {
		t.Errorf("reboot --force: exit %d, stderr %q", r.code, r.stderr)
	}
}

func readFile(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// failingRebooter is a reboot(2) that fails, as one with other CPUs that
// could not be stopped would come back.
type failingRebooter struct{}

func (failingRebooter) Sync() error                       { return nil }
func (failingRebooter) Reboot(fastreboot.RebootCmd) error { return errors.New("reboot(2): EBUSY") }

// TestPreserveAttachDetach drives what needs no loop module: an area
// already mapped by a loop device (sysfs says so) is attached to that
// device, and a fast reboot syncs it; the ioctls themselves are proven in
// QEMU (TestVMPreserved).
func TestPreserveAttachDetach(t *testing.T) {
	h := newHarness(t)
	preserveRoot(t, h, preserveCmdline)
	for _, a := range [][]string{{"vm", "1M"}, {"other", "1M"}} {
		if r := h.run("preserve", "create", a[0], "--size", a[1]); r.code != ExitOK {
			t.Fatal(r.stderr)
		}
	}
	// loop3 maps vm (the first area, after the 64 KiB table); loop4 maps
	// a file elsewhere.
	h.writeRoot(map[string]string{
		"sys/block/loop3/loop/backing_file": "/dev/pmem0\n",
		"sys/block/loop3/loop/offset":       "8454144\n",
		"sys/block/loop3/loop/sizelimit":    "1048576\n",
		"sys/block/loop4/loop/backing_file": "/var/disk.img\n",
		"sys/block/loop4/loop/offset":       "0\n",
		"sys/block/loop4/loop/sizelimit":    "0\n",
		"dev/loop3":                         "",
	})
	loop3 := filepath.Join(h.root, "dev/loop3")
	if r := h.run("preserve", "attach", "vm"); r.code != ExitOK || r.stdout != loop3+"\n" {
		t.Errorf("attach vm: exit %d, stdout %q, stderr %q; want %s", r.code, r.stdout, r.stderr, loop3)
	}
	for _, tc := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"attach"}, ExitUsage, "preserve attach takes 1 argument(s)"},
		{[]string{"attach", "a", "b"}, ExitUsage, "preserve attach takes 1 argument(s)"},
		{[]string{"attach", "nope"}, ExitFailed, `no such preserved area: "nope"`},
		{[]string{"detach", "nope"}, ExitFailed, `no such preserved area: "nope"`},
	} {
		r := h.run(append([]string{"preserve"}, tc.args...)...)
		if r.code != tc.code || !strings.Contains(r.stderr, tc.msg) {
			t.Errorf("preserve %v: exit %d, stderr %q; want %d and %q", tc.args, r.code, r.stderr, tc.code, tc.msg)
		}
	}
	if r := h.run("preserve", "detach", "other"); r.code != ExitOK || r.stdout != "other: no loop device maps it\n" {
		t.Errorf("detach other: exit %d, stdout %q, stderr %q", r.code, r.stdout, r.stderr)
	}
	if r := h.run("preserve", "rm", "vm"); r.code != ExitFailed || !strings.Contains(r.stderr, "preserve rm vm: "+loop3+" maps it (fastreboot preserve detach vm first)") {
		t.Errorf("rm vm with loop3 over it: exit %d, stderr %q; want a refusal naming loop3", r.code, r.stderr)
	}
	r := h.run("--no-daemon", "reboot")
	if r.code != ExitOK || !strings.Contains(r.stderr, "2 preserved area(s) on "+filepath.Join(h.root, "dev/pmem0")+": froze - in ") ||
		!strings.Contains(r.stderr, "synced (with "+loop3+") in ") {
		t.Errorf("reboot: exit %d, stderr %q; want loop3 synced", r.code, r.stderr)
	}
}
