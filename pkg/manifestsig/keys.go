package manifestsig

import (
	"crypto/ed25519"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
)

// PEM block types of the key files.
const (
	pemPrivate = "PRIVATE KEY"
	pemPublic  = "PUBLIC KEY"
)

// Key file suffixes GenerateKeyFiles appends to its prefix.
const (
	PrivateKeySuffix = ".key"
	PublicKeySuffix  = ".pub"
)

// MarshalPrivateKey encodes priv as a PKCS #8 PEM block.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("manifestsig: encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivate, Bytes: der}), nil
}

// MarshalPublicKey encodes pub as a PKIX PEM block.
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("manifestsig: encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPublic, Bytes: der}), nil
}

// ParsePrivateKey decodes the first PEM block of b as a PKCS #8 ed25519
// private key. Errors wrap ErrMalformed.
func ParsePrivateKey(b []byte) (ed25519.PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != pemPrivate {
		return nil, fmt.Errorf("%w: no %q PEM block", ErrMalformed, pemPrivate)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: a %T private key, want ed25519", ErrMalformed, k)
	}
	return priv, nil
}

// ParsePublicKeys decodes every PEM block of b as a PKIX ed25519 public
// key; b must hold at least one. Errors wrap ErrMalformed.
func ParsePublicKeys(b []byte) ([]ed25519.PublicKey, error) {
	var keys []ed25519.PublicKey
	for {
		var blk *pem.Block
		blk, b = pem.Decode(b)
		if blk == nil {
			break
		}
		if blk.Type != pemPublic {
			return nil, fmt.Errorf("%w: a %q PEM block, want %q", ErrMalformed, blk.Type, pemPublic)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("%w: a %T public key, want ed25519", ErrMalformed, k)
		}
		keys = append(keys, pub)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("%w: no %q PEM block", ErrMalformed, pemPublic)
	}
	return keys, nil
}

// LoadPrivateKey reads the private key file at path. Errors name it.
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := readFile(path)
	if err != nil {
		return nil, err
	}
	k, err := ParsePrivateKey(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return k, nil
}

// GenerateKeyFiles makes a new ed25519 key pair from rand (nil means
// crypto/rand) and writes prefix.key (the private key, mode 0600) and
// prefix.pub (the public key, mode 0644). Neither file may exist: both are
// created with O_EXCL, so an existing key is never overwritten and a
// symbolic link planted at either path is not followed. Both files and
// their directory are fsynced before it returns. On failure nothing is
// left behind. It returns the two paths and the public key.
func GenerateKeyFiles(prefix string, rand io.Reader) (privPath, pubPath string, pub ed25519.PublicKey, err error) {
	pub, priv, err := ed25519.GenerateKey(rand)
	if err != nil {
		return "", "", nil, fmt.Errorf("manifestsig: generate key: %w", err)
	}
	privPEM, err := MarshalPrivateKey(priv)
	if err != nil {
		return "", "", nil, err
	}
	pubPEM, err := MarshalPublicKey(pub)
	if err != nil {
		return "", "", nil, err
	}
	privPath, pubPath = prefix+PrivateKeySuffix, prefix+PublicKeySuffix
	if err := writeExcl(privPath, privPEM, 0o600); err != nil {
		return "", "", nil, err
	}
	if err := writeExcl(pubPath, pubPEM, 0o644); err != nil {
		os.Remove(privPath)
		return "", "", nil, err
	}
	// The new entries are in the directory, which must reach the disk
	// too, or a crash can lose the key just reported written (both files
	// are in prefix's directory).
	if err := syncDir(filepath.Dir(privPath)); err != nil {
		os.Remove(privPath)
		os.Remove(pubPath)
		return "", "", nil, fmt.Errorf("manifestsig: making %s and %s durable: %w", privPath, pubPath, err)
	}
	return privPath, pubPath, pub, nil
}

// syncDir fsyncs a directory; tests replace it.
var syncDir = atomicfile.SyncDir

// writeExcl creates path (O_EXCL: it must not exist, a symbolic link
// included) with mode perm, writes b and syncs it; on failure it removes
// what it created.
func writeExcl(path string, b []byte, perm os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return err // *PathError names the file; fs.ErrExist if it exists
	}
	// The umask may have taken bits off perm; a private key must not have
	// more than perm either way.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(b)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return err // *PathError names the file
	}
	return nil
}
