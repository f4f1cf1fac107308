package manifestsig

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// DefaultTrustRoot is the trust root fastreboot uses when none is given:
// when this directory exists, every manifest must be signed by one of the
// keys of its *.pub files.
const DefaultTrustRoot = "/etc/fastreboot/trust"

// TrustRoot is the set of public keys whose manifest signatures a machine
// accepts.
type TrustRoot struct {
	// Path is the file or directory the keys were read from.
	Path string
	keys map[string]ed25519.PublicKey
}

// NewTrustRoot returns a trust root holding keys; path only names it in
// messages.
func NewTrustRoot(path string, keys ...ed25519.PublicKey) *TrustRoot {
	t := &TrustRoot{Path: path, keys: make(map[string]ed25519.PublicKey, len(keys))}
	for _, k := range keys {
		t.keys[KeyID(k)] = k
	}
	return t
}

// LoadTrustRoot reads a trust root: the public keys of the file at path,
// or, when path is a directory, of every *.pub file in it (other files
// are ignored, so a directory may hold notes or key backups). A trust root
// without any key is an error wrapping ErrMalformed: it would refuse every
// manifest, which is never what was meant.
func LoadTrustRoot(path string) (*TrustRoot, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("trust root: %w", err)
	}
	files := []string{path}
	if fi.IsDir() {
		files, err = filepath.Glob(filepath.Join(path, "*"+PublicKeySuffix))
		if err != nil {
			return nil, fmt.Errorf("trust root %s: %w", path, err)
		}
		sort.Strings(files)
	}
	t := NewTrustRoot(path)
	for _, f := range files {
		b, err := readFile(f)
		if err != nil {
			return nil, fmt.Errorf("trust root: %w", err)
		}
		keys, err := ParsePublicKeys(b)
		if err != nil {
			return nil, fmt.Errorf("trust root: %s: %w", f, err)
		}
		for _, k := range keys {
			t.keys[KeyID(k)] = k
		}
	}
	if len(t.keys) == 0 {
		return nil, fmt.Errorf("trust root %s: %w: no public key (*%s files)", path, ErrMalformed, PublicKeySuffix)
	}
	return t, nil
}

// KeyIDs returns the ids of the trust root's keys, sorted.
func (t *TrustRoot) KeyIDs() []string {
	ids := make([]string, 0, len(t.keys))
	for id := range t.keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Verify checks that s's signature was made over s's manifest bytes by a
// key of the trust root, and returns that key's id. Errors wrap
// ErrUnsigned (no signature), ErrUnknownKey (a key the trust root does
// not hold) or ErrBadSignature.
func (t *TrustRoot) Verify(s *Signed) (string, error) {
	if s == nil || s.Signature == nil {
		return "", fmt.Errorf("%w (trust root %s)", ErrUnsigned, t.Path)
	}
	k, ok := t.keys[s.Signature.KeyID]
	if !ok {
		return "", fmt.Errorf("%w: key %s (trust root %s holds %s)", ErrUnknownKey, s.Signature.KeyID, t.Path, strings.Join(t.KeyIDs(), ", "))
	}
	if err := Verify(k, s.Manifest, s.Signature); err != nil {
		return "", err
	}
	return s.Signature.KeyID, nil
}
