package bootimage

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"path/filepath"
)

// FromFiles builds a manifest from a kernel file, initrd files (in unpack
// order) and a command line. Each file is hashed and its content checked
// (CheckKernelPayload, CheckInitrd); modules are named by the file's base name and
// their Source is the path as given. The result is validated, so two
// initrds with the same base name are an error. Errors name the file.
func FromFiles(kernel string, initrds []string, cmdline string) (*Manifest, error) {
	m := &Manifest{Version: SchemaVersion, Cmdline: cmdline}
	k, err := moduleFromFile(kernel, RoleKernel)
	if err != nil {
		return nil, err
	}
	m.Modules = append(m.Modules, k)
	for _, path := range initrds {
		mod, err := moduleFromFile(path, RoleInitrd)
		if err != nil {
			return nil, err
		}
		m.Modules = append(m.Modules, mod)
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

func moduleFromFile(path string, role Role) (Module, error) {
	// OpenFile refuses a FIFO or a device without blocking; the file is
	// read no further than the size fstat gave (a file growing meanwhile
	// is not followed).
	f, size, err := OpenFile(path)
	if err != nil {
		return Module{}, fmt.Errorf("%s: %w", role, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, &sizedReader{r: f, path: path, left: size, size: size})
	if err != nil {
		return Module{}, fmt.Errorf("hash %s: %w", path, err)
	}
	mod := Module{
		Name:   filepath.Base(path),
		Role:   role,
		Size:   n,
		SHA256: hex.EncodeToString(h.Sum(nil)),
		Source: path,
	}
	switch role {
	case RoleKernel:
		err = CheckKernelPayload(f, n)
	case RoleInitrd:
		err = CheckInitrd(f, n)
	}
	if err != nil {
		return Module{}, fmt.Errorf("%s: %w", path, err)
	}
	return mod, nil
}
