package bootimage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
)

// SchemaVersion is the manifest schema this package reads and writes.
const SchemaVersion = 1

// MaxCmdline is the x86 COMMAND_LINE_SIZE: the kernel keeps at most
// MaxCmdline-1 bytes of command line plus the terminating NUL, so a
// manifest's Cmdline must be shorter than MaxCmdline.
const MaxCmdline = 2048

// maxManifestBytes bounds what Parse reads: a manifest is a few hundred
// bytes per module, so anything near this size is not a manifest.
const maxManifestBytes = 4 << 20

// Sentinel errors. Every error this package returns for one of these
// conditions wraps the sentinel, so callers test with errors.Is.
var (
	// ErrSchema means the manifest's schema version is not SchemaVersion.
	ErrSchema = errors.New("bootimage: unsupported manifest schema")
	// ErrInvalid means a manifest is structurally wrong: no kernel, two
	// kernels, duplicate names, a bad digest or size, malformed JSON.
	ErrInvalid = errors.New("bootimage: invalid manifest")
	// ErrCmdlineTooLong means the command line does not fit MaxCmdline.
	ErrCmdlineTooLong = errors.New("bootimage: kernel command line too long")
	// ErrNotBzImage means a kernel module is not a bzImage that
	// kexec_file_load can load on x86-64.
	ErrNotBzImage = errors.New("bootimage: not a loadable bzImage")
	// ErrBadInitrd means an initrd module is not something the kernel's
	// init/initramfs.c unpacks completely.
	ErrBadInitrd = errors.New("bootimage: bad initrd")
)

// Role says what a module is in the boot image.
type Role string

// Module roles.
const (
	RoleKernel Role = "kernel"
	RoleInitrd Role = "initrd"
)

// Module is one piece of a boot image, identified by its content.
type Module struct {
	// Name is unique within a manifest (e.g. "vmlinuz", "base.cpio.gz").
	Name string `json:"name"`
	Role Role   `json:"role"`
	Size int64  `json:"size"`
	// SHA256 is the lowercase hex SHA-256 of the module's bytes.
	SHA256 string `json:"sha256"`
	// Source says where storage holds the module: a path, relative to the
	// manifest's directory unless absolute. Empty for modules that only
	// live in the cache.
	Source string `json:"source,omitempty"`
}

// Manifest describes a boot image: one kernel, the initrd pieces in the
// order they are concatenated, and the kernel command line.
type Manifest struct {
	Version int    `json:"version"`
	Name    string `json:"name,omitempty"`
	Cmdline string `json:"cmdline"`
	// Modules holds exactly one kernel; initrd pieces appear in the order
	// the kernel unpacks them (later files overwrite earlier ones).
	Modules []Module `json:"modules"`
}

// Parse reads a JSON manifest from r and validates it. name (usually the
// file's path) prefixes every error. A manifest of another schema version
// gives an error wrapping ErrSchema; malformed JSON, unknown fields and
// structural problems give errors wrapping ErrInvalid (or
// ErrCmdlineTooLong).
func Parse(r io.Reader, name string) (*Manifest, error) {
	data, err := io.ReadAll(io.LimitReader(r, maxManifestBytes+1))
	if err != nil {
		return nil, fmt.Errorf("%s: read manifest: %w", name, err)
	}
	if len(data) > maxManifestBytes {
		return nil, fmt.Errorf("%s: %w: larger than %d bytes", name, ErrInvalid, maxManifestBytes)
	}

	// Look at the version first, so that a manifest from a newer schema
	// is reported as such rather than as a pile of unknown fields. This
	// also refuses anything but one JSON value.
	var probe struct {
		Version *int `json:"version"`
	}
	if err := json.Unmarshal(data, &probe); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, ErrInvalid, describeJSONError(data, err))
	}
	if probe.Version == nil {
		return nil, fmt.Errorf("%s: %w: no \"version\" field (this build reads version %d)", name, ErrSchema, SchemaVersion)
	}
	if *probe.Version != SchemaVersion {
		return nil, fmt.Errorf("%s: %w: version %d (this build reads version %d)", name, ErrSchema, *probe.Version, SchemaVersion)
	}

	var m Manifest
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, fmt.Errorf("%s: %w: %s", name, ErrInvalid, describeJSONError(data, err))
	}
	if err := m.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &m, nil
}

// describeJSONError turns a decoding error into text with a line and
// column where the decoder knows the offset.
func describeJSONError(data []byte, err error) string {
	var off int64 = -1
	var syn *json.SyntaxError
	var typ *json.UnmarshalTypeError
	switch {
	case errors.As(err, &syn):
		off = syn.Offset
	case errors.As(err, &typ):
		off = typ.Offset
	}
	if off < 0 || off > int64(len(data)) {
		return "malformed JSON: " + err.Error()
	}
	line := 1 + bytes.Count(data[:off], []byte("\n"))
	col := off - int64(bytes.LastIndexByte(data[:off], '\n'))
	return fmt.Sprintf("malformed JSON at line %d, column %d: %v", line, col, err)
}

// Load reads and validates the manifest in the file at path. Errors name
// the path. A path that is not a regular file (a FIFO, a device) is
// refused without blocking (OpenFile).
func Load(path string) (*Manifest, error) {
	f, _, err := OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return Parse(f, path)
}

// Marshal validates m and encodes it as indented JSON ending in a newline,
// the form Load reads.
func (m *Manifest) Marshal() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("bootimage: marshal manifest: %w", err)
	}
	return append(b, '\n'), nil
}

// Validate checks the structure of m: the schema version, exactly one
// kernel, known roles, unique non-empty names, 64-hex-digit lowercase
// SHA-256 digests, positive sizes and the command line length. It does
// not look at module contents (see CheckModule). All problems found are
// returned together; each wraps ErrSchema, ErrInvalid or
// ErrCmdlineTooLong.
func (m *Manifest) Validate() error {
	if m == nil {
		return fmt.Errorf("%w: nil manifest", ErrInvalid)
	}
	var errs []error
	if m.Version != SchemaVersion {
		errs = append(errs, fmt.Errorf("%w: version %d (this build reads version %d)", ErrSchema, m.Version, SchemaVersion))
	}

	var kernels []string
	seen := make(map[string]int, len(m.Modules))
	for i, mod := range m.Modules {
		what := fmt.Sprintf("module %d (%q)", i, mod.Name)
		if mod.Name == "" {
			errs = append(errs, fmt.Errorf("%w: module %d has no name", ErrInvalid, i))
		} else if j, dup := seen[mod.Name]; dup {
			errs = append(errs, fmt.Errorf("%w: duplicate module name %q (modules %d and %d)", ErrInvalid, mod.Name, j, i))
		} else {
			seen[mod.Name] = i
		}
		switch mod.Role {
		case RoleKernel:
			kernels = append(kernels, fmt.Sprintf("%q", mod.Name))
		case RoleInitrd:
		default:
			errs = append(errs, fmt.Errorf("%w: %s: unknown role %q (want %q or %q)", ErrInvalid, what, mod.Role, RoleKernel, RoleInitrd))
		}
		if !IsSHA256Hex(mod.SHA256) {
			errs = append(errs, fmt.Errorf("%w: %s: bad sha256 %q: want 64 lowercase hex digits", ErrInvalid, what, mod.SHA256))
		}
		if mod.Size <= 0 {
			errs = append(errs, fmt.Errorf("%w: %s: size %d: must be positive", ErrInvalid, what, mod.Size))
		}
	}
	switch len(kernels) {
	case 0:
		errs = append(errs, fmt.Errorf("%w: no kernel module", ErrInvalid))
	case 1:
	default:
		errs = append(errs, fmt.Errorf("%w: %d kernel modules (%s): want exactly one", ErrInvalid, len(kernels), strings.Join(kernels, ", ")))
	}

	if n := len(m.Cmdline); n >= MaxCmdline {
		errs = append(errs, fmt.Errorf("%w: %d bytes, at most %d fit (COMMAND_LINE_SIZE %d includes the NUL)", ErrCmdlineTooLong, n, MaxCmdline-1, MaxCmdline))
	}
	if i := strings.IndexByte(m.Cmdline, 0); i >= 0 {
		errs = append(errs, fmt.Errorf("%w: command line has a NUL byte at offset %d", ErrInvalid, i))
	}
	return errors.Join(errs...)
}

// IsSHA256Hex reports whether s is a SHA-256 as manifests, the cache and
// the handoff write it: 64 lowercase hex digits.
func IsSHA256Hex(s string) bool {
	if len(s) != 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

// Kernel returns the manifest's kernel module, or the zero Module if it
// has none (Validate reports that).
func (m *Manifest) Kernel() Module {
	for _, mod := range m.Modules {
		if mod.Role == RoleKernel {
			return mod
		}
	}
	return Module{}
}

// Initrds returns the initrd modules in the order the kernel unpacks them.
func (m *Manifest) Initrds() []Module {
	var out []Module
	for _, mod := range m.Modules {
		if mod.Role == RoleInitrd {
			out = append(out, mod)
		}
	}
	return out
}

// Module returns the module called name.
func (m *Manifest) Module(name string) (Module, bool) {
	for _, mod := range m.Modules {
		if mod.Name == name {
			return mod, true
		}
	}
	return Module{}, false
}
