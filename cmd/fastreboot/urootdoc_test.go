package main

import (
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// harnessStrings returns the quoted strings of the Go declaration
// `var NAME = []string{...}` in a qemu-tests source file, read as text (the
// root module does not import qemu-tests, a module of its own).
func harnessStrings(t *testing.T, file, name string) []string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?s)\bvar ` + name + ` = \[\]string\{(.*?)\}`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no `var %s = []string{...}`", file, name)
	}
	var out []string
	for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllSubmatch(m[1], -1) {
		out = append(out, string(q[1]))
	}
	if len(out) == 0 {
		t.Fatalf("%s: %s lists nothing", file, name)
	}
	return out
}

// TestURootDoc checks that docs/u-root.md's mkuimage recipe builds what the
// harness builds: the same u-root commands (DefaultCoreCommands), build tags
// (DefaultBuildTags), init, shell and uinit, and the same disk modules
// (StorageModules), and that the README links it.
func TestURootDoc(t *testing.T) {
	root := repoRoot(t)
	harness := filepath.Join(root, "qemu-tests", "harness")
	core := harnessStrings(t, filepath.Join(harness, "base.go"), "DefaultCoreCommands")
	tags := harnessStrings(t, filepath.Join(harness, "base.go"), "DefaultBuildTags")
	mods := harnessStrings(t, filepath.Join(harness, "guest.go"), "StorageModules")

	doc, err := os.ReadFile(filepath.Join(root, "docs", "u-root.md"))
	if err != nil {
		t.Fatal(err)
	}
	_, after, ok := strings.Cut(string(doc), "<!-- mkuimage -->")
	if !ok {
		t.Fatal(`docs/u-root.md has no "<!-- mkuimage -->" marker before its recipe`)
	}
	parts := strings.SplitN(after, "```", 3)
	if len(parts) < 3 {
		t.Fatal("docs/u-root.md: no fenced block after the mkuimage marker")
	}
	recipe := parts[1]
	// The command, its continuation lines joined.
	_, cmdline, ok := strings.Cut(recipe, "\nmkuimage ")
	if !ok {
		t.Fatal("docs/u-root.md's recipe runs no mkuimage")
	}
	cmdline = strings.ReplaceAll(cmdline, "\\\n", " ")
	cmdline, _, _ = strings.Cut(cmdline, "\n")

	var got []string
	for _, m := range regexp.MustCompile(`github\.com/u-root/u-root/cmds/core/(\{[^}]*\}|[a-z0-9_]+)`).FindAllStringSubmatch(cmdline, -1) {
		if strings.HasPrefix(m[1], "{") {
			got = append(got, strings.Split(strings.Trim(m[1], "{}"), ",")...)
		} else {
			got = append(got, m[1])
		}
	}
	want := append([]string(nil), core...)
	sort.Strings(want)
	sort.Strings(got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("docs/u-root.md's mkuimage names other u-root commands than the harness's DefaultCoreCommands (-harness +doc):\n%s", diff)
	}
	words := strings.Fields(cmdline)
	has := func(w string) bool {
		for _, x := range words {
			if x == w {
				return true
			}
		}
		return false
	}
	for _, w := range []string{"-initcmd=init", "-defaultsh=gosh", "-uinitcmd=/bin/frguest", "-skip-ldd"} {
		if !has(w) {
			t.Errorf("docs/u-root.md's mkuimage does not pass %s (the harness's uimage.Create options)", w)
		}
	}
	for _, tag := range tags {
		if !has(tag) || !strings.Contains(cmdline, "-tags "+tag) {
			t.Errorf("docs/u-root.md's mkuimage does not pass -tags %s (DefaultBuildTags)", tag)
		}
	}
	// The modules the disk needs: modprobe's line in the recipe.
	_, probe, ok := strings.Cut(recipe, "--show-depends ")
	if !ok {
		t.Fatal("docs/u-root.md's recipe resolves no modules (modprobe --show-depends)")
	}
	probe, _, _ = strings.Cut(probe, " |")
	if diff := cmp.Diff(mods, strings.Fields(probe)); diff != "" {
		t.Errorf("docs/u-root.md's modprobe names other modules than the harness's StorageModules (-harness +doc):\n%s", diff)
	}

	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "(docs/u-root.md)") {
		t.Error("README.md does not link docs/u-root.md")
	}
}
