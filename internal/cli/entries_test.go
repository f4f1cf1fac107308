package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// bootFixture is a root of testdata/boot (bls, grub, debian, bad).
func bootFixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "..", "testdata", "boot", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestEntries(t *testing.T) {
	h := newHarness(t)
	r := h.run("entries", "--root", bootFixture(t, "grub"))
	for _, want := range []string{
		"* gnulinux-simple-4b1d (grub): Debian GNU/Linux\n",
		"  gnulinux-6.1.0-9-amd64-advanced-4b1d (grub): Debian GNU/Linux, with Linux 6.1.0-9-amd64\n",
		`cmdline root=UUID=4b1d ro console=ttyS0 quiet "acpi_osi=Windows 2015"`,
		`default (--default): gnulinux-simple-4b1d, by grub.cfg default "0"`,
	} {
		if r.code != ExitOK || !strings.Contains(r.stdout, want) {
			t.Errorf("entries: exit %d, stdout lacks %q:\n%s", r.code, want, r.stdout)
		}
	}
	var doc entriesV1
	decode(t, h.run("entries", "--json", "--root", bootFixture(t, "bls")), &doc)
	if doc.Schema != schemaEntries || doc.Default != "0a1b2c-6.1.0-10-amd64" || !strings.Contains(doc.DefaultReason, "newest BLS entry") ||
		len(doc.Entries) != 2 || !doc.Entries[0].Default || len(doc.Entries[0].Initrds) != 2 {
		t.Errorf("entries --json: %+v", doc)
	}
	// Broken entries are listed with their error.
	decode(t, h.run("entries", "--json", "--root", bootFixture(t, "bad")), &doc)
	errs := map[string]string{}
	for _, e := range doc.Entries {
		errs[e.ID] = e.Error
	}
	if errs["fine"] != "" || !strings.Contains(errs["missing-kernel"], "vmlinuz-6.1.0-8-amd64") || !strings.Contains(errs["via-device"], "grub.cfg:7") {
		t.Errorf("errors of the bad entries: %q", errs)
	}
	if r := h.run("entries", "--root", t.TempDir()); r.code != ExitFailed || !strings.Contains(r.stderr, "no boot entries") {
		t.Errorf("entries of an empty root: exit %d, stderr %q", r.code, r.stderr)
	}
}

func TestStageEntry(t *testing.T) {
	h := newHarness(t)
	h.startDaemon()
	bls := bootFixture(t, "bls")

	var rep fastreboot.StageReport
	decode(t, h.run("stage", "--default", "--root", bls, "--json"), &rep)
	if rep.Manifest != "0a1b2c-6.1.0-10-amd64" || !rep.Loaded || h.loader.cmdline != "root=/dev/vda rw console=ttyS0 quiet" ||
		!cmp.Equal(rep.Sync.Read, []string{"vmlinuz-6.1.0-10-amd64", "ucode.img", "initrd.img-6.1.0-10-amd64"}) {
		t.Errorf("stage --default: manifest %q loaded %v cmdline %q read %q", rep.Manifest, rep.Loaded, h.loader.cmdline, rep.Sync.Read)
	}
	// An entry by id; --append adds to its command line.
	r := h.run("stage", "--entry", "0a1b2c-6.1.0-9-amd64", "--root", bls, "--append", "extra=1")
	if r.code != ExitOK || !strings.Contains(r.stdout, "staged 0a1b2c-6.1.0-9-amd64 for generation 2") || h.loader.cmdline != "root=/dev/vda rw console=ttyS0 extra=1" {
		t.Errorf("stage --entry: exit %d, stdout %q, cmdline %q", r.code, r.stdout, h.loader.cmdline)
	}
	// Debian's links have no command line: the running one, cleaned of the
	// loader's words.
	decode(t, h.run("stage", "--default", "--root", bootFixture(t, "debian"), "--json"), &rep)
	if rep.Manifest != "debian" || h.loader.cmdline != "root=/dev/vda ro quiet" {
		t.Errorf("stage --default of Debian's links: manifest %q, cmdline %q", rep.Manifest, h.loader.cmdline)
	}
	// GRUB's default.
	if r := h.run("stage", "--default", "--root", bootFixture(t, "grub"), "--dry-run"); r.code != ExitOK || !strings.Contains(r.stdout, "staged gnulinux-simple-4b1d") {
		t.Errorf("stage --default of grub.cfg: exit %d, stdout %q", r.code, r.stdout)
	}

	// manifest create --entry writes the entry's manifest.
	r = h.run("manifest", "create", "--entry", "0a1b2c-6.1.0-10-amd64", "--root", bls)
	m, err := bootimage.Parse(strings.NewReader(r.stdout), "stdout")
	if r.code != ExitOK || err != nil || m.Name != "0a1b2c-6.1.0-10-amd64" || len(m.Initrds()) != 2 || m.Cmdline != "root=/dev/vda rw console=ttyS0 quiet" ||
		m.Kernel().Source != filepath.Join(bls, "boot", "vmlinuz-6.1.0-10-amd64") {
		t.Errorf("manifest create --entry: exit %d, %v, %+v", r.code, err, m)
	}
}

// TestStageEntryBadInput: a broken or unknown entry fails with exit 1 and
// a message naming the entry and the file; nothing is loaded, so the image
// staged before stays.
func TestStageEntryBadInput(t *testing.T) {
	h := newHarness(t)
	h.startDaemon()
	if r := h.run("stage", "--entry", "fine", "--root", bootFixture(t, "bad")); r.code != ExitOK {
		t.Fatalf("stage --entry fine: exit %d: %s", r.code, r.stderr)
	}
	loaded := h.loader.Calls()
	for _, tc := range []struct {
		args []string
		kind string
		says []string
	}{
		{[]string{"--entry", "missing-kernel"}, "bootentry.missing_file", []string{"missing-kernel", "missing-kernel.conf", "vmlinuz-6.1.0-8-amd64"}},
		{[]string{"--entry", "missing-initrd"}, "bootentry.missing_file", []string{"missing-initrd", "initrd.img-6.1.0-8-amd64"}},
		{[]string{"--entry", "no-initrd"}, "bootentry.no_initrd", []string{"no-initrd", "no-initrd.conf"}},
		{[]string{"--entry", "via-variable"}, "bootentry.unsupported", []string{"via-variable", "grub.cfg:2", "$kernel"}},
		{[]string{"--default"}, "bootentry.unsupported", []string{"via-variable", `grub.cfg default "0"`}},
		{[]string{"--entry", "nope"}, "bootentry.unknown_entry", []string{`"nope"`, "fine"}},
	} {
		args := append([]string{"stage", "--json", "--root", bootFixture(t, "bad")}, tc.args...)
		r := h.run(args...)
		var doc errorV1
		decodeStdout(t, r, &doc)
		if r.code != ExitFailed || !strings.Contains(strings.Join(doc.Error.Kinds, ","), tc.kind) {
			t.Errorf("%q: exit %d, kinds %q, want %s", tc.args, r.code, doc.Error.Kinds, tc.kind)
		}
		for _, s := range tc.says {
			if !strings.Contains(r.stderr, s) {
				t.Errorf("%q: stderr %q does not name %q", tc.args, r.stderr, s)
			}
		}
	}
	if h.loader.Calls() != loaded {
		t.Errorf("the loader was called %d times after the bad inputs", h.loader.Calls()-loaded)
	}
	if r := h.run("stage", "--default", "--kernel", "k"); r.code != ExitUsage {
		t.Errorf("--default with --kernel: exit %d", r.code)
	}
}
