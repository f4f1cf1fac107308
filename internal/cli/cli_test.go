package cli

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

func TestUsage(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		code       int
		stdout     string // substring, "" for empty output
		stderr     string
		skipGlobal bool
	}{
		{args: nil, code: ExitUsage, stderr: "no command given"},
		{args: []string{"help"}, code: ExitOK, stdout: "Usage: fastreboot"},
		{args: []string{"--help"}, code: ExitOK, stdout: "Usage: fastreboot"},
		{args: []string{"-h"}, code: ExitOK, stdout: "Usage: fastreboot", skipGlobal: true},
		{args: []string{"stage", "-h"}, code: ExitOK, stdout: "Usage: fastreboot"},
		{args: []string{"frobnicate"}, code: ExitUsage, stderr: `unknown command "frobnicate" (commands: bless, cache, `},
		{args: []string{"--frob", "status"}, code: ExitUsage, stderr: "flag provided but not defined: -frob"},
		{args: []string{"status", "--frob"}, code: ExitUsage, stderr: "fastreboot status: flag provided but not defined: -frob (see fastreboot help)"},
		{args: []string{"status", "now"}, code: ExitUsage, stderr: "status takes no arguments"},
		{args: []string{"cache"}, code: ExitUsage, stderr: "cache needs a subcommand"},
		{args: []string{"cache", "frob"}, code: ExitUsage, stderr: `unknown cache subcommand "frob"`},
		{args: []string{"cache", "sync"}, code: ExitUsage, stderr: "cache sync takes 1 argument(s)"},
		{args: []string{"cache", "ls", "x"}, code: ExitUsage, stderr: "cache ls takes 0 argument(s)"},
		{args: []string{"manifest"}, code: ExitUsage, stderr: "manifest needs a subcommand"},
		{args: []string{"manifest", "frob"}, code: ExitUsage, stderr: `unknown manifest subcommand "frob"`},
		{args: []string{"manifest", "diff", "a.json"}, code: ExitUsage, stderr: "manifest diff takes OLD NEW"},
		{args: []string{"manifest", "validate"}, code: ExitUsage, stderr: "manifest validate takes one MANIFEST"},
		{args: []string{"manifest", "create", "--initrd", "i"}, code: ExitUsage, stderr: "--kernel is required"},
		{args: []string{"manifest", "create", "--kernel", "k", "--cmdline", "a", "--append", "b"}, code: ExitUsage, stderr: "give --cmdline or --append, not both"},
		{args: []string{"stage"}, code: ExitUsage, stderr: "give a MANIFEST, --kernel K --initrd I..., --default, --entry ID or --current"},
		{args: []string{"stage", "a.json", "b.json"}, code: ExitUsage, stderr: "one manifest at a time"},
		{args: []string{"stage", "--current", "a.json"}, code: ExitUsage, stderr: "give only one of"},
		{args: []string{"stage", "--current", "--reason", "cold"}, code: ExitUsage, stderr: `--reason "cold"`},
		{args: []string{"stage", "--current", "--reason", "bored"}, code: ExitUsage, stderr: `--reason "bored"`},
		{args: []string{"reboot", "--fallback", "never"}, code: ExitUsage, stderr: `--fallback "never"`},
		{args: []string{"reboot", "a.json", "b.json"}, code: ExitUsage, stderr: "one manifest at a time"},
		{args: []string{"daemon", "now"}, code: ExitUsage, stderr: "daemon takes no arguments"},
	} {
		t.Run(strings.Join(tc.args, " "), func(t *testing.T) {
			h := newHarness(t)
			var r result
			if tc.skipGlobal {
				var out, errw syncBuffer
				r.code = run(t.Context(), tc.args, &out, &errw, h.cfg)
				r.stdout, r.stderr = out.String(), errw.String()
			} else {
				r = h.run(tc.args...)
			}
			if r.code != tc.code {
				t.Errorf("exit %d, want %d", r.code, tc.code)
			}
			for _, c := range []struct{ name, got, want string }{{"stdout", r.stdout, tc.stdout}, {"stderr", r.stderr, tc.stderr}} {
				if c.want == "" && c.got != "" {
					t.Errorf("%s = %q, want nothing", c.name, c.got)
				}
				if !strings.Contains(c.got, c.want) {
					t.Errorf("%s = %q, want it to contain %q", c.name, c.got, c.want)
				}
			}
			if h.loader.Calls() != 0 || len(h.rebooter.Calls()) != 0 {
				t.Errorf("loader called %d times, rebooter %v", h.loader.Calls(), h.rebooter.Calls())
			}
		})
	}
}

// TestMainHelp runs Main itself on commands that touch nothing.
func TestMainHelp(t *testing.T) {
	var out, errw syncBuffer
	if code := Main(t.Context(), []string{"help"}, &out, &errw); code != ExitOK || !strings.HasPrefix(out.String(), "fastreboot: reboot Linux") || errw.String() != "" {
		t.Errorf("Main help: exit %d, stdout %q, stderr %q", code, out.String(), errw.String())
	}
	if code := Main(t.Context(), []string{"frob"}, &out, &errw); code != ExitUsage || !strings.Contains(errw.String(), "unknown command") {
		t.Errorf("Main frob: exit %d, stderr %q", code, errw.String())
	}
}

func TestParse(t *testing.T) {
	for _, tc := range []struct {
		args []string
		pos  []string
		json bool
	}{
		{[]string{"a", "--json", "b"}, []string{"a", "b"}, true},
		{[]string{"--json", "a"}, []string{"a"}, true},
		{[]string{"a", "--", "--json", "-b"}, []string{"a", "--json", "-b"}, false},
		{[]string{"--", "-a"}, []string{"-a"}, false},
		{nil, nil, false},
	} {
		fs := newFlags("t")
		asJSON := fs.Bool("json", false, "")
		pos, err := parse(fs, tc.args)
		if err != nil {
			t.Errorf("parse(%q): %v", tc.args, err)
			continue
		}
		if diff := cmp.Diff(tc.pos, pos); diff != "" || *asJSON != tc.json {
			t.Errorf("parse(%q): json %v, positional (-want +got):\n%s", tc.args, *asJSON, diff)
		}
	}
}

func TestManifestCreate(t *testing.T) {
	im, _ := testimage.Update()
	dir := t.TempDir()
	if _, _, err := im.Write(dir); err != nil {
		t.Fatal(err)
	}
	files := []string{"--kernel", filepath.Join(dir, "vmlinuz")}
	for _, b := range im.Initrds {
		files = append(files, "--initrd", filepath.Join(dir, b.Name))
	}
	// want is the manifest with sources made absolute (or relative to out).
	want := func(cmdline string, source func(name string) string) *bootimage.Manifest {
		m := im.Manifest()
		m.Cmdline = cmdline
		for i := range m.Modules {
			m.Modules[i].Source = source(m.Modules[i].Name)
		}
		return m
	}
	abs := func(name string) string { return filepath.Join(dir, name) }

	t.Run("to stdout", func(t *testing.T) {
		h := newHarness(t)
		r := h.run(append([]string{"manifest", "create", "--cmdline", im.Cmdline, "--name", "v1"}, files...)...)
		if r.code != ExitOK {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		got, err := bootimage.Parse(strings.NewReader(r.stdout), "stdout")
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(want(im.Cmdline, abs), got); diff != "" {
			t.Errorf("manifest (-want +got):\n%s", diff)
		}
	})

	t.Run("append to the running command line", func(t *testing.T) {
		h := newHarness(t)
		out := filepath.Join(dir, "m.json")
		r := h.run(append([]string{"manifest", "create", "--append", "fastreboot.gen=2", "--name", "v1", "-o", out, "--relative"}, files...)...)
		if r.code != ExitOK || r.stdout != "" {
			t.Fatalf("exit %d, stdout %q: %s", r.code, r.stdout, r.stderr)
		}
		got, err := bootimage.Load(out)
		if err != nil {
			t.Fatal(err)
		}
		// BOOT_IMAGE= is the boot loader's word: it is dropped.
		m := want("root=/dev/vda ro quiet fastreboot.gen=2", func(name string) string { return name })
		if diff := cmp.Diff(m, got); diff != "" {
			t.Errorf("manifest (-want +got):\n%s", diff)
		}
		// The relative manifest stages from its own directory.
		if r := h.run("--no-daemon", "stage", "--dry-run", out); r.code != ExitOK {
			t.Errorf("stage of the created manifest: exit %d: %s", r.code, r.stderr)
		}
	})

	// The kernel hands every word after "--" to init: appended words go
	// before it, or they would become init's arguments.
	t.Run("append before --", func(t *testing.T) {
		h := newHarness(t)
		h.writeRoot(map[string]string{"proc/cmdline": "BOOT_IMAGE=/boot/vmlinuz root=/dev/vda ro -- single x=1\n"})
		for _, tc := range []struct{ append, want string }{
			{"fastreboot.gen=2", "root=/dev/vda ro fastreboot.gen=2 -- single x=1"},
			{"a=1 -- emergency", "root=/dev/vda ro a=1 -- single x=1 emergency"},
		} {
			r := h.run(append([]string{"manifest", "create", "--append", tc.append}, files...)...)
			if r.code != ExitOK {
				t.Fatalf("exit %d: %s", r.code, r.stderr)
			}
			got, err := bootimage.Parse(strings.NewReader(r.stdout), "stdout")
			if err != nil {
				t.Fatal(err)
			}
			if got.Cmdline != tc.want {
				t.Errorf("--append %q: cmdline %q, want %q", tc.append, got.Cmdline, tc.want)
			}
		}
	})

	// -o replaces a symlink there; its target is neither followed nor
	// truncated.
	t.Run("symlink at -o", func(t *testing.T) {
		h := newHarness(t)
		d := t.TempDir()
		target := filepath.Join(d, "precious")
		if err := os.WriteFile(target, []byte("keep me\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out := filepath.Join(d, "m.json")
		if err := os.Symlink(target, out); err != nil {
			t.Fatal(err)
		}
		r := h.run(append([]string{"manifest", "create", "--cmdline", im.Cmdline, "-o", out}, files...)...)
		if r.code != ExitOK {
			t.Fatalf("exit %d: %s", r.code, r.stderr)
		}
		if b, err := os.ReadFile(target); err != nil || string(b) != "keep me\n" {
			t.Errorf("symlink target after manifest create -o: %q, %v; want it untouched", b, err)
		}
		fi, err := os.Lstat(out)
		if err != nil || !fi.Mode().IsRegular() {
			t.Fatalf("-o after manifest create: %v, %v; want a regular file", fi, err)
		}
		if _, err := bootimage.Load(out); err != nil {
			t.Errorf("the manifest written: %v", err)
		}
	})

	t.Run("bad input", func(t *testing.T) {
		notKernel := filepath.Join(t.TempDir(), "notakernel")
		if err := os.WriteFile(notKernel, []byte("MZ not a bzImage at all"), 0o644); err != nil {
			t.Fatal(err)
		}
		corrupt := filepath.Join(t.TempDir(), "vmlinuz-corrupt")
		if err := os.WriteFile(corrupt, testimage.CorruptPayload(testimage.Kernel(testimage.KernelOptions{PayloadBytes: 20000})), 0o644); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct {
			name string
			args []string
			want []string
		}{
			{"not a bzImage", []string{"--kernel", notKernel, "--cmdline", "x"}, []string{notKernel, bootimage.ErrNotBzImage.Error()}},
			{"corrupt compressed kernel", []string{"--kernel", corrupt, "--cmdline", "x"}, []string{corrupt, bootimage.ErrNotBzImage.Error(), "gzip compressed kernel", "corrupt"}},
			{"missing initrd", []string{"--kernel", abs("vmlinuz"), "--initrd", abs("nope.cpio"), "--cmdline", "x"}, []string{abs("nope.cpio"), "no such file"}},
			{"initrd is a kernel", []string{"--kernel", abs("vmlinuz"), "--initrd", abs("vmlinuz"), "--cmdline", "x"}, []string{abs("vmlinuz"), bootimage.ErrBadInitrd.Error()}},
		} {
			t.Run(tc.name, func(t *testing.T) {
				h := newHarness(t)
				r := h.run(append([]string{"manifest", "create"}, tc.args...)...)
				if r.code != ExitFailed {
					t.Errorf("exit %d, want %d", r.code, ExitFailed)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr %q does not contain %q", r.stderr, w)
					}
				}
			})
		}
	})
}

func TestManifestDiffValidate(t *testing.T) {
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	_, p2 := im2.WriteTemp(t)
	h := newHarness(t)

	var d bootimage.ManifestDiff
	decode(t, h.run("manifest", "diff", "--json", p1, p2), &d)
	if diff := cmp.Diff(bootimage.ManifestDiff{Changed: []string{"site.cpio"}}, d); diff != "" {
		t.Errorf("diff --json (-want +got):\n%s", diff)
	}
	if r := h.run("manifest", "diff", p1, p2); r.code != ExitOK || !strings.Contains(r.stdout, "site.cpio") {
		t.Errorf("diff: exit %d, stdout %q", r.code, r.stdout)
	}
	if r := h.run("manifest", "diff", p1, p1); r.code != ExitOK || r.stdout != "no difference\n" {
		t.Errorf("diff of a manifest with itself: exit %d, stdout %q", r.code, r.stdout)
	}

	type validation struct {
		Manifest string               `json:"manifest"`
		Modules  int                  `json:"modules"`
		Content  *modcache.SyncReport `json:"content,omitempty"`
	}
	var v validation
	decode(t, h.run("manifest", "validate", p1, "--json"), &v)
	if diff := cmp.Diff(validation{Manifest: p1, Modules: 4}, v); diff != "" {
		t.Errorf("validate --json (-want +got):\n%s", diff)
	}
	v = validation{}
	decode(t, h.run("manifest", "validate", "--content", "--json", "--", p1), &v)
	wantContent := &modcache.SyncReport{Misses: 4, BytesRead: testimage.TotalSize(m1), Read: []string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz", "site.cpio"}}
	if diff := cmp.Diff(validation{Manifest: p1, Modules: 4, Content: wantContent}, v); diff != "" {
		t.Errorf("validate --content --json (-want +got):\n%s", diff)
	}
	if r := h.run("manifest", "validate", "--content", p1); r.code != ExitOK || !strings.Contains(r.stdout, p1+": valid (4 modules, contents checked:") {
		t.Errorf("validate --content: exit %d, stdout %q", r.code, r.stdout)
	}
}

// badManifests writes manifests that fail to load and returns them by name,
// with what the error must say besides the file's path.
func badManifests(t *testing.T) map[string]struct{ path, want string } {
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	dir := filepath.Dir(p)
	write := func(name string, content []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, content, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	withCmdline := *m
	withCmdline.Cmdline = strings.Repeat("a", bootimage.MaxCmdline)
	long, err := jsonOf(&withCmdline)
	if err != nil {
		t.Fatal(err)
	}
	v2 := *m
	v2.Version = 2
	future, err := jsonOf(&v2)
	if err != nil {
		t.Fatal(err)
	}
	return map[string]struct{ path, want string }{
		"not JSON":        {write("garbage.json", []byte("{\"version\": 1,")), bootimage.ErrInvalid.Error()},
		"unknown version": {write("future.json", future), "version 2"},
		"cmdline of 2048": {write("long.json", long), bootimage.ErrCmdlineTooLong.Error()},
		"missing":         {filepath.Join(dir, "absent.json"), "no such file"},
		"no kernel":       {write("empty.json", []byte(`{"version": 1, "cmdline": "", "modules": []}`)), "no kernel module"},
	}
}

func TestBadManifests(t *testing.T) {
	for name, bad := range badManifests(t) {
		for _, cmd := range [][]string{
			{"manifest", "validate", bad.path},
			{"manifest", "diff", bad.path, bad.path},
			{"--no-daemon", "cache", "sync", bad.path},
			{"--no-daemon", "stage", bad.path},
		} {
			t.Run(name+"/"+strings.Join(cmd[:2], " "), func(t *testing.T) {
				h := newHarness(t)
				r := h.run(cmd...)
				if r.code != ExitFailed {
					t.Errorf("exit %d, want %d", r.code, ExitFailed)
				}
				if !strings.Contains(r.stderr, bad.path) || !strings.Contains(r.stderr, bad.want) {
					t.Errorf("stderr %q does not name %s and %q", r.stderr, bad.path, bad.want)
				}
				if h.loader.Calls() != 0 {
					t.Errorf("loader called")
				}
			})
		}
	}
}

func TestStageNoDaemon(t *testing.T) {
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	h := newHarness(t)

	r := h.run("--no-daemon", "stage", p1)
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "staged v1 for generation 2 (update): loaded in") || !strings.Contains(r.stderr, "staging "+p1) {
		t.Errorf("stdout %q, stderr %q", r.stdout, r.stderr)
	}
	if h.loader.Calls() != 1 || h.loader.cmdline != m1.Cmdline {
		t.Errorf("loader: %d calls, cmdline %q", h.loader.Calls(), h.loader.cmdline)
	}

	// Each command without a daemon has a cache of its own: everything
	// is read again.
	var rep fastreboot.StageReport
	decode(t, h.run("--no-daemon", "stage", "--json", "--reason", "manual", p1), &rep)
	want := stageSummary{
		Manifest: "v1", KernelSHA256: m1.Kernel().SHA256, CmdlineBytes: len(m1.Cmdline), Generation: 2,
		Reason: fastreboot.ReasonManual, Loaded: true, CarriedModules: 4, CarriedBytes: testimage.TotalSize(m1),
		Sync: modcache.SyncReport{Misses: 4, BytesRead: testimage.TotalSize(m1), Read: []string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz", "site.cpio"}},
	}
	if diff := cmp.Diff(want, summarize(rep)); diff != "" {
		t.Errorf("stage --json (-want +got):\n%s", diff)
	}
	if h.loader.Calls() != 2 {
		t.Errorf("loader called %d times, want 2", h.loader.Calls())
	}

	// The image given by its files, dry run, without carrying the cache.
	rep = fastreboot.StageReport{}
	args := []string{"--no-daemon", "stage", "--json", "--dry-run", "--no-carry", "--kernel", filepath.Join(filepath.Dir(p1), "vmlinuz"), "--append", "extra=1"}
	for _, b := range im1.Initrds {
		args = append(args, "--initrd", filepath.Join(filepath.Dir(p1), b.Name))
	}
	decode(t, h.run(args...), &rep)
	want.Manifest, want.Reason, want.Loaded, want.DryRun = "", fastreboot.ReasonUpdate, false, true
	want.CarriedModules, want.CarriedBytes = 0, 0
	want.CmdlineBytes = len("root=/dev/vda ro quiet extra=1")
	if diff := cmp.Diff(want, summarize(rep)); diff != "" {
		t.Errorf("stage --kernel --initrd --dry-run --no-carry (-want +got):\n%s", diff)
	}
	if h.loader.Calls() != 2 {
		t.Errorf("a dry run called the loader")
	}

	// No daemon holds the cache: the running image cannot come from it.
	if err := fastreboot.SaveState(h.stateDir, &fastreboot.State{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: m1}); err != nil {
		t.Fatal(err)
	}
	r = h.run("--no-daemon", "stage", "--current")
	if r.code != ExitFailed || !strings.Contains(r.stderr, agent.ErrNoStorage.Error()) {
		t.Errorf("stage --current without a daemon: exit %d, stderr %q", r.code, r.stderr)
	}
}

// stageSummary is the part of a StageReport these tests check: what was
// staged and read, not sizes of the assembled image or durations.
type stageSummary struct {
	Manifest, KernelSHA256   string
	CmdlineBytes, Generation int
	Reason                   fastreboot.Reason
	DryRun, Loaded           bool
	Sync                     modcache.SyncReport
	CarriedModules           int
	CarriedBytes             int64
}

func summarize(r fastreboot.StageReport) stageSummary {
	return stageSummary{
		Manifest: r.Manifest, KernelSHA256: r.KernelSHA256, CmdlineBytes: r.CmdlineBytes, Generation: r.Generation,
		Reason: r.Reason, DryRun: r.DryRun, Loaded: r.Loaded, Sync: r.Sync,
		CarriedModules: r.CarriedModules, CarriedBytes: r.CarriedBytes,
	}
}

// TestStageBadInputs: every bad input fails with exit 1 and a message
// naming it, before anything is loaded.
func TestStageBadInputs(t *testing.T) {
	im, _ := testimage.Update()
	base := func(t *testing.T, change func(dir string, m *bootimage.Manifest)) string {
		m, p := im.WriteTemp(t)
		change(filepath.Dir(p), m)
		b, err := jsonOf(m)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	rewrite := func(t *testing.T, path string, data []byte) {
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, tc := range []struct {
		name string
		// args builds the command line arguments after "stage".
		args func(t *testing.T) []string
		want []string
		// kind, when set, is among the --json error's kinds.
		kind string
	}{
		{
			name: "kernel is not a bzImage",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					junk := testimage.Bytes(4096, 7)
					rewrite(t, filepath.Join(dir, "vmlinuz"), junk)
					m.Modules[0].Size, m.Modules[0].SHA256 = int64(len(junk)), testimage.Digest(junk)
				})}
			},
			want: []string{`"vmlinuz"`, bootimage.ErrNotBzImage.Error()},
			kind: "bootimage.not_bzimage",
		},
		{
			name: "kernel's compressed payload is corrupt",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					k := testimage.CorruptPayload(im.Kernel.Data)
					rewrite(t, filepath.Join(dir, "vmlinuz"), k)
					m.Modules[0].SHA256 = testimage.Digest(k)
				})}
			},
			want: []string{`"vmlinuz"`, "gzip compressed kernel", "corrupt"},
			kind: "bootimage.not_bzimage",
		},
		{
			name: "kernel file's compressed payload is corrupt",
			args: func(t *testing.T) []string {
				p := filepath.Join(t.TempDir(), "vmlinuz")
				rewrite(t, p, testimage.CorruptPayload(im.Kernel.Data))
				return []string{"--kernel", p, "--cmdline", "quiet"}
			},
			want: []string{"vmlinuz", "gzip compressed kernel", "corrupt"},
		},
		{
			name: "piece does not match its digest",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					b := append([]byte(nil), im.Initrds[1].Data...)
					b[len(b)/2] ^= 1
					rewrite(t, filepath.Join(dir, "kmods.cpio.xz"), b)
				})}
			},
			want: []string{`"kmods.cpio.xz"`, modcache.ErrDigestMismatch.Error()},
			kind: "modcache.digest_mismatch",
		},
		{
			name: "piece missing",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					os.Remove(filepath.Join(dir, "site.cpio"))
				})}
			},
			want: []string{`"site.cpio"`, "site.cpio: no such file"},
		},
		{
			name: "manifest missing",
			args: func(t *testing.T) []string { return []string{filepath.Join(t.TempDir(), "gone.json")} },
			want: []string{"gone.json: no such file"},
		},
		{
			name: "cmdline of 2048 bytes in the manifest",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) { m.Cmdline = strings.Repeat("x", 2048) })}
			},
			want: []string{"manifest.json", bootimage.ErrCmdlineTooLong.Error(), "2048 bytes"},
		},
		{
			name: "cmdline of 2048 bytes on the command line",
			args: func(t *testing.T) []string {
				m, p := im.WriteTemp(t)
				return []string{"--kernel", filepath.Join(filepath.Dir(p), m.Kernel().Source), "--cmdline", strings.Repeat("x", 2048)}
			},
			want: []string{bootimage.ErrCmdlineTooLong.Error(), "2048 bytes"},
		},
		{
			name: "unknown schema version",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) { m.Version = 7 })}
			},
			want: []string{"manifest.json", bootimage.ErrSchema.Error(), "version 7"},
		},
		{
			name: "kernel file is not a bzImage",
			args: func(t *testing.T) []string {
				p := filepath.Join(t.TempDir(), "bzImage")
				rewrite(t, p, []byte("#!/bin/sh\n"))
				return []string{"--kernel", p, "--cmdline", "quiet"}
			},
			want: []string{"bzImage", bootimage.ErrNotBzImage.Error()},
		},
		{
			name: "piece is a FIFO",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					p := filepath.Join(dir, "site.cpio")
					os.Remove(p)
					if err := syscall.Mkfifo(p, 0o600); err != nil {
						t.Fatal(err)
					}
				})}
			},
			want: []string{`"site.cpio"`, "site.cpio: is a FIFO"},
			kind: "bootimage.not_regular_file",
		},
		{
			name: "piece is a device of 1 GiB",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) {
					m.Modules[3].Source, m.Modules[3].Size = "/dev/zero", 1<<30
				})}
			},
			want: []string{`"site.cpio"`, "/dev/zero: is a character device"},
			kind: "bootimage.not_regular_file",
		},
		{
			name: "piece smaller than the manifest says",
			args: func(t *testing.T) []string {
				return []string{base(t, func(dir string, m *bootimage.Manifest) { m.Modules[3].Size = 1 << 30 })}
			},
			want: []string{`"site.cpio"`, fmt.Sprintf("size %d, manifest says 1073741824", len(im.Initrds[2].Data))},
			kind: "modcache.size_mismatch",
		},
		{
			name: "manifest is a FIFO",
			args: func(t *testing.T) []string {
				p := filepath.Join(t.TempDir(), "m.json")
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{p}
			},
			want: []string{"m.json: is a FIFO"},
			kind: "bootimage.not_regular_file",
		},
		{
			name: "kernel file is a FIFO",
			args: func(t *testing.T) []string {
				p := filepath.Join(t.TempDir(), "vmlinuz")
				if err := syscall.Mkfifo(p, 0o600); err != nil {
					t.Fatal(err)
				}
				return []string{"--kernel", p, "--cmdline", "quiet"}
			},
			want: []string{"vmlinuz: is a FIFO"},
		},
		{
			name: "initrd file is a device",
			args: func(t *testing.T) []string {
				m, p := im.WriteTemp(t)
				return []string{"--kernel", filepath.Join(filepath.Dir(p), m.Kernel().Source), "--initrd", "/dev/zero", "--cmdline", "quiet"}
			},
			want: []string{"/dev/zero: is a character device"},
		},
		{
			name: "kernel file missing",
			args: func(t *testing.T) []string {
				return []string{"--kernel", filepath.Join(t.TempDir(), "vmlinuz-none"), "--cmdline", "quiet"}
			},
			want: []string{"vmlinuz-none: no such file"},
		},
	} {
		for _, daemon := range []bool{false, true} {
			name := tc.name + "/no daemon"
			if daemon {
				name = tc.name + "/daemon"
			}
			t.Run(name, func(t *testing.T) {
				h := newHarness(t)
				var global []string
				if daemon {
					h.startDaemon()
				} else {
					global = []string{"--no-daemon"}
				}
				args := tc.args(t)
				r := runWithin(t, h, append(append(global, "stage"), args...)...)
				if r.code != ExitFailed {
					t.Errorf("exit %d, want %d", r.code, ExitFailed)
				}
				for _, w := range tc.want {
					if !strings.Contains(r.stderr, w) {
						t.Errorf("stderr does not contain %q", w)
					}
				}
				// The same failure under --json: one JSON document on
				// stdout, the error, with the kinds it wraps.
				r = runWithin(t, h, append(append(append(global, "stage"), args...), "--json")...)
				var rep ErrorV1
				decodeStdout(t, r, &rep)
				if r.code != ExitFailed || rep.Error.ExitCode != ExitFailed || rep.Error.Command != "stage" {
					t.Errorf("--json: exit %d, error %+v, want exit %d for stage", r.code, rep.Error, ExitFailed)
				}
				for _, w := range tc.want {
					if !strings.Contains(rep.Error.Message, w) {
						t.Errorf("--json: message %q does not contain %q", rep.Error.Message, w)
					}
				}
				if tc.kind != "" && !slices.Contains(rep.Error.Kinds, tc.kind) {
					t.Errorf("--json: kinds %v, want %s among them", rep.Error.Kinds, tc.kind)
				}
				if h.loader.Calls() != 0 {
					t.Errorf("the loader was called %d times", h.loader.Calls())
				}
			})
		}
	}
}

// runWithin is h.run that fails the test if the command has not returned
// within 30 s (a source that blocks, such as a FIFO, would hang it).
func runWithin(t *testing.T, h *harness, args ...string) result {
	t.Helper()
	done := make(chan result, 1)
	go func() { done <- h.run(args...) }()
	select {
	case r := <-done:
		return r
	case <-time.After(30 * time.Second):
		t.Fatalf("fastreboot %s did not return in 30 s", strings.Join(args, " "))
		return result{}
	}
}

// TestJSONUsageError: a bad command line under --json is a JSON error too
// (exit 2), and a --json after "--" asks for nothing.
func TestJSONUsageError(t *testing.T) {
	h := newHarness(t)
	r := h.run("stage", "a.json", "b.json", "--json")
	var rep ErrorV1
	decodeStdout(t, r, &rep)
	if r.code != ExitUsage || rep.Error.ExitCode != ExitUsage || rep.Error.Command != "stage" || !strings.HasPrefix(rep.Error.Message, "one manifest at a time") {
		t.Errorf("exit %d, error %+v, want a stage usage error (exit %d): one manifest at a time", r.code, rep.Error, ExitUsage)
	}
	if r = h.run("stage", "--", "--json"); strings.Contains(r.stdout, `"error"`) {
		t.Errorf("a positional --json after -- asked for JSON: stdout %q", r.stdout)
	}
}

// TestDaemon drives the daemon like the QEMU story: sync the running image,
// stage the update (reading only what changed), restage the running image
// from the cache, and look at it with status and cache commands.
func TestDaemon(t *testing.T) {
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	h := newHarness(t)
	h.startDaemon()

	var sr modcache.SyncReport
	decode(t, h.run("cache", "sync", "--json", p1), &sr)
	if diff := cmp.Diff(modcache.SyncReport{Misses: 4, BytesRead: testimage.TotalSize(m1), Read: []string{"vmlinuz", "base.cpio.gz", "kmods.cpio.xz", "site.cpio"}}, sr); diff != "" {
		t.Errorf("cache sync --json (-want +got):\n%s", diff)
	}
	if r := h.run("cache", "sync", p1); r.code != ExitOK || !strings.Contains(r.stdout, "read 0 B from storage (0 modules: ), 4 already cached") {
		t.Errorf("second cache sync: exit %d, stdout %q", r.code, r.stdout)
	}

	var rep fastreboot.StageReport
	decode(t, h.run("stage", p2, "--json"), &rep)
	site, _ := m2.Module("site.cpio")
	if diff := cmp.Diff(modcache.SyncReport{Hits: 3, Misses: 1, BytesRead: site.Size, Read: []string{"site.cpio"}}, rep.Sync); diff != "" {
		t.Errorf("stage v2 through the daemon read (-want +got):\n%s", diff)
	}
	if !rep.Loaded || h.loader.Calls() != 1 {
		t.Errorf("loaded %v, loader calls %d", rep.Loaded, h.loader.Calls())
	}

	// Storage goes away; the running image is restaged from the cache.
	os.RemoveAll(filepath.Dir(p1))
	r := h.run("stage", "--current", "--reason", "manual")
	if r.code != ExitOK || !strings.Contains(r.stdout, "staged v1 for generation 2 (manual)") ||
		!strings.Contains(r.stdout, "read from storage: 0 B (0 modules: ); from cache: 4 modules") {
		t.Errorf("stage --current: exit %d, stdout %q", r.code, r.stdout)
	}

	var ls agent.CacheListing
	decode(t, h.run("cache", "ls", "--json"), &ls)
	if ls.Stats.Modules != 5 || len(ls.Modules) != 5 || ls.Stats.BytesHeld != testimage.TotalSize(m1)+site.Size {
		t.Errorf("cache ls --json: %+v", ls)
	}
	var v modcache.VerifyReport
	decode(t, h.run("cache", "verify", "--json"), &v)
	if diff := cmp.Diff(modcache.VerifyReport{Modules: 5, Bytes: ls.Stats.BytesHeld}, v); diff != "" {
		t.Errorf("cache verify --json (-want +got):\n%s", diff)
	}
	if r := h.run("cache", "verify"); r.code != ExitOK || r.stdout != "verified 5 modules ("+human(ls.Stats.BytesHeld)+"): all digests match\n" {
		t.Errorf("cache verify: exit %d, stdout %q", r.code, r.stdout)
	}
	// v1 runs and was staged last: v2's site piece goes.
	var ev modcache.EvictReport
	decode(t, h.run("cache", "evict", "--json"), &ev)
	if diff := cmp.Diff(modcache.EvictReport{Modules: 1, Bytes: site.Size}, ev); diff != "" {
		t.Errorf("cache evict --json (-want +got):\n%s", diff)
	}

	var st statusReport
	decode(t, h.run("status", "--json"), &st)
	if st.Agent == nil || !st.Agent.Daemon || st.Agent.Current != "v1" || st.Agent.Staged == nil || st.Agent.Staged.Manifest != "v1" ||
		st.Agent.Cache.Modules != 4 {
		t.Errorf("status --json: agent %+v", st.Agent)
	}
	if r := h.run("status"); r.code != ExitOK || !strings.Contains(r.stdout, "cache (daemon pid") || !strings.Contains(r.stdout, "staged: v1 for generation 2 (manual)") {
		t.Errorf("status: exit %d, stdout %q", r.code, r.stdout)
	}
}

func TestCacheNoDaemon(t *testing.T) {
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	h := newHarness(t)
	var ls agent.CacheListing
	decode(t, h.run("--no-daemon", "cache", "ls", "--json"), &ls)
	if diff := cmp.Diff(agent.CacheListing{}, ls, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("cache ls --json of a new cache (-want +got):\n%s", diff)
	}
	// A sync without a daemon would keep nothing: it is refused, and
	// never reports "synced".
	for _, args := range [][]string{{"--no-daemon", "cache", "sync", p1}, {"cache", "sync", p1}} {
		r := h.run(args...)
		if r.code != ExitFailed || strings.Contains(r.stdout, "synced") ||
			!strings.Contains(r.stderr, "nothing synced: the cache lives in `fastreboot daemon`'s memory") || !strings.Contains(r.stderr, p1) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, r.code, r.stdout, r.stderr)
		}
	}
	var eb ErrorV1
	decodeStdout(t, h.run("--no-daemon", "cache", "sync", p1, "--json"), &eb)
	if !slices.Contains(eb.Error.Kinds, "agent.no_daemon") {
		t.Errorf("cache sync --json without a daemon: %+v, want kind agent.no_daemon", eb)
	}

	var v modcache.VerifyReport
	decode(t, h.run("--no-daemon", "cache", "verify", "--json"), &v)
	if diff := cmp.Diff(modcache.VerifyReport{}, v); diff != "" {
		t.Errorf("cache verify --json of a new cache (-want +got):\n%s", diff)
	}
	if r := h.run("--no-daemon", "cache", "evict"); r.code != ExitFailed || !strings.Contains(r.stderr, "refusing to empty the cache") {
		t.Errorf("cache evict: exit %d, stderr %q", r.code, r.stderr)
	}
	// Without --no-daemon and without a daemon, the command falls back to
	// its own cache.
	if r := h.run("cache", "ls"); r.code != ExitOK || r.stdout != "0 modules, 0 B held (+0 B overhead)\n" {
		t.Errorf("cache ls: exit %d, stdout %q", r.code, r.stdout)
	}
}

// TestFileOf: the reboot commands drain the console through fileOf, which
// must see through the writer run wraps stdout in (the --json error
// accounting); when it did not, the last line before a kexec was lost.
func TestFileOf(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stdout")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := fileOf(&countingWriter{w: f}); got != f {
		t.Errorf("fileOf(countingWriter{file}) = %v, want the file", got)
	}
	if got := fileOf(f); got != f {
		t.Errorf("fileOf(file) = %v, want the file", got)
	}
	var b syncBuffer
	if got := fileOf(&countingWriter{w: &b}); got != nil {
		t.Errorf("fileOf(countingWriter{buffer}) = %v, want nil", got)
	}
}
