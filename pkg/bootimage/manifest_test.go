package bootimage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var (
	digestA = strings.Repeat("a", 64)
	digestB = strings.Repeat("b", 64)
	digestC = strings.Repeat("c", 64)
)

func validManifest() *Manifest {
	return &Manifest{
		Version: SchemaVersion,
		Name:    "v1",
		Cmdline: "console=ttyS0 quiet",
		Modules: []Module{
			{Name: "vmlinuz", Role: RoleKernel, Size: 8 << 20, SHA256: digestA, Source: "vmlinuz"},
			{Name: "base.cpio.zst", Role: RoleInitrd, Size: 3 << 20, SHA256: digestB, Source: "base.cpio.zst"},
			{Name: "site.cpio", Role: RoleInitrd, Size: 512, SHA256: digestC},
		},
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		is     error    // nil: valid
		want   []string // substrings of the message
	}{
		{name: "valid", change: func(m *Manifest) {}},
		{name: "kernel only", change: func(m *Manifest) { m.Modules = m.Modules[:1] }},
		{name: "longest cmdline", change: func(m *Manifest) { m.Cmdline = strings.Repeat("x", MaxCmdline-1) }},
		{name: "version 0", change: func(m *Manifest) { m.Version = 0 }, is: ErrSchema, want: []string{"version 0"}},
		{name: "version 2", change: func(m *Manifest) { m.Version = 2 }, is: ErrSchema, want: []string{"version 2"}},
		{name: "no kernel", change: func(m *Manifest) { m.Modules = m.Modules[1:] }, is: ErrInvalid, want: []string{"no kernel"}},
		{name: "no modules", change: func(m *Manifest) { m.Modules = nil }, is: ErrInvalid, want: []string{"no kernel"}},
		{name: "two kernels", change: func(m *Manifest) { m.Modules[2].Role = RoleKernel }, is: ErrInvalid, want: []string{"2 kernel modules", `"vmlinuz"`, `"site.cpio"`}},
		{name: "duplicate names", change: func(m *Manifest) { m.Modules[2].Name = "base.cpio.zst" }, is: ErrInvalid, want: []string{`duplicate module name "base.cpio.zst"`, "modules 1 and 2"}},
		{name: "empty name", change: func(m *Manifest) { m.Modules[1].Name = "" }, is: ErrInvalid, want: []string{"module 1 has no name"}},
		{name: "unknown role", change: func(m *Manifest) { m.Modules[1].Role = "dtb" }, is: ErrInvalid, want: []string{`unknown role "dtb"`, `"base.cpio.zst"`}},
		{name: "short sha256", change: func(m *Manifest) { m.Modules[1].SHA256 = "abc" }, is: ErrInvalid, want: []string{`bad sha256 "abc"`, `"base.cpio.zst"`}},
		{name: "uppercase sha256", change: func(m *Manifest) { m.Modules[1].SHA256 = strings.Repeat("A", 64) }, is: ErrInvalid, want: []string{"bad sha256", "lowercase"}},
		{name: "non-hex sha256", change: func(m *Manifest) { m.Modules[0].SHA256 = strings.Repeat("g", 64) }, is: ErrInvalid, want: []string{"bad sha256", `"vmlinuz"`}},
		{name: "empty sha256", change: func(m *Manifest) { m.Modules[0].SHA256 = "" }, is: ErrInvalid, want: []string{`bad sha256 ""`}},
		{name: "size 0", change: func(m *Manifest) { m.Modules[2].Size = 0 }, is: ErrInvalid, want: []string{"size 0", `"site.cpio"`}},
		{name: "negative size", change: func(m *Manifest) { m.Modules[2].Size = -1 }, is: ErrInvalid, want: []string{"size -1"}},
		{name: "cmdline too long", change: func(m *Manifest) { m.Cmdline = strings.Repeat("x", MaxCmdline) }, is: ErrCmdlineTooLong, want: []string{"2048 bytes", "at most 2047"}},
		{name: "cmdline far too long", change: func(m *Manifest) { m.Cmdline = strings.Repeat("x", 5000) }, is: ErrCmdlineTooLong, want: []string{"5000 bytes"}},
		{name: "NUL in cmdline", change: func(m *Manifest) { m.Cmdline = "a\x00b" }, is: ErrInvalid, want: []string{"NUL", "offset 1"}},
		{name: "all problems at once", change: func(m *Manifest) {
			m.Version = 3
			m.Modules[0].Size = 0
			m.Cmdline = strings.Repeat("x", MaxCmdline)
		}, is: ErrCmdlineTooLong, want: []string{"version 3", "size 0", "2048 bytes"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.change(m)
			err := m.Validate()
			if tt.is == nil {
				if err != nil {
					t.Fatalf("Validate = %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, tt.is) {
				t.Fatalf("Validate = %v, want an error wrapping %v", err, tt.is)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Validate = %q, want it to contain %q", err, w)
				}
			}
		})
	}
	if err := (*Manifest)(nil).Validate(); !errors.Is(err, ErrInvalid) {
		t.Errorf("nil.Validate = %v, want ErrInvalid", err)
	}
}

const validJSON = `{
  "version": 1,
  "name": "v1",
  "cmdline": "console=ttyS0 quiet",
  "modules": [
    {"name": "vmlinuz", "role": "kernel", "size": 8388608, "sha256": "` + "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" + `", "source": "vmlinuz"},
    {"name": "base.cpio.zst", "role": "initrd", "size": 3145728, "sha256": "` + "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb" + `", "source": "base.cpio.zst"},
    {"name": "site.cpio", "role": "initrd", "size": 512, "sha256": "` + "cccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccccc" + `"}
  ]
}
`

func TestParse(t *testing.T) {
	m, err := Parse(strings.NewReader(validJSON), "manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validManifest(), m); diff != "" {
		t.Errorf("Parse (-want +got):\n%s", diff)
	}
}

func TestParseBad(t *testing.T) {
	const name = "storage/manifest-v9.json"
	tests := []struct {
		name string
		json string
		is   error
		want []string
	}{
		{"newer schema", `{"version": 2, "future": {"x": 1}}`, ErrSchema, []string{"version 2", "reads version 1"}},
		{"no version", `{"cmdline": "", "modules": []}`, ErrSchema, []string{`no "version"`}},
		{"version not a number", `{"version": "1"}`, ErrInvalid, []string{"malformed JSON", "line 1"}},
		{"malformed", "{\n  \"version\": 1,\n  \"modules\": [\n", ErrInvalid, []string{"malformed JSON"}},
		{"syntax error with position", "{\n  \"version\": 1,\n  \"cmdline\": x\n}", ErrInvalid, []string{"malformed JSON at line 3, column"}},
		{"empty", "", ErrInvalid, []string{"malformed JSON"}},
		{"not an object", `[1, 2]`, ErrInvalid, []string{"malformed JSON"}},
		{"unknown field", strings.Replace(validJSON, `"name": "v1",`, `"name": "v1", "kernel_args": "x",`, 1), ErrInvalid, []string{"kernel_args"}},
		{"data after the object", validJSON + `{"version": 1}`, ErrInvalid, []string{"malformed JSON", "after top-level value"}},
		{"wrong type", strings.Replace(validJSON, `"size": 512`, `"size": "512"`, 1), ErrInvalid, []string{"size"}},
		{"two kernels", strings.Replace(validJSON, `"role": "initrd", "size": 512`, `"role": "kernel", "size": 512`, 1), ErrInvalid, []string{"2 kernel modules"}},
		{"cmdline too long", strings.Replace(validJSON, "console=ttyS0 quiet", strings.Repeat("y", 3000), 1), ErrCmdlineTooLong, []string{"3000 bytes"}},
		{"huge", `{"version": 1, "cmdline": "` + strings.Repeat("z", maxManifestBytes) + `"}`, ErrInvalid, []string{"larger than"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Parse(strings.NewReader(tt.json), name)
			if !errors.Is(err, tt.is) {
				t.Fatalf("Parse = %v, %v; want an error wrapping %v", m, err, tt.is)
			}
			for _, w := range append([]string{name}, tt.want...) {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("Parse = %q, want it to contain %q", err, w)
				}
			}
		})
	}
}

// testdata/manifest-v1.json is what Marshal writes for validManifest: the
// schema as a reader sees it.
func TestSchemaFixture(t *testing.T) {
	m, err := Load("testdata/manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validManifest(), m); diff != "" {
		t.Errorf("Load (-want +got):\n%s", diff)
	}
	fixture, err := os.ReadFile("testdata/manifest-v1.json")
	if err != nil {
		t.Fatal(err)
	}
	out, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(fixture), string(out)); diff != "" {
		t.Errorf("Marshal differs from the fixture (-fixture +Marshal):\n%s", diff)
	}
}

func TestLoadAndMarshal(t *testing.T) {
	dir := t.TempDir()
	b, err := validManifest().Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(b), "}\n") || !strings.Contains(string(b), "\n  \"modules\": [") {
		t.Errorf("Marshal is not indented JSON ending in a newline:\n%s", b)
	}
	path := writeFile(t, dir, "m.json", b)
	m, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(validManifest(), m); diff != "" {
		t.Errorf("Load(Marshal(m)) (-want +got):\n%s", diff)
	}

	missing := filepath.Join(dir, "missing.json")
	if _, err := Load(missing); !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), missing) {
		t.Errorf("Load(missing) = %v, want ErrNotExist naming the file", err)
	}
	bad := writeFile(t, dir, "bad.json", []byte(`{"version": 7}`))
	if _, err := Load(bad); !errors.Is(err, ErrSchema) || !strings.Contains(err.Error(), bad) {
		t.Errorf("Load(version 7) = %v, want ErrSchema naming the file", err)
	}

	invalid := validManifest()
	invalid.Modules = nil
	if _, err := invalid.Marshal(); !errors.Is(err, ErrInvalid) {
		t.Errorf("Marshal of a manifest without kernel = %v, want ErrInvalid", err)
	}
}

func TestAccessors(t *testing.T) {
	m := validManifest()
	if got := m.Kernel(); got.Name != "vmlinuz" {
		t.Errorf("Kernel() = %+v", got)
	}
	var names []string
	for _, mod := range m.Initrds() {
		names = append(names, mod.Name)
	}
	if diff := cmp.Diff([]string{"base.cpio.zst", "site.cpio"}, names); diff != "" {
		t.Errorf("Initrds() (-want +got):\n%s", diff)
	}
	if got, ok := m.Module("site.cpio"); !ok || got.Size != 512 {
		t.Errorf("Module(site.cpio) = %+v, %v", got, ok)
	}
	if _, ok := m.Module("nope"); ok {
		t.Error("Module(nope) found something")
	}
	if got := (&Manifest{}).Kernel(); got != (Module{}) {
		t.Errorf("Kernel() of an empty manifest = %+v", got)
	}
}

func TestCheckModule(t *testing.T) {
	kernel := fakeBzImage(nil)
	initrd := sampleNewc(t)
	tests := []struct {
		name string
		m    Module
		data []byte
		is   error
	}{
		{"kernel", Module{Name: "vmlinuz", Role: RoleKernel, Size: int64(len(kernel))}, kernel, nil},
		{"initrd", Module{Name: "site.cpio", Role: RoleInitrd, Size: int64(len(initrd))}, initrd, nil},
		{"initrd as kernel", Module{Name: "vmlinuz", Role: RoleKernel, Size: int64(len(initrd))}, initrd, ErrNotBzImage},
		{"kernel as initrd", Module{Name: "site.cpio", Role: RoleInitrd, Size: int64(len(kernel))}, kernel, ErrBadInitrd},
		{"unknown role", Module{Name: "board.dtb", Role: "dtb", Size: 4}, []byte("\xd0\x0d\xfe\xed"), ErrInvalid},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckModule(tt.m, strings.NewReader(string(tt.data)))
			if tt.is == nil {
				if err != nil {
					t.Fatalf("CheckModule = %v", err)
				}
				return
			}
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), `module "`+tt.m.Name+`"`) {
				t.Errorf("CheckModule = %v, want %v naming module %q", err, tt.is, tt.m.Name)
			}
		})
	}
}
