package qemutests

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"
)

// TestDecodesVersionedDocuments: the tests and tools here read the CLI's
// --json output as any program would, through the versioned documents of
// internal/cli (docs/json.md), never the library's structs, whose shape is
// not the contract. Every FastrebootJSON or DecodeJSON call must decode into
// a variable declared with a cli.*V1 type (or status, an alias of
// cli.StatusV1); a manifest file, whose format is its own contract
// (bootimage.Manifest), decodeReread (FastrebootJSON's pass-through) and
// DecodeJSON's own tests are the exceptions. It needs no QEMU.
func TestDecodesVersionedDocuments(t *testing.T) {
	calls, bad := 0, []string{}
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if d.Name() == "testdata" {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") {
			return nil
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		n, b := checkDecodes(fset, f)
		calls += n
		bad = append(bad, b...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range bad {
		t.Error(b)
	}
	if calls < 20 {
		t.Errorf("found only %d FastrebootJSON/DecodeJSON calls: the scan is broken", calls)
	}
}

// checkDecodes checks the decode calls of one file: each function's calls
// against the var declarations of that function.
func checkDecodes(fset *token.FileSet, f *ast.File) (calls int, bad []string) {
	for _, d := range f.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok || fn.Body == nil || fn.Name.Name == "FastrebootJSON" || fn.Name.Name == "decodeReread" || fn.Name.Name == "DecodeJSON" || strings.HasPrefix(fn.Name.Name, "TestDecodeJSON") {
			continue
		}
		types := map[string]ast.Expr{} // var name -> declared type
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			if vs, ok := n.(*ast.ValueSpec); ok && vs.Type != nil {
				for _, id := range vs.Names {
					types[id.Name] = vs.Type
				}
			}
			return true
		})
		ast.Inspect(fn.Body, func(n ast.Node) bool {
			c, ok := n.(*ast.CallExpr)
			if !ok || len(c.Args) < 2 {
				return true
			}
			var name string
			switch fun := c.Fun.(type) {
			case *ast.SelectorExpr:
				name = fun.Sel.Name
			case *ast.Ident:
				name = fun.Name
			}
			if name != "FastrebootJSON" && name != "DecodeJSON" {
				return true
			}
			calls++
			pos := fset.Position(c.Pos()).String()
			u, ok := c.Args[len(c.Args)-1].(*ast.UnaryExpr)
			id, ok2 := func() (*ast.Ident, bool) {
				if !ok || u.Op != token.AND {
					return nil, false
				}
				id, ok := u.X.(*ast.Ident)
				return id, ok
			}()
			if !ok2 {
				bad = append(bad, pos+": decodes into something other than &variable")
				return true
			}
			if !isDocumentType(types[id.Name]) {
				bad = append(bad, pos+": decodes into "+id.Name+", not declared as a cli.*V1 document")
			}
			return true
		})
	}
	return calls, bad
}

func isDocumentType(e ast.Expr) bool {
	switch e := e.(type) {
	case *ast.Ident:
		return e.Name == "status"
	case *ast.SelectorExpr:
		x, ok := e.X.(*ast.Ident)
		return ok && (x.Name == "cli" && strings.HasSuffix(e.Sel.Name, "V1") || x.Name == "bootimage" && e.Sel.Name == "Manifest")
	}
	return false
}
