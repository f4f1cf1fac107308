package agent

import (
	"context"
	"errors"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// sentinel is an exported Err* variable found in the source.
type sentinel struct {
	pkg, name string // package name and identifier
	pos       string
	msg       string // errors.New's message, if declared with one
	aliasPkg  string // for `ErrX = otherpkg.ErrY`: otherpkg and ErrY
	aliasName string
}

func (s sentinel) String() string { return s.pkg + "." + s.name + " (" + s.pos + ")" }

// scanSentinels parses every non-test Go file under root's pkg/, internal/
// and cmd/ (every package of the module; qemu-tests is another module) and
// returns the exported package-level Err* variables.
func scanSentinels(t *testing.T, root string) []sentinel {
	t.Helper()
	var out []sentinel
	fset := token.NewFileSet()
	for _, top := range []string{"pkg", "internal", "cmd"} {
		if _, err := os.Stat(filepath.Join(root, top)); errors.Is(err, fs.ErrNotExist) {
			continue
		}
		err := filepath.WalkDir(filepath.Join(root, top), func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if d.Name() == "testdata" {
					return filepath.SkipDir
				}
				return nil
			}
			if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return nil
			}
			f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
			if err != nil {
				return err
			}
			imports := map[string]string{} // local name -> last path element
			for _, im := range f.Imports {
				p, _ := strconv.Unquote(im.Path.Value)
				local := p[strings.LastIndex(p, "/")+1:]
				if im.Name != nil {
					local = im.Name.Name
				}
				imports[local] = p[strings.LastIndex(p, "/")+1:]
			}
			for _, decl := range f.Decls {
				gd, ok := decl.(*ast.GenDecl)
				if !ok || gd.Tok != token.VAR {
					continue
				}
				for _, spec := range gd.Specs {
					vs := spec.(*ast.ValueSpec)
					for i, id := range vs.Names {
						if !strings.HasPrefix(id.Name, "Err") || !id.IsExported() || len(id.Name) < 4 || !ast.IsExported(id.Name[3:]) {
							continue
						}
						s := sentinel{pkg: f.Name.Name, name: id.Name, pos: fset.Position(id.Pos()).String()}
						if i < len(vs.Values) {
							switch v := vs.Values[i].(type) {
							case *ast.CallExpr:
								if sel, ok := v.Fun.(*ast.SelectorExpr); ok && sel.Sel.Name == "New" && len(v.Args) == 1 {
									if lit, ok := v.Args[0].(*ast.BasicLit); ok && lit.Kind == token.STRING {
										s.msg, _ = strconv.Unquote(lit.Value)
									}
								}
							case *ast.SelectorExpr:
								if x, ok := v.X.(*ast.Ident); ok {
									s.aliasPkg, s.aliasName = imports[x.Name], v.Sel.Name
								}
							case *ast.Ident:
								s.aliasPkg, s.aliasName = f.Name.Name, v.Name
							}
						}
						out = append(out, s)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// registered maps every scanned sentinel to its registry entry; problems
// lists the sentinels it cannot place.
func registered(sentinels []sentinel, kinds []errorKind) (map[string]errorKind, []string) {
	byID := map[string]sentinel{}
	for _, s := range sentinels {
		byID[s.pkg+"."+s.name] = s
	}
	found := map[string]errorKind{}
	var problems []string
	for _, s := range sentinels {
		d := s
		for i := 0; d.aliasName != "" && i < 10; i++ {
			target, ok := byID[d.aliasPkg+"."+d.aliasName]
			if !ok {
				break
			}
			d = target
		}
		if d.msg == "" {
			problems = append(problems, fmt.Sprintf("%v: not declared as errors.New(\"...\") (or a re-export of one): the test cannot check it", s))
			continue
		}
		prefix := d.pkg + "."
		if d.pkg == "kexecsys" {
			prefix = "kexec."
		}
		var hit []errorKind
		for _, k := range kinds {
			if strings.HasPrefix(k.name, prefix) && k.err.Error() == d.msg {
				hit = append(hit, k)
			}
		}
		if len(hit) != 1 {
			problems = append(problems, fmt.Sprintf("%v: %d registry entries %s* with message %q, want 1: add it to %s.ErrorKinds (and that to agent.errorKinds)", s, len(hit), prefix, d.msg, d.pkg))
			continue
		}
		found[s.pkg+"."+s.name] = hit[0]
	}
	return found, problems
}

// errService answers Info with the error it holds.
type errService struct {
	Service
	err error
}

func (s *errService) Info(context.Context) (*Info, error) { return nil, s.err }

// TestEveryErrorCrossesTheSocket scans the source of every package for
// exported Err* sentinels, finds each in the daemon's error registry, and
// sends it, wrapped, through the server's handler on a real unix socket to
// a Client: errors.Is must hold on the client's error as on the original.
// A sentinel added to any package (a new one included) and left out of the
// registry fails it.
func TestEveryErrorCrossesTheSocket(t *testing.T) {
	sentinels := scanSentinels(t, filepath.Join("..", ".."))
	if len(sentinels) < 40 {
		t.Fatalf("found only %d sentinels: is the scan looking at the module root?", len(sentinels))
	}
	for _, want := range []string{"crashhandler.ErrNoVmcore", "cpustop.ErrTimeout", "agent.ErrNoStorage", "kexecsys.ErrNotSupported",
		"crashpath.ErrNotCrashKernel", "memmap.ErrNoFirmwareMap", "modcache.ErrModuleTooLarge"} {
		if !strings.Contains(fmt.Sprint(sentinels), want+" ") {
			t.Errorf("scan missed %s", want)
		}
	}
	// Every package whose ErrorKinds feed the registry was scanned: a
	// package the walk skipped would have sentinels nobody checks.
	scanned := map[string]bool{}
	for _, s := range sentinels {
		scanned[s.pkg] = true
	}
	for _, k := range errorKinds {
		pkg := k.name[:strings.Index(k.name, ".")]
		if pkg == "kexec" {
			pkg = "kexecsys"
		}
		if !scanned[pkg] {
			t.Errorf("registry kind %s: the scan found no sentinel of package %s", k.name, pkg)
		}
	}
	found, problems := registered(sentinels, errorKinds)
	for _, p := range problems {
		t.Error(p)
	}
	t.Logf("%d sentinels in the source, %d registry entries", len(sentinels), len(errorKinds))

	svc := &errService{}
	sock := filepath.Join(t.TempDir(), "agent.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: Handler(svc)}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	c, err := Dial(sock)
	if err != nil {
		t.Fatal(err)
	}
	for id, k := range found {
		// Sequential: svc.err is read by the handler of this request only.
		svc.err = fmt.Errorf("%s on /some/file: %w", id, k.err)
		_, got := c.Info(context.Background())
		if !errors.Is(got, k.err) {
			t.Errorf("%s (%s): after the socket %v does not match it", id, k.name, got)
		}
		if got == nil || got.Error() != svc.err.Error() {
			t.Errorf("%s: message %v, want %q", id, got, svc.err)
		}
	}
	// A KexecError keeps its kinds across too, and old wire names decode.
	svc.err = fmt.Errorf("arming: %w", &kexecsys.KexecError{Op: kexecsys.OpLoad, Errno: 1})
	_, got := c.Info(context.Background())
	if !errors.Is(got, crashhandler.ErrKexecLoadForbidden) || !errors.Is(got, crashhandler.ErrNotPermitted) {
		t.Errorf("kexec_load EPERM after the socket: %v (kinds %v)", got, Kinds(svc.err))
	}
	for old, now := range oldKindNames {
		if re := (&RemoteError{Kinds: []string{old}}); !errors.Is(re, kindByName(now)) || kindByName(now) == nil {
			t.Errorf("old wire name %s does not decode to %s", old, now)
		}
	}
}

// TestSentinelScanCatchesANewOne proves the check above fails for a
// sentinel nobody registered, in a package nobody listed.
func TestSentinelScanCatchesANewOne(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "pkg", "brandnew")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	src := "package brandnew\n\nimport \"errors\"\n\nvar ErrFresh = errors.New(\"fresh\")\n\nvar errPrivate = errors.New(\"private\")\n"
	if err := os.WriteFile(filepath.Join(dir, "b.go"), []byte(src), 0o644); err != nil {
		t.Fatal(err)
	}
	s := scanSentinels(t, root)
	if len(s) != 1 || s[0].name != "ErrFresh" {
		t.Fatalf("scan: %v", s)
	}
	if _, problems := registered(s, errorKinds); len(problems) != 1 || !strings.Contains(problems[0], "brandnew.ErrorKinds") {
		t.Errorf("problems %q, want one naming brandnew.ErrorKinds", problems)
	}
	if _, problems := registered(s, append(errorKinds[:len(errorKinds):len(errorKinds)], errorKind{"brandnew.fresh", errors.New("fresh")})); len(problems) != 0 {
		t.Errorf("registered, still: %q", problems)
	}
}
