package main

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// The docs describe the tree: docs/architecture.md lists the packages and
// their imports, the README's layout table its directories. These tests
// fail when a package moves and the docs do not follow.

const module = "github.com/fastreboot/fastreboot"

// repoRoot is the module's root, two levels above this package.
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		t.Fatalf("module root: %v", err)
	}
	return root
}

// treeImports returns every package of the root module (qemu-tests
// excluded: test code, and a module of its own) with the packages of the
// module it imports directly, outside test files, for linux/amd64.
func treeImports(t *testing.T, root string) map[string][]string {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("go command not on PATH: %v", err)
	}
	cmd := exec.Command("go", "list", "-f", `{{.ImportPath}}{{range .Imports}} {{.}}{{end}}`, "./...")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64")
	out, err := cmd.Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	got := map[string][]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(line)
		pkg, ok := strings.CutPrefix(f[0], module+"/")
		if !ok || strings.HasPrefix(pkg, "qemu-tests") {
			continue
		}
		deps := []string{}
		for _, imp := range f[1:] {
			if d, ok := strings.CutPrefix(imp, module+"/"); ok {
				deps = append(deps, d)
			}
		}
		sort.Strings(deps)
		got[pkg] = deps
	}
	return got
}

// docImports reads the import diagram of docs/architecture.md: the fenced
// block after "<!-- imports -->", one "pkg -> dep, dep" line per package.
func docImports(t *testing.T, doc string) map[string][]string {
	t.Helper()
	_, after, ok := strings.Cut(doc, "<!-- imports -->")
	if !ok {
		t.Fatal(`docs/architecture.md has no "<!-- imports -->" marker before its diagram`)
	}
	parts := strings.SplitN(after, "```", 3)
	if len(parts) < 3 {
		t.Fatal("docs/architecture.md: no fenced block after the imports marker")
	}
	got := map[string][]string{}
	for _, line := range strings.Split(parts[1], "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		pkg, deps, _ := strings.Cut(line, "->")
		pkg = strings.TrimSpace(pkg)
		if _, dup := got[pkg]; dup {
			t.Errorf("docs/architecture.md: %s has two lines in the diagram", pkg)
		}
		list := []string{}
		for _, d := range strings.Split(deps, ",") {
			if d = strings.TrimSpace(d); d != "" {
				list = append(list, d)
			}
		}
		sort.Strings(list)
		got[pkg] = list
	}
	return got
}

var docPackageRE = regexp.MustCompile("(?m)^- `([a-z0-9/_-]+)`: \\S")

func TestArchitectureDoc(t *testing.T) {
	root := repoRoot(t)
	b, err := os.ReadFile(filepath.Join(root, "docs", "architecture.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	tree := treeImports(t, root)
	if diff := cmp.Diff(tree, docImports(t, doc)); diff != "" {
		t.Errorf("docs/architecture.md's import diagram does not match the tree (-tree +doc):\n%s", diff)
	}
	var listed []string
	for _, m := range docPackageRE.FindAllStringSubmatch(doc, -1) {
		listed = append(listed, m[1])
	}
	var pkgs []string
	for p := range tree {
		pkgs = append(pkgs, p)
	}
	sort.Strings(pkgs)
	sort.Strings(listed)
	if diff := cmp.Diff(pkgs, listed); diff != "" {
		t.Errorf("docs/architecture.md's package list does not match the tree (-tree +doc):\n%s", diff)
	}
	for p, deps := range tree {
		if !strings.HasPrefix(p, "pkg/") {
			continue
		}
		for _, d := range deps {
			if d == "internal/cli" || d == "internal/agent" {
				t.Errorf("library package %s imports %s", p, d)
			}
		}
	}
}

// readmeLayout returns the paths in the first column of the README's
// layout table (the table under "## Layout"; a cell may name several).
func readmeLayout(t *testing.T, root string) []string {
	t.Helper()
	f, err := os.Open(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var paths []string
	in := false
	code := regexp.MustCompile("`([^`]+)`")
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, "## ") {
			in = line == "## Layout"
			continue
		}
		if !in || !strings.HasPrefix(line, "|") {
			continue
		}
		cells := strings.Split(line, "|")
		if len(cells) < 3 {
			continue
		}
		for _, m := range code.FindAllStringSubmatch(cells[1], -1) {
			paths = append(paths, m[1])
		}
	}
	if err := s.Err(); err != nil {
		t.Fatal(err)
	}
	if len(paths) == 0 {
		t.Fatal(`README.md: no table under "## Layout"`)
	}
	return paths
}

// TestReadmeLayout checks that the README's layout table lists exactly the
// directories of the tree: every package directory of the root module, and
// every top-level directory without packages (scripts/, docs/, testdata/,
// qemu-tests/); an entry ending in "/" stands for everything under it.
func TestReadmeLayout(t *testing.T) {
	root := repoRoot(t)
	listed := readmeLayout(t, root)
	want := map[string]bool{}
	for p := range treeImports(t, root) {
		want[p] = true
	}
	top, err := os.ReadDir(root)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range top {
		name := d.Name()
		if !d.IsDir() || strings.HasPrefix(name, ".") {
			continue
		}
		hasPkg := false
		for p := range want {
			if strings.HasPrefix(p, name+"/") {
				hasPkg = true
			}
		}
		if !hasPkg {
			want[name+"/"] = true
		}
	}
	covered := func(p string) bool {
		for _, l := range listed {
			if l == p || (strings.HasSuffix(l, "/") && strings.HasPrefix(p, l)) {
				return true
			}
		}
		return false
	}
	var missing []string
	for p := range want {
		if !covered(p) {
			missing = append(missing, p)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("README.md's layout table does not list %q", missing)
	}
	for _, l := range listed {
		fi, err := os.Stat(filepath.Join(root, filepath.FromSlash(strings.TrimSuffix(l, "/"))))
		if err != nil || !fi.IsDir() {
			t.Errorf("README.md's layout table lists %q, which is not a directory of the tree", l)
			continue
		}
		if !want[l] && !slices.ContainsFunc(listed, func(o string) bool { return o != l && strings.HasSuffix(o, "/") && strings.HasPrefix(l, o) }) {
			t.Errorf("README.md's layout table lists %q, which is neither a package of the module nor a top-level directory without packages", l)
		}
	}
}

// TestStandsAlone checks that no code or doc cites a design file outside
// the repository: the facts the code relies on are written here
// (docs/kernel-facts.md, docs/architecture.md, the doc comments).
func TestStandsAlone(t *testing.T) {
	root := repoRoot(t)
	outside := regexp.MustCompile(`\.\.` + `/shared|shared` + `/design|\bFIND` + `INGS\b|\bARCHITECTURE` + `\.md|design` + `/[A-Z]+\.md`)
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if strings.HasPrefix(d.Name(), ".") && path != root && d.Name() != ".ci" {
				return filepath.SkipDir
			}
			return nil
		}
		switch filepath.Ext(path) {
		case ".go", ".md", ".sh", ".txt", ".yml", ".yaml", ".toml", "":
		default:
			return nil
		}
		if fi, err := d.Info(); err != nil || fi.Size() > 1<<20 {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for i, line := range strings.Split(string(b), "\n") {
			if outside.MatchString(line) {
				rel, _ := filepath.Rel(root, path)
				t.Errorf("%s:%d cites a file outside the repository (write the fact into docs/kernel-facts.md or the comment): %s", rel, i+1, strings.TrimSpace(line))
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestReadmeGoVersion checks that the Go version the README asks for is
// go.mod's (the go line, without the patch release), and that it names no
// other "Go 1.N".
func TestReadmeGoVersion(t *testing.T) {
	root := repoRoot(t)
	mod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^go (1\.\d+)(\.\d+)?$`).FindSubmatch(mod)
	if m == nil {
		t.Fatal("go.mod: no go line")
	}
	want := string(m[1])
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, v := range regexp.MustCompile(`\bGo (1\.\d+)`).FindAllSubmatch(readme, -1) {
		if string(v[1]) != want {
			t.Errorf("README.md asks for Go %s, go.mod for %s", v[1], want)
		}
		found = true
	}
	if !found {
		t.Errorf("README.md does not say which Go it needs (go.mod: %s)", want)
	}
}
