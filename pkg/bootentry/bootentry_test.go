package bootentry_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/bootentry"
)

// copyTree copies a fixture root into a temporary directory (links kept as
// links), so that a test can change it.
func copyTree(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
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

// TestMain silences u-root's grub parser, which logs every configuration
// file it reads through the standard library's log package.
func TestMain(m *testing.M) {
	log.SetOutput(io.Discard)
	os.Exit(m.Run())
}

func scan(t *testing.T, root string) *bootentry.List {
	t.Helper()
	l, err := bootentry.Scan(context.Background(), bootentry.Options{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// brief is what the tests compare of an entry: paths relative to the root.
type brief struct {
	ID, Source, Kernel, Cmdline string
	Initrds                     []string
	Running                     bool
	Err                         string
}

func briefs(root string, l *bootentry.List) []brief {
	rel := func(p string) string { r, _ := filepath.Rel(root, p); return r }
	var out []brief
	for _, e := range l.Entries {
		b := brief{ID: e.ID, Source: string(e.Source), Cmdline: e.Cmdline, Running: e.CmdlineFromRunning}
		if e.Kernel != "" {
			b.Kernel = rel(e.Kernel)
		}
		for _, i := range e.Initrds {
			b.Initrds = append(b.Initrds, rel(i))
		}
		if e.Err != nil {
			b.Err = "error"
		}
		out = append(out, b)
	}
	return out
}

func TestScanBLS(t *testing.T) {
	root := filepath.Join(fixtures, "bls")
	l := scan(t, root)
	want := []brief{
		{ID: "0a1b2c-6.1.0-10-amd64", Source: "bls", Kernel: "boot/vmlinuz-6.1.0-10-amd64",
			Initrds: []string{"boot/ucode.img", "boot/initrd.img-6.1.0-10-amd64"}, Cmdline: "root=/dev/vda rw console=ttyS0 quiet"},
		{ID: "0a1b2c-6.1.0-9-amd64", Source: "bls", Kernel: "boot/vmlinuz-6.1.0-9-amd64",
			Initrds: []string{"boot/initrd.img-6.1.0-9-amd64"}, Cmdline: "root=/dev/vda rw console=ttyS0"},
	}
	abs, _ := filepath.Abs(root)
	if d := cmp.Diff(want, briefs(abs, l)); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	// 10 is newer than 9 by version, though "9" > "1" as text.
	if l.Default != 0 || !strings.Contains(l.DefaultReason, "newest BLS entry") {
		t.Errorf("default %d (%s), want 0 by the newest BLS entry", l.Default, l.DefaultReason)
	}
	if e := l.Entries[0]; e.Title != "Debian GNU/Linux 12 (bookworm)" || e.Version != "6.1.0-10-amd64" {
		t.Errorf("title %q version %q", e.Title, e.Version)
	}
}

func TestDefaultLoaderConf(t *testing.T) {
	root := copyTree(t, filepath.Join(fixtures, "bls"))
	conf := filepath.Join(root, "boot", "loader", "loader.conf")
	if err := os.WriteFile(conf, []byte("timeout 3\ndefault 0a1b2c-*-9-*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := scan(t, root)
	e, err := l.DefaultEntry()
	if err != nil || e.ID != "0a1b2c-6.1.0-9-amd64" || !strings.Contains(l.DefaultReason, "loader.conf default") {
		t.Errorf("default %q (%s), %v; want the 6.1.0-9 entry by loader.conf", e.ID, l.DefaultReason, err)
	}
	// A default that matches nothing falls through to the newest, and says so.
	if err := os.WriteFile(conf, []byte("default nothing-*\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l = scan(t, root)
	if e, _ := l.DefaultEntry(); e.ID != "0a1b2c-6.1.0-10-amd64" || len(l.Problems) != 1 || !strings.Contains(l.Problems[0].Error(), "matches no entry") {
		t.Errorf("default %q, problems %v", e.ID, l.Problems)
	}
}

func TestScanGrub(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(fixtures, "grub"))
	l := scan(t, root)
	want := []brief{
		{ID: "gnulinux-simple-4b1d", Source: "grub", Kernel: "boot/vmlinuz-6.1.0-10-amd64",
			Initrds: []string{"boot/initrd.img-6.1.0-10-amd64"}, Cmdline: "root=UUID=4b1d ro console=ttyS0 quiet"},
		{ID: "gnulinux-6.1.0-10-amd64-advanced-4b1d", Source: "grub", Kernel: "boot/vmlinuz-6.1.0-10-amd64",
			Initrds: []string{"boot/initrd.img-6.1.0-10-amd64"}, Cmdline: "root=UUID=4b1d ro console=ttyS0 quiet"},
		{ID: "gnulinux-6.1.0-10-amd64-recovery-4b1d", Source: "grub", Kernel: "boot/vmlinuz-6.1.0-10-amd64",
			Initrds: []string{"boot/initrd.img-6.1.0-10-amd64"}, Cmdline: "root=UUID=4b1d ro single console=ttyS0"},
		{ID: "gnulinux-6.1.0-9-amd64-advanced-4b1d", Source: "grub", Kernel: "boot/vmlinuz-6.1.0-9-amd64",
			Initrds: []string{"boot/initrd.img-6.1.0-9-amd64"}, Cmdline: `root=UUID=4b1d ro console=ttyS0 quiet "acpi_osi=Windows 2015"`},
	}
	if d := cmp.Diff(want, briefs(root, l)); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	if l.Default != 0 || !strings.Contains(l.DefaultReason, `grub.cfg default "0"`) {
		t.Errorf("default %d (%s), want 0 by grub.cfg's default", l.Default, l.DefaultReason)
	}
	if len(l.Problems) != 0 {
		t.Errorf("problems: %v", l.Problems)
	}
}

func TestDefaultGrubenv(t *testing.T) {
	for _, tc := range []struct {
		name, cfgFrom, cfgTo, env, want, reason string
	}{
		{"next_entry by id path", "", "", "next_entry=gnulinux-advanced-4b1d>gnulinux-6.1.0-9-amd64-advanced-4b1d\n", "gnulinux-6.1.0-9-amd64-advanced-4b1d", "grubenv next_entry"},
		// GRUB looks a bare id or title up in the top-level menu only.
		{"next_entry of a submenu's id alone", "", "", "next_entry=gnulinux-6.1.0-9-amd64-advanced-4b1d\n", "gnulinux-simple-4b1d", "grub.cfg default"},
		{"next_entry by number path", "", "", "next_entry=1>1\n", "gnulinux-6.1.0-10-amd64-recovery-4b1d", "grubenv next_entry"},
		{"saved_entry by title path", `set default="0"`, `set default="${saved_entry}"`,
			"saved_entry=Advanced options for Debian GNU/Linux>Debian GNU/Linux, with Linux 6.1.0-9-amd64\n", "gnulinux-6.1.0-9-amd64-advanced-4b1d", "grubenv saved_entry"},
		{"saved_entry unused without default=${saved_entry}", "", "", "saved_entry=1>2\n", "gnulinux-simple-4b1d", "grub.cfg default"},
		{"grub.cfg default by title", `set default="0"`, `set default="Debian GNU/Linux"`, "", "gnulinux-simple-4b1d", "grub.cfg default"},
		{"no default: the first", `set default="0"`, `set timeout_style=menu`, "", "gnulinux-simple-4b1d", "GRUB boots its first entry"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := copyTree(t, filepath.Join(fixtures, "grub"))
			cfg := filepath.Join(root, "boot", "grub", "grub.cfg")
			if tc.cfgFrom != "" {
				b, _ := os.ReadFile(cfg)
				os.WriteFile(cfg, []byte(strings.Replace(string(b), tc.cfgFrom, tc.cfgTo, 1)), 0o644)
			}
			if tc.env != "" {
				os.WriteFile(filepath.Join(root, "boot", "grub", "grubenv"), []byte("# GRUB Environment Block\n"+tc.env), 0o644)
			}
			l := scan(t, root)
			e, err := l.DefaultEntry()
			if err != nil || e.ID != tc.want || !strings.Contains(l.DefaultReason, tc.reason) {
				t.Errorf("default %q (%s), %v; want %q by %s", e.ID, l.DefaultReason, err, tc.want, tc.reason)
			}
		})
	}
}

func TestScanDebianLinks(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(fixtures, "debian"))
	l := scan(t, root)
	want := []brief{
		{ID: "debian", Source: "debian-links", Kernel: "boot/vmlinuz-6.1.0-10-amd64", Initrds: []string{"boot/initrd.img-6.1.0-10-amd64"}, Running: true},
		{ID: "debian-old", Source: "debian-links", Kernel: "boot/vmlinuz-6.1.0-9-amd64", Initrds: []string{"boot/initrd.img-6.1.0-9-amd64"}, Running: true},
	}
	if d := cmp.Diff(want, briefs(root, l)); d != "" {
		t.Errorf("entries (-want +got):\n%s", d)
	}
	if l.Default != 0 || !strings.Contains(l.DefaultReason, "Debian's") || l.Entries[0].Version != "6.1.0-10-amd64" {
		t.Errorf("default %d (%s), version %q", l.Default, l.DefaultReason, l.Entries[0].Version)
	}
}

// Debian's default (link_in_boot=no) puts the links at the root, with
// targets under boot/; an absolute target is taken under the scanned root.
func TestDebianLinksAtRoot(t *testing.T) {
	root := copyTree(t, filepath.Join(fixtures, "debian"))
	for _, n := range []string{"vmlinuz", "initrd.img", "vmlinuz.old", "initrd.img.old"} {
		os.Remove(filepath.Join(root, "boot", n))
	}
	os.Symlink("boot/vmlinuz-6.1.0-10-amd64", filepath.Join(root, "vmlinuz"))
	os.Symlink("/boot/initrd.img-6.1.0-10-amd64", filepath.Join(root, "initrd.img"))
	l := scan(t, root)
	e, err := l.DefaultEntry()
	if err != nil || e.Kernel != filepath.Join(root, "boot/vmlinuz-6.1.0-10-amd64") || e.Initrds[0] != filepath.Join(root, "boot/initrd.img-6.1.0-10-amd64") {
		t.Errorf("default %+v, %v", e, err)
	}
	if len(l.Entries) != 1 {
		t.Errorf("%d entries, want 1 (no .old links)", len(l.Entries))
	}
}

func TestBadEntries(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(fixtures, "bad"))
	l := scan(t, root)
	for _, tc := range []struct {
		id   string
		kind error
		says []string
	}{
		{"missing-kernel", bootentry.ErrMissingFile, []string{"missing-kernel.conf", "kernel", "vmlinuz-6.1.0-8-amd64"}},
		{"missing-initrd", bootentry.ErrMissingFile, []string{"missing-initrd.conf", "initrd", "initrd.img-6.1.0-8-amd64"}},
		{"no-initrd", bootentry.ErrNoInitrd, []string{"no-initrd.conf", "no initrd"}},
		{"via-variable", bootentry.ErrUnsupported, []string{"grub.cfg:2", "$kernel", "GRUB variable"}},
		{"via-device", bootentry.ErrUnsupported, []string{"grub.cfg:7", "(hd0,msdos1)", "GRUB device"}},
		{"nope", bootentry.ErrUnknownEntry, []string{`"nope"`, "missing-kernel", "fine"}},
	} {
		_, err := l.Lookup(tc.id)
		if !errors.Is(err, tc.kind) {
			t.Errorf("%s: %v, want %v", tc.id, err, tc.kind)
			continue
		}
		for _, s := range append(tc.says, tc.id) {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s: %q does not say %q", tc.id, err, s)
			}
		}
	}
	if e, err := l.Lookup("fine"); err != nil || e.Cmdline != "root=/dev/vda" {
		t.Errorf("fine: %+v %v", e, err)
	}
	// grub.cfg's default is entry 0, through a variable: --default fails
	// with that entry's error rather than picking another.
	if _, err := l.DefaultEntry(); !errors.Is(err, bootentry.ErrUnsupported) || !strings.Contains(err.Error(), "via-variable") {
		t.Errorf("default: %v", err)
	}
}

func TestNoEntries(t *testing.T) {
	_, err := bootentry.Scan(context.Background(), bootentry.Options{Root: t.TempDir()})
	if !errors.Is(err, bootentry.ErrNoEntries) {
		t.Errorf("%v, want ErrNoEntries", err)
	}
}

// A BLS entry may take its options from grubenv (Fedora's $kernelopts).
func TestBLSKernelopts(t *testing.T) {
	root := copyTree(t, filepath.Join(fixtures, "bls"))
	p := filepath.Join(root, "boot", "loader", "entries", "0a1b2c-6.1.0-9-amd64.conf")
	b, _ := os.ReadFile(p)
	os.WriteFile(p, []byte(strings.Replace(string(b), "options    root=/dev/vda rw console=ttyS0", "options $kernelopts $tuned_params", 1)), 0o644)
	l := scan(t, root)
	if _, err := l.Lookup("0a1b2c-6.1.0-9-amd64"); !errors.Is(err, bootentry.ErrUnsupported) || !strings.Contains(err.Error(), "$kernelopts") {
		t.Errorf("without grubenv: %v", err)
	}
	os.MkdirAll(filepath.Join(root, "boot", "grub2"), 0o755)
	os.WriteFile(filepath.Join(root, "boot", "grub2", "grubenv"), []byte("# GRUB Environment Block\nkernelopts=root=/dev/vda ro\ntuned_params=\n"), 0o644)
	l = scan(t, root)
	if e, err := l.Lookup("0a1b2c-6.1.0-9-amd64"); err != nil || e.Cmdline != "root=/dev/vda ro" {
		t.Errorf("with grubenv: %q, %v", e.Cmdline, err)
	}
}

func TestCompareVersions(t *testing.T) {
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"6.1.0-10-amd64", "6.1.0-9-amd64", 1},
		{"6.1.0-9-amd64", "6.1.0-10-amd64", -1},
		{"6.1.0", "6.1.0", 0},
		{"6.2~rc1", "6.2", -1},
		{"6.2", "6.2.1", -1},
		{"6.2-1", "6.2", 1},
		{"6.2a", "6.2", 1},
		{"6.2a", "6.21", -1},
		{"006", "6", 0},
		{"fedora-6.5", "fedora-6.10", -1},
		{"", "1", -1},
	} {
		if got := bootentry.CompareVersions(tc.a, tc.b); got != tc.want {
			t.Errorf("CompareVersions(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

// A grub.cfg that u-root's parser rejects (a configfile it cannot read)
// leaves every GRUB entry unbootable with the reason, and says so as a
// problem; an entry without an initrd line is ErrNoInitrd.
func TestGrubParserFailure(t *testing.T) {
	root := copyTree(t, filepath.Join(fixtures, "bad"))
	cfg := filepath.Join(root, "boot", "grub", "grub.cfg")
	b, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(b, []byte("menuentry 'bare' --id bare {\n\tlinux /boot/vmlinuz-6.1.0-10-amd64\n}\n")...), 0o644)
	l := scan(t, root)
	if _, err := l.Lookup("bare"); !errors.Is(err, bootentry.ErrNoInitrd) || !strings.Contains(err.Error(), "grub.cfg:15") {
		t.Errorf("bare: %v", err)
	}
	os.WriteFile(cfg, append(b, []byte("configfile /boot/grub/missing.cfg\n")...), 0o644)
	l = scan(t, root)
	if _, err := l.Lookup("fine"); !errors.Is(err, bootentry.ErrUnsupported) || !strings.Contains(err.Error(), "could not be parsed") {
		t.Errorf("fine after a bad configfile: %v", err)
	}
	if len(l.Problems) == 0 || !strings.Contains(fmt.Sprint(l.Problems), "missing.cfg") {
		t.Errorf("problems %v, want the configfile named", l.Problems)
	}
}
