package manifestsig

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// Schema names the signature document's shape and version.
const Schema = "fastreboot.manifest-signature.v1"

// Algorithm is the only signature algorithm.
const Algorithm = "ed25519"

// SignatureSuffix is appended to a manifest's path to name its signature.
const SignatureSuffix = ".sig"

// domain prefixes every signed message (see SignedMessage).
const domain = "fastreboot-manifest-v1\x00"

// maxFileBytes bounds what this package reads from a signature, key or
// manifest file (bootimage reads manifests of at most 4 MiB).
const maxFileBytes = 4 << 20

// Sentinel errors. Every error this package returns for one of these
// conditions wraps the sentinel, so callers test with errors.Is.
var (
	// ErrUnsigned means a manifest has no signature where one is
	// required (a trust root is set).
	ErrUnsigned = errors.New("manifestsig: manifest is not signed")
	// ErrBadSignature means the signature does not verify: the manifest
	// changed since it was signed, or the signature was not made with the
	// key it names.
	ErrBadSignature = errors.New("manifestsig: bad manifest signature")
	// ErrUnknownKey means the signature names a key the trust root does
	// not hold.
	ErrUnknownKey = errors.New("manifestsig: manifest signed by a key the trust root does not hold")
	// ErrMalformed means a signature or key file cannot be parsed, or a
	// trust root holds no key.
	ErrMalformed = errors.New("manifestsig: malformed signature or key")
)

// Signature is a detached manifest signature, the document of a
// MANIFEST.sig file.
type Signature struct {
	Schema    string `json:"schema"`
	Algorithm string `json:"algorithm"`
	// KeyID is KeyID of the public key that verifies Signature.
	KeyID string `json:"key_id"`
	// Signature is the ed25519 signature of SignedMessage(manifest); JSON
	// holds it in standard base64.
	Signature []byte `json:"signature"`
}

// KeyID returns the identifier of pub: the hex of the first 8 bytes of the
// SHA-256 of its raw 32 bytes.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:8])
}

// SignedMessage returns what a signature covers: a fixed domain prefix
// ("fastreboot-manifest-v1" and a NUL byte) followed by the manifest's
// exact bytes.
func SignedMessage(manifest []byte) []byte {
	msg := make([]byte, 0, len(domain)+len(manifest))
	return append(append(msg, domain...), manifest...)
}

// Sign signs the manifest's exact bytes with priv.
func Sign(priv ed25519.PrivateKey, manifest []byte) *Signature {
	return &Signature{
		Schema:    Schema,
		Algorithm: Algorithm,
		KeyID:     KeyID(priv.Public().(ed25519.PublicKey)),
		Signature: ed25519.Sign(priv, SignedMessage(manifest)),
	}
}

// Marshal encodes s as the indented JSON document of a signature file,
// ending in a newline.
func (s *Signature) Marshal() ([]byte, error) {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("manifestsig: encode signature: %w", err)
	}
	return append(b, '\n'), nil
}

// ParseSignature decodes and checks a signature document: the schema, the
// algorithm, a 16-hex-digit key id and a 64-byte signature. Errors wrap
// ErrMalformed.
func ParseSignature(b []byte) (*Signature, error) {
	var s Signature
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	switch {
	case s.Schema != Schema:
		return nil, fmt.Errorf("%w: schema %q, this build reads %q", ErrMalformed, s.Schema, Schema)
	case s.Algorithm != Algorithm:
		return nil, fmt.Errorf("%w: algorithm %q, want %q", ErrMalformed, s.Algorithm, Algorithm)
	case len(s.KeyID) != 16 || !isHex(s.KeyID):
		return nil, fmt.Errorf("%w: key_id %q: want 16 hex digits", ErrMalformed, s.KeyID)
	case len(s.Signature) != ed25519.SignatureSize:
		return nil, fmt.Errorf("%w: signature of %d bytes, want %d", ErrMalformed, len(s.Signature), ed25519.SignatureSize)
	}
	return &s, nil
}

// Verify checks sig over the manifest's exact bytes with pub, whose KeyID
// must be the one sig names. Errors wrap ErrBadSignature.
func Verify(pub ed25519.PublicKey, manifest []byte, sig *Signature) error {
	if sig == nil {
		return ErrUnsigned
	}
	if id := KeyID(pub); id != sig.KeyID {
		return fmt.Errorf("%w: signed by key %s, verified with key %s", ErrBadSignature, sig.KeyID, id)
	}
	if !ed25519.Verify(pub, SignedMessage(manifest), sig.Signature) {
		return fmt.Errorf("%w: key %s: the signature does not match the manifest's bytes", ErrBadSignature, sig.KeyID)
	}
	return nil
}

// SignaturePath returns the path of the detached signature of the manifest
// at path: path + ".sig".
func SignaturePath(path string) string { return path + SignatureSuffix }

// Signed is a manifest's exact bytes with its signature, as read from
// storage (ReadSigned) or carried in a handoff.
type Signed struct {
	// Manifest is the manifest file's bytes.
	Manifest []byte `json:"manifest"`
	// Signature is nil when the manifest has no signature file.
	Signature *Signature `json:"signature,omitempty"`
}

// ReadSigned reads the manifest at path and its signature, path.sig. A
// missing signature file gives a Signed with a nil Signature (unsigned),
// not an error; a signature file that does not parse is an error naming it
// and wrapping ErrMalformed.
func ReadSigned(path string) (*Signed, error) {
	m, err := readFile(path)
	if err != nil {
		return nil, err
	}
	s := &Signed{Manifest: m}
	sp := SignaturePath(path)
	b, err := readFile(sp)
	if errors.Is(err, os.ErrNotExist) {
		return s, nil
	}
	if err != nil {
		return nil, err
	}
	if s.Signature, err = ParseSignature(b); err != nil {
		return nil, fmt.Errorf("%s: %w", sp, err)
	}
	return s, nil
}

// readFile reads at most maxFileBytes of a regular file, opened without
// blocking on a FIFO (bootimage.OpenFile); the error names the path.
func readFile(path string) ([]byte, error) {
	f, size, err := bootimage.OpenFile(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if size > maxFileBytes {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFileBytes)
	}
	b, err := io.ReadAll(io.LimitReader(f, size))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return b, nil
}

func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < '0' || c > '9') && (c < 'a' || c > 'f') {
			return false
		}
	}
	return true
}
