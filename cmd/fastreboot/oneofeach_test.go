package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// The tree has one of each: one wrapper per kexec-related system call, one
// definition of each shared error kind, one bzImage setup-header reader,
// one atomic file writer, one kernel command-line splitter, one range type.
// TestOneOfEach is the "grep" that proves it: it parses every non-test .go
// file of the tree (qemu-tests included) and fails when a second one
// appears, naming the file and line.

// goFile is one parsed non-test Go file of the tree.
type goFile struct {
	rel  string // slash-separated, relative to the repository root
	dir  string // its directory, slash-separated
	fset *token.FileSet
	f    *ast.File
}

func (g goFile) pos(p token.Pos) string {
	return fmt.Sprintf("%s:%d", g.rel, g.fset.Position(p).Line)
}

// imports returns the local name under which g imports path ("" if not).
func (g goFile) imports(path string) string {
	for _, is := range g.f.Imports {
		if p, _ := strconv.Unquote(is.Path.Value); p == path {
			if is.Name != nil {
				return is.Name.Name
			}
			return path[strings.LastIndex(path, "/")+1:]
		}
	}
	return ""
}

// treeGoFiles parses every .go file under root that is not a test file,
// skipping hidden directories and testdata.
func treeGoFiles(t *testing.T, root string) []goFile {
	t.Helper()
	var out []goFile
	err := filepath.WalkDir(root, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		out = append(out, goFile{rel: rel, dir: pathDir(rel), fset: fset, f: f})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 50 {
		t.Fatalf("found only %d Go files under %s: the walk is broken", len(out), root)
	}
	return out
}

func pathDir(rel string) string {
	if i := strings.LastIndex(rel, "/"); i >= 0 {
		return rel[:i]
	}
	return "."
}

// oneOfEachViolations returns, sorted, what breaks the one-of-each rule in
// files: each entry names the rule, the file and the line.
func oneOfEachViolations(files []goFile) []string {
	var bad []string
	report := func(g goFile, p token.Pos, format string, args ...any) {
		bad = append(bad, g.pos(p)+": "+fmt.Sprintf(format, args...))
	}
	const kexecsysDir = "internal/kexecsys"
	const kexecsysPath = module + "/" + kexecsysDir

	// The system calls kexecsys wraps, as golang.org/x/sys/unix and
	// syscall name them, and u-root's kexec package.
	syscalls := map[string]bool{
		"SYS_KEXEC_FILE_LOAD": true, "SYS_KEXEC_LOAD": true, "KexecFileLoad": true,
		"SYS_MEMFD_CREATE": true, "MemfdCreate": true, "F_ADD_SEALS": true, "F_GET_SEALS": true,
		"SYS_COPY_FILE_RANGE": true, "CopyFileRange": true,
		"SYS_REBOOT": true, "Reboot": true, "LINUX_REBOOT_CMD_KEXEC": true,
	}
	// u-root's kexec package: its memory placement is fine anywhere, its
	// system calls only in kexecsys.
	const urootKexec = "github.com/u-root/u-root/pkg/boot/kexec"
	urootCalls := map[string]bool{"FileLoad": true, "Load": true, "Reboot": true}

	// The shared error kinds: the Err* variables kexecsys defines.
	kinds := map[string]bool{}
	for _, g := range files {
		if g.dir != kexecsysDir {
			continue
		}
		for _, d := range g.f.Decls {
			if gd, ok := d.(*ast.GenDecl); ok && gd.Tok == token.VAR {
				for _, s := range gd.Specs {
					for _, n := range s.(*ast.ValueSpec).Names {
						if strings.HasPrefix(n.Name, "Err") {
							kinds[n.Name] = true
						}
					}
				}
			}
		}
	}
	if len(kinds) == 0 {
		bad = append(bad, kexecsysDir+": defines no Err* variables; the shared error kinds moved?")
	}

	for _, g := range files {
		unix, sys := g.imports("golang.org/x/sys/unix"), g.imports("syscall")
		inKexecsys := g.dir == kexecsysDir
		rootModule := !strings.HasPrefix(g.rel, "qemu-tests/")

		uroot := g.imports(urootKexec)

		// Package-level declarations: error kinds, type aliases, range types.
		for _, d := range g.f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, s := range gd.Specs {
				switch s := s.(type) {
				case *ast.ValueSpec:
					for i, n := range s.Names {
						if !kinds[n.Name] || inKexecsys {
							continue
						}
						if i >= len(s.Values) {
							report(g, n.Pos(), "%s declared without a value: it must be = kexecsys.%s", n.Name, n.Name)
							continue
						}
						sel, ok := s.Values[i].(*ast.SelectorExpr)
						if id, isID := selX(sel); !ok || !isID || g.imports(kexecsysPath) != id || sel.Sel.Name != n.Name {
							report(g, n.Pos(), "%s is a second definition: re-export it as = kexecsys.%s", n.Name, n.Name)
						}
					}
				case *ast.TypeSpec:
					if s.Assign.IsValid() && rootModule {
						if sel, ok := s.Type.(*ast.SelectorExpr); ok {
							if id, _ := selX(sel); id != "" && g.imports(kexecsysPath) != id && importsModule(g, id) {
								report(g, s.Name.Pos(), "type %s is an alias of %s.%s: use that type itself", s.Name.Name, id, sel.Sel.Name)
							}
						}
					}
					if st, ok := s.Type.(*ast.StructType); ok && g.dir != "pkg/memmap" && !isJSONDocument(g) && isRange(st) {
						report(g, s.Name.Pos(), "type %s is a second range type (Start, End): use memmap.Range", s.Name.Name)
					}
				}
			}
		}

		ast.Inspect(g.f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.SelectorExpr:
				if id, ok := selX(n); ok && !inKexecsys && (id == unix || id == sys) && id != "" && syscalls[n.Sel.Name] {
					report(g, n.Pos(), "%s.%s outside %s: use its wrapper", id, n.Sel.Name, kexecsysDir)
				}
				if id, ok := selX(n); ok && !inKexecsys && id != "" && id == uroot && urootCalls[n.Sel.Name] {
					report(g, n.Pos(), "u-root's kexec.%s outside %s: use its wrapper", n.Sel.Name, kexecsysDir)
				}
				if id, ok := selX(n); ok && id != "" && id == g.imports("github.com/u-root/u-root/pkg/boot/bzimage") && n.Sel.Name == "HeaderMagic" && g.dir != "pkg/bootimage" {
					report(g, n.Pos(), "bzimage.HeaderMagic outside pkg/bootimage: read the setup header with bootimage.ReadSetupHeader")
				}
			case *ast.BasicLit:
				if n.Kind == token.STRING && (n.Value == `"HdrS"` || n.Value == "`HdrS`") && g.dir != "pkg/bootimage" && g.dir != "internal/testimage" {
					report(g, n.Pos(), `"HdrS" outside pkg/bootimage: read the setup header with bootimage.ReadSetupHeader`)
				}
			case *ast.FuncDecl:
				if n.Body == nil {
					return true
				}
				if g.dir != "internal/atomicfile" && calls(g, n.Body, "os", "CreateTemp") && calls(g, n.Body, "os", "Rename") {
					report(g, n.Pos(), "%s writes a temporary file and renames it: use internal/atomicfile", n.Name.Name)
				}
				if g.dir != "pkg/bootimage" && togglesOnQuote(n.Body) {
					report(g, n.Pos(), "%s splits on double quotes: split a command line with bootimage.SplitCmdline", n.Name.Name)
				}
				if g.dir != "pkg/bootimage" {
					if p, ok := splitsCmdline(g, n.Body); ok {
						report(g, p, "%s splits a command line on blanks: use bootimage.SplitCmdline (quotes, \"--\")", n.Name.Name)
					}
				}
			}
			return true
		})
	}
	sort.Strings(bad)
	return bad
}

// selX returns the package identifier of a pkg.Name selector.
func selX(sel *ast.SelectorExpr) (string, bool) {
	if sel == nil {
		return "", false
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return "", false
	}
	return id.Name, true
}

// importsModule tells whether the identifier id is g's name for a package
// of this module.
func importsModule(g goFile, id string) bool {
	for _, is := range g.f.Imports {
		p, _ := strconv.Unquote(is.Path.Value)
		if !strings.HasPrefix(p, module+"/") {
			continue
		}
		name := p[strings.LastIndex(p, "/")+1:]
		if is.Name != nil {
			name = is.Name.Name
		}
		if name == id {
			return true
		}
	}
	return false
}

// isJSONDocument: internal/cli's versioned --json documents restate the
// library's shapes on purpose (json_v1.go).
func isJSONDocument(g goFile) bool {
	return g.dir == "internal/cli" && strings.HasPrefix(pathBase(g.rel), "json_v")
}

func pathBase(rel string) string { return rel[strings.LastIndex(rel, "/")+1:] }

// isRange: a struct with integer fields Start and End.
func isRange(st *ast.StructType) bool {
	have := map[string]bool{}
	for _, f := range st.Fields.List {
		id, ok := f.Type.(*ast.Ident)
		if !ok || !strings.Contains(id.Name, "int") {
			continue
		}
		for _, n := range f.Names {
			have[n.Name] = true
		}
	}
	return have["Start"] && have["End"]
}

// calls tells whether body calls pkg.fn, pkg being g's name for the
// standard library package pkg.
func calls(g goFile, body ast.Node, pkg, fn string) bool {
	id := g.imports(pkg)
	if id == "" {
		return false
	}
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		if c, ok := n.(*ast.CallExpr); ok {
			if sel, ok := c.Fun.(*ast.SelectorExpr); ok {
				if x, _ := selX(sel); x == id && sel.Sel.Name == fn {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// togglesOnQuote finds the heart of a quote-aware splitter: an if whose
// condition compares with '"' and whose body flips a bool (q = !q).
func togglesOnQuote(body ast.Node) bool {
	found := false
	ast.Inspect(body, func(n ast.Node) bool {
		is, ok := n.(*ast.IfStmt)
		if !ok || !comparesWithQuote(is.Cond) {
			return !found
		}
		for _, st := range is.Body.List {
			as, ok := st.(*ast.AssignStmt)
			if !ok || len(as.Lhs) != 1 || len(as.Rhs) != 1 {
				continue
			}
			if u, ok := as.Rhs[0].(*ast.UnaryExpr); ok && u.Op == token.NOT {
				l, lok := as.Lhs[0].(*ast.Ident)
				r, rok := u.X.(*ast.Ident)
				if lok && rok && l.Name == r.Name {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

func comparesWithQuote(e ast.Expr) bool {
	found := false
	ast.Inspect(e, func(n ast.Node) bool {
		if b, ok := n.(*ast.BinaryExpr); ok && b.Op == token.EQL {
			for _, x := range []ast.Expr{b.X, b.Y} {
				if l, ok := x.(*ast.BasicLit); ok && l.Kind == token.CHAR && l.Value == `'"'` {
					found = true
				}
			}
		}
		return !found
	})
	return found
}

// cmdlineName matches expressions that hold a kernel command line.
var cmdlineName = regexp.MustCompile(`(?i)cmdline|command_?line`)

// splitsCmdline finds strings.Fields(x) or strings.Split(x, " ") of an
// expression whose name says it is a command line.
func splitsCmdline(g goFile, body ast.Node) (token.Pos, bool) {
	id := g.imports("strings")
	if id == "" {
		return token.NoPos, false
	}
	var at token.Pos
	ast.Inspect(body, func(n ast.Node) bool {
		c, ok := n.(*ast.CallExpr)
		if !ok || len(c.Args) == 0 {
			return at == token.NoPos
		}
		sel, ok := c.Fun.(*ast.SelectorExpr)
		if x, _ := selX(sel); !ok || x != id || !slices.Contains([]string{"Fields", "Split", "SplitN"}, sel.Sel.Name) {
			return at == token.NoPos
		}
		if sel.Sel.Name != "Fields" {
			if l, ok := c.Args[1].(*ast.BasicLit); !ok || l.Value != `" "` {
				return at == token.NoPos
			}
		}
		var names []string
		ast.Inspect(c.Args[0], func(n ast.Node) bool {
			if i, ok := n.(*ast.Ident); ok {
				names = append(names, i.Name)
			}
			return true
		})
		if cmdlineName.MatchString(strings.Join(names, " ")) {
			at = c.Pos()
		}
		return at == token.NoPos
	})
	return at, at != token.NoPos
}

func TestOneOfEach(t *testing.T) {
	for _, v := range oneOfEachViolations(treeGoFiles(t, repoRoot(t))) {
		t.Error(v)
	}
}

// TestOneOfEachCatches proves each rule fires: every snippet below is a
// second one of something and must be reported.
func TestOneOfEachCatches(t *testing.T) {
	kexecsys := `package kexecsys
import "errors"
var ErrNotSupported = errors.New("not supported")
`
	for name, tc := range map[string]struct{ path, src string }{
		"kexec_file_load": {"pkg/x/load_linux.go", `package x
import "golang.org/x/sys/unix"
func load() { unix.Syscall(unix.SYS_KEXEC_FILE_LOAD, 0, 0, 0) }`},
		"memfd": {"pkg/x/memfd.go", `package x
import "golang.org/x/sys/unix"
func m() { unix.MemfdCreate("x", 0) }`},
		"seal": {"pkg/x/seal.go", `package x
import "golang.org/x/sys/unix"
const s = unix.F_ADD_SEALS`},
		"u-root kexec": {"pkg/x/k.go", `package x
import "github.com/u-root/u-root/pkg/boot/kexec"
var _ = kexec.FileLoad`},
		"ErrNotSupported": {"pkg/x/errors.go", `package x
import "errors"
var ErrNotSupported = errors.New("not supported")`},
		"ErrNotSupported re-exported wrongly": {"pkg/x/errors.go", `package x
import "github.com/fastreboot/fastreboot/internal/kexecsys"
var ErrNotSupported = kexecsys.ErrBusy`},
		"alias": {"pkg/x/mm.go", `package x
import "github.com/fastreboot/fastreboot/pkg/memmap"
type MemoryMap = memmap.Map`},
		"range": {"pkg/x/r.go", `package x
type span struct{ Start, End uint64 }`},
		"setup header": {"pkg/x/h.go", `package x
func bz(b []byte) bool { return string(b[0x202:0x206]) == "HdrS" }`},
		"atomic write": {"pkg/x/w.go", `package x
import "os"
func w(p string) { f, _ := os.CreateTemp("", "x"); os.Rename(f.Name(), p) }`},
		"quote splitter": {"pkg/x/s.go", `package x
func split(s string) (out []string) {
	q := false
	for i := range s {
		if s[i] == '"' {
			q = !q
		}
	}
	return
}`},
		"blank splitter": {"qemu-tests/cmd/x/c.go", `package main
import "strings"
func has(cmdline string) bool { return len(strings.Fields(cmdline)) > 0 }`},
	} {
		t.Run(name, func(t *testing.T) {
			files := []goFile{parseSnippet(t, "internal/kexecsys/errors.go", kexecsys), parseSnippet(t, tc.path, tc.src)}
			got := oneOfEachViolations(files)
			if len(got) == 0 {
				t.Fatalf("no violation reported for\n%s", tc.src)
			}
			for _, v := range got {
				if !strings.HasPrefix(v, tc.path+":") {
					t.Errorf("violation outside the snippet: %s", v)
				}
			}
		})
	}
	// The shapes the tree uses are fine.
	ok := parseSnippet(t, "pkg/x/errors.go", `package x
import "github.com/fastreboot/fastreboot/internal/kexecsys"
var ErrNotSupported = kexecsys.ErrNotSupported
type KexecError = kexecsys.KexecError`)
	if got := oneOfEachViolations([]goFile{parseSnippet(t, "internal/kexecsys/errors.go", kexecsys), ok}); len(got) != 0 {
		t.Errorf("a re-export is reported: %q", got)
	}
}

func parseSnippet(t *testing.T, rel, src string) goFile {
	t.Helper()
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, rel, src, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	return goFile{rel: rel, dir: pathDir(rel), fset: fset, f: f}
}
