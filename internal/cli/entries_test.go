package cli

import (
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/statindex"
	"github.com/fastreboot/fastreboot/internal/testimage"
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
	var doc EntriesV1
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
		var doc ErrorV1
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

// copyBootFixture copies a root of testdata/boot (links kept) so that a
// test can change its files.
func copyBootFixture(t *testing.T, name string) string {
	t.Helper()
	src, dst := bootFixture(t, name), t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		to := filepath.Join(dst, rel)
		switch {
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			return os.Symlink(target, to)
		case d.IsDir():
			return os.MkdirAll(to, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, b, 0o644)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// TestStageStatIndex: an image from a boot entry has no digests; the stat
// index in the state directory spares reading the files that did not
// change, and the report counts every byte read, hashing included.
func TestStageStatIndex(t *testing.T) {
	h := newHarness(t)
	// The index's runs start a minute ahead: the files this test writes
	// are not racy (statindex.Granularity).
	h.cfg.now = func() time.Time { return time.Now().Add(time.Minute) }
	h.startDaemon()
	root := copyBootFixture(t, "bls")
	boot := filepath.Join(root, "boot")
	size := func(name string) int64 {
		fi, err := os.Stat(filepath.Join(boot, name))
		if err != nil {
			t.Fatal(err)
		}
		return fi.Size()
	}
	files := []string{"vmlinuz-6.1.0-10-amd64", "ucode.img", "initrd.img-6.1.0-10-amd64"}
	var all int64
	for _, f := range files {
		all += size(f)
	}
	stage := func(args ...string) fastreboot.StageReport {
		t.Helper()
		var rep fastreboot.StageReport
		decode(t, h.run(append([]string{"stage", "--default", "--root", root, "--json"}, args...)...), &rep)
		if rep.Hashed == nil {
			t.Fatalf("no hashed report")
		}
		return rep
	}

	rep := stage()
	if rep.Hashed.Hashed != 3 || rep.Hashed.BytesRead != all || rep.Sync.BytesRead != all || rep.BytesRead != 2*all {
		t.Errorf("first stage: hashed %+v, sync %d, in all %d; want 3 files, %d bytes each way", rep.Hashed, rep.Sync.BytesRead, rep.BytesRead, all)
	}
	rep = stage()
	if rep.Hashed.Hits != 3 || rep.Hashed.BytesRead != 0 || rep.BytesRead != 0 {
		t.Errorf("unchanged stage: hashed %+v, in all %d; want nothing read", rep.Hashed, rep.BytesRead)
	}

	// The initramfs is regenerated with a changed file: that file alone
	// is read, to hash it and into the cache.
	initrd := filepath.Join(boot, "initrd.img-6.1.0-10-amd64")
	if err := os.WriteFile(initrd, testimage.Gzip(testimage.Cpio(testimage.File{Name: "init", Data: []byte("#!/bin/sh\necho changed\n"), Mode: 0o755})), 0o644); err != nil {
		t.Fatal(err)
	}
	n := size("initrd.img-6.1.0-10-amd64")
	rep = stage()
	if !cmp.Equal(rep.Hashed.Read, []string{initrd}) || rep.Hashed.BytesRead != n || rep.Hashed.Hits != 2 ||
		!cmp.Equal(rep.Sync.Read, []string{"initrd.img-6.1.0-10-amd64"}) || rep.BytesRead != 2*n {
		t.Errorf("after the change: hashed %+v, sync %+v, in all %d; want only %s (%d bytes) read, twice", rep.Hashed, rep.Sync, rep.BytesRead, initrd, n)
	}
	r := h.run("stage", "--default", "--root", root)
	if !strings.Contains(r.stdout, "digests: 0 of 3 files hashed (0 B: ), 3 unchanged by the stat index") || !strings.Contains(r.stdout, "read in all: 0 B") {
		t.Errorf("text report: %q", r.stdout)
	}
	// --no-index hashes everything and leaves the index alone.
	if rep = stage("--no-index"); rep.Hashed.Hashed != 3 || rep.Hashed.Hits != 0 {
		t.Errorf("--no-index: %+v", rep.Hashed)
	}
	// The index is in the state directory, or in /var/lib/fastreboot
	// when that exists: there it outlives the generation.
	if _, err := os.Stat(filepath.Join(h.stateDir, statindex.FileName)); err != nil {
		t.Errorf("index: %v", err)
	}
	persistent := filepath.Join(h.root, "var", "lib", "fastreboot")
	if err := os.MkdirAll(persistent, 0o755); err != nil {
		t.Fatal(err)
	}
	if rep = stage(); rep.Hashed.Hashed != 3 {
		t.Errorf("first stage with a new index in %s: %+v", persistent, rep.Hashed)
	}
	if _, err := os.Stat(filepath.Join(persistent, statindex.FileName)); err != nil {
		t.Errorf("index in /var/lib/fastreboot: %v", err)
	}
}
