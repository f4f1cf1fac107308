package cli

import (
	"bytes"
	"fmt"
	"github.com/google/go-cmp/cmp"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"
)

// jsonDocMarker starts the part of docs/json.md that TestJSONDoc writes:
// every document's fields and every object's, from the types of json.go and
// json_v1.go and their comments.
const jsonDocMarker = "<!-- Everything below is written by TestJSONDoc (go test ./internal/cli -run TestJSONDoc -update). -->\n"

// TestJSONDoc checks that docs/json.md describes every field of every
// --json document, as the types and their comments say.
func TestJSONDoc(t *testing.T) {
	path := filepath.Join("..", "..", "docs", "json.md")
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	head, _, ok := strings.Cut(string(b), jsonDocMarker)
	if !ok {
		t.Fatalf("%s has no line %q", path, strings.TrimSpace(jsonDocMarker))
	}
	ref := jsonReference(t)
	for _, line := range strings.Split(ref, "\n") {
		if strings.HasSuffix(line, "|  |") {
			t.Errorf("field without a meaning (add a comment to its type in json.go or json_v1.go): %s", line)
		}
	}
	want := head + jsonDocMarker + "\n" + ref
	if *update {
		if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	if diff := cmp.Diff(string(b), want); diff != "" {
		t.Errorf("%s is not what the types say (-doc +types; go test ./internal/cli -run TestJSONDoc -update rewrites it):\n%s", path, diff)
	}
}

// jsonReference describes the documents and their objects in markdown.
func jsonReference(t *testing.T) string {
	t.Helper()
	docs := map[string]string{}  // Type.Field -> comment
	tdocs := map[string]string{} // Type -> comment
	fset := token.NewFileSet()
	for _, fn := range []string{"json.go", "json_v1.go"} {
		f, err := parser.ParseFile(fset, fn, nil, parser.ParseComments)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range f.Decls {
			gd, ok := d.(*ast.GenDecl)
			if !ok {
				continue
			}
			for _, sp := range gd.Specs {
				ts, ok := sp.(*ast.TypeSpec)
				if !ok {
					continue
				}
				if gd.Doc != nil {
					tdocs[ts.Name.Name] = gd.Doc.Text()
				}
				st, ok := ts.Type.(*ast.StructType)
				if !ok {
					continue
				}
				prevDoc, prevLine := "", -10
				for _, fl := range st.Fields.List {
					doc := ""
					if fl.Doc != nil {
						doc = fl.Doc.Text()
					} else if fl.Comment != nil {
						doc = fl.Comment.Text()
					}
					line := fset.Position(fl.Pos()).Line
					for _, n := range fl.Names {
						d := doc
						// A comment above a group of fields names the
						// ones it is about.
						if d == "" && line == prevLine+1 && strings.Contains(prevDoc, n.Name) {
							d = prevDoc
						}
						docs[ts.Name.Name+"."+n.Name] = d
					}
					if doc == "" && line == prevLine+1 {
						doc = prevDoc
					}
					prevDoc, prevLine = doc, fset.Position(fl.End()).Line
				}
			}
		}
	}
	var out bytes.Buffer
	seen := map[reflect.Type]bool{}
	var queue []reflect.Type
	jtype := func(ty reflect.Type) string {
		var s func(reflect.Type) string
		s = func(ty reflect.Type) string {
			switch ty {
			case reflect.TypeFor[time.Time]():
				return "time (RFC 3339 string)"
			case reflect.TypeFor[time.Duration]():
				return "integer (nanoseconds)"
			}
			switch ty.Kind() {
			case reflect.Pointer:
				return s(ty.Elem()) + " or absent"
			case reflect.Struct:
				if !seen[ty] {
					seen[ty] = true
					queue = append(queue, ty)
				}
				return "[" + disp(ty) + "](#" + strings.ToLower(disp(ty)) + ")"
			case reflect.Slice:
				return "array of " + s(ty.Elem())
			case reflect.Map:
				return "object of " + s(ty.Elem())
			case reflect.String:
				return "string"
			case reflect.Bool:
				return "boolean"
			default:
				return "integer"
			}
		}
		return s(ty)
	}
	var table func(ty reflect.Type)
	table = func(ty reflect.Type) {
		fmt.Fprintf(&out, "| field | type | meaning |\n|---|---|---|\n")
		var rows func(ty reflect.Type)
		rows = func(ty reflect.Type) {
			for i := 0; i < ty.NumField(); i++ {
				f := ty.Field(i)
				if f.Anonymous {
					rows(f.Type)
					continue
				}
				tag := f.Tag.Get("json")
				name, opts, _ := strings.Cut(tag, ",")
				doc := strings.Join(strings.Fields(docs[ty.Name()+"."+f.Name]), " ")
				doc = jsonNames(ty, doc)
				if name == "schema" {
					doc = "the document's schema and version"
				}
				typ := jtype(f.Type)
				if strings.Contains(opts, "omit") && !strings.HasSuffix(typ, " or absent") {
					typ += ", absent when empty"
				}
				fmt.Fprintf(&out, "| `%s` | %s | %s |\n", name, typ, strings.ReplaceAll(doc, "|", "\\|"))
			}
		}
		rows(ty)
		out.WriteString("\n")
	}
	all := jsonDocs()
	var schemas []string
	for s := range all {
		schemas = append(schemas, s)
	}
	sort.Strings(schemas)
	out.WriteString("## Documents\n\n")
	for _, s := range schemas {
		ty := reflect.TypeOf(all[s])
		fmt.Fprintf(&out, "### `%s`\n\n%s\n\n", s, typeDoc(tdocs[ty.Name()]))
		table(ty)
	}
	out.WriteString("## Objects\n\nThe objects the documents hold, in the order they first appear.\n\n")
	for len(queue) > 0 {
		ty := queue[0]
		queue = queue[1:]
		fmt.Fprintf(&out, "### %s\n\n%s\n\n", disp(ty), typeDoc(tdocs[ty.Name()]))
		table(ty)
	}
	return out.String()
}

// disp is the name docs/json.md gives an object: its type's without the
// version suffix, lower camel case ("StageReportV1" is stageReport).
func disp(ty reflect.Type) string {
	n := strings.TrimSuffix(ty.Name(), "V1")
	return strings.ToLower(n[:1]) + n[1:]
}

func typeDoc(d string) string {
	d = strings.Join(strings.Fields(d), " ")
	if _, rest, ok := strings.Cut(d, " is "); ok {
		d = strings.ToUpper(rest[:1]) + rest[1:]
	}
	return d
}

// jsonNames replaces the Go names of ty's fields in doc by their JSON names.
func jsonNames(ty reflect.Type, doc string) string {
	names := map[string]string{}
	var walk func(reflect.Type)
	walk = func(ty reflect.Type) {
		for i := 0; i < ty.NumField(); i++ {
			f := ty.Field(i)
			if f.Anonymous {
				walk(f.Type)
				continue
			}
			n, _, _ := strings.Cut(f.Tag.Get("json"), ",")
			names[f.Name] = n
		}
	}
	walk(ty)
	words := strings.Fields(doc)
	for i, w := range words {
		core := strings.TrimRight(w, ".,;:)")
		lead := ""
		if strings.HasPrefix(core, "(") {
			lead, core = "(", core[1:]
		}
		if n, ok := names[core]; ok && len(core) > 1 {
			words[i] = lead + "`" + n + "`" + w[len(lead)+len(core):]
		}
	}
	return strings.Join(words, " ")
}
