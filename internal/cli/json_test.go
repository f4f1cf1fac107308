package cli

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootentry"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

var update = flag.Bool("update", false, "rewrite testdata/json (TestJSONGolden) and the reference of docs/json.md (TestJSONDoc) from the current output")

// goldenDir holds one golden file per --json document, named after its
// schema: testdata/json/status.v1.json is "fastreboot.status.v1".
var goldenDir = filepath.Join("..", "..", "testdata", "json")

// filler fills a library value with fixed, distinct values in every
// field, so that a golden file shows every field of its document.
type filler struct{ n int }

// fixed values for the library's named string types, so that the golden
// files read like real output.
var fillStrings = map[reflect.Type]string{
	reflect.TypeFor[fastreboot.Reason]():       string(fastreboot.ReasonUpdate),
	reflect.TypeFor[fastreboot.LoadMethod]():   string(fastreboot.LoadSegments),
	reflect.TypeFor[crashhandler.Mode]():       string(crashhandler.ModeTwoStage),
	reflect.TypeFor[crashhandler.LoadMethod](): string(crashhandler.LoadSegments),
	reflect.TypeFor[crashpath.Initrd]():        string(crashpath.InitrdMinimal),
	reflect.TypeFor[bootimage.Role]():          string(bootimage.RoleKernel),
	reflect.TypeFor[bootentry.Source]():        string(bootentry.SourceBLS),
}

func (f *filler) fill(v reflect.Value, name string, depth int) {
	if depth > 12 {
		return
	}
	switch v.Type() {
	case reflect.TypeFor[time.Time]():
		f.n++
		v.Set(reflect.ValueOf(time.Date(2026, 12, 5, 3, 0, f.n, 0, time.UTC)))
		return
	case reflect.TypeFor[time.Duration]():
		f.n++
		v.SetInt(int64(f.n) * int64(time.Millisecond))
		return
	}
	switch v.Kind() {
	case reflect.String:
		if s, ok := fillStrings[v.Type()]; ok {
			v.SetString(s)
		} else {
			v.SetString(strings.ToLower(name))
		}
	case reflect.Bool:
		v.SetBool(true)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		f.n++
		v.SetInt(int64(f.n))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		f.n++
		v.SetUint(uint64(f.n) << 12)
	case reflect.Pointer:
		p := reflect.New(v.Type().Elem())
		f.fill(p.Elem(), name, depth+1)
		v.Set(p)
	case reflect.Slice:
		s := reflect.MakeSlice(v.Type(), 1, 1)
		f.fill(s.Index(0), name, depth+1)
		v.Set(s)
	case reflect.Map:
		m := reflect.MakeMap(v.Type())
		k := reflect.New(v.Type().Key()).Elem()
		e := reflect.New(v.Type().Elem()).Elem()
		f.fill(k, name+"_key", depth+1)
		f.fill(e, name+"_value", depth+1)
		m.SetMapIndex(k, e)
		v.Set(m)
	case reflect.Struct:
		for i := 0; i < v.NumField(); i++ {
			if v.Type().Field(i).IsExported() {
				f.fill(v.Field(i), v.Type().Field(i).Name, depth+1)
			}
		}
	}
}

// filled returns a T with every field set.
func filled[T any]() *T {
	var v T
	(&filler{}).fill(reflect.ValueOf(&v).Elem(), reflect.TypeFor[T]().Name(), 0)
	return &v
}

// jsonDocs returns every --json document, each built from library values
// with every field set.
func jsonDocs() map[string]any {
	status := filled[statusReport]()
	diff := filled[bootimage.ManifestDiff]()
	return map[string]any{
		schemaStatus:           statusDoc(status),
		schemaStage:            stageDoc(filled[fastreboot.StageReport]()),
		schemaReboot:           rebootDoc(*filled[fastreboot.RebootPlan]()),
		schemaCacheLs:          cacheLsDoc(filled[agent.CacheListing]()),
		schemaCacheVerify:      cacheVerifyDoc(filled[modcache.VerifyReport]()),
		schemaCacheSync:        cacheSyncDoc(filled[modcache.SyncReport]()),
		schemaCacheEvict:       cacheEvictDoc(filled[modcache.EvictReport]()),
		schemaManifestDiff:     manifestDiffDoc(*diff),
		schemaManifestValidate: manifestValidateDoc("/boot/fr/v2.json", 4, filled[modcache.SyncReport]()),
		schemaCrashArm:         crashArmDoc(filled[crashpath.ArmReport]()),
		schemaCrashEstimate:    crashEstimateDoc(filled[crashpath.EstimateReport]()),
		schemaCrashDisarm:      crashStatusDoc(schemaCrashDisarm, filled[crashpath.StatusReport]()),
		schemaCrashStatus:      crashStatusDoc(schemaCrashStatus, filled[crashpath.StatusReport]()),
		schemaCrashLast:        crashLastDoc(filled[crashhandler.Evidence]()),
		schemaCrashRecover:     crashRecoverDoc(filled[crashpath.RecoverReport]()),
		schemaEntries:          entriesDoc(filledEntries()),
		schemaKeyVerify: keyVerifyDoc("/boot/fr/v2.json", &bootimage.Manifest{Name: "v2", Modules: make([]bootimage.Module, 3)},
			"9f3c2a1b0d4e5f60", manifestsig.NewTrustRoot("/etc/fastreboot/trust")),
		schemaError: errorDoc("stage", "stage /boot/fr/v2.json: vmlinuz: digest mismatch", []string{"modcache.digest_mismatch"}, ExitFailed),
	}
}

// goldenName is the file of a schema: "fastreboot.crash.arm.v1" ->
// "crash.arm.v1.json".
func goldenName(schema string) string {
	return strings.TrimPrefix(schema, "fastreboot.") + ".json"
}

// TestJSONGolden checks every --json document byte for byte against its
// golden file in testdata/json (go test -run TestJSONGolden -update
// rewrites them). A difference is a change of the contract: adding a field
// keeps the schema's version, anything else needs a new one (docs/json.md).
func TestJSONGolden(t *testing.T) {
	docs := jsonDocs()
	if *update {
		if err := os.MkdirAll(goldenDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for schema, doc := range docs {
		t.Run(schema, func(t *testing.T) {
			var b bytes.Buffer
			if err := printJSON(&b, doc); err != nil {
				t.Fatal(err)
			}
			var head struct {
				Schema string `json:"schema"`
			}
			if err := json.Unmarshal(b.Bytes(), &head); err != nil || head.Schema != schema {
				t.Errorf("document's schema is %q (%v), want %q", head.Schema, err, schema)
			}
			path := filepath.Join(goldenDir, goldenName(schema))
			if *update {
				if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (go test ./internal/cli -run TestJSONGolden -update writes it)", err)
			}
			if !bytes.Equal(want, b.Bytes()) {
				t.Errorf("%s differs from the output (-golden +output):\n%s", path, cmp.Diff(string(want), b.String()))
			}
		})
	}
	// No golden file without its document.
	files, err := filepath.Glob(filepath.Join(goldenDir, "*.json"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		found := false
		for schema := range docs {
			found = found || goldenName(schema) == filepath.Base(f)
		}
		if !found {
			t.Errorf("%s: no --json document has this schema", f)
		}
	}
}

// TestJSONSchemasDocumented checks that docs/json.md names every schema.
func TestJSONSchemasDocumented(t *testing.T) {
	b, err := os.ReadFile(filepath.Join("..", "..", "docs", "json.md"))
	if err != nil {
		t.Fatal(err)
	}
	var missing []string
	for schema := range jsonDocs() {
		if !bytes.Contains(b, []byte("`"+schema+"`")) {
			missing = append(missing, schema)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("docs/json.md does not document %q", missing)
	}
}

// filledEntries is a List with every field of its entries set: the filler
// cannot fill the error interfaces, so the broken entry's error and the
// problem are set here.
func filledEntries() *bootentry.List {
	l := filled[bootentry.List]()
	l.Default = 0
	bad := l.Entries[0]
	bad.ID, bad.Err = "bad", fmt.Errorf("bls entry %q (/boot/loader/entries/bad.conf): kernel /boot/vmlinuz-6.1.0-8-amd64: no such file or directory: %w", "bad", bootentry.ErrMissingFile)
	l.Entries = append(l.Entries, bad)
	l.Problems = []error{fmt.Errorf("/boot/loader/loader.conf: default %q matches no entry", "old-*")}
	return l
}
