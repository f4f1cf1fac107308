package manifestsig_test

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

const manifest = `{
  "version": 1,
  "name": "v2",
  "cmdline": "console=ttyS0",
  "modules": [
    {"name": "vmlinuz", "role": "kernel", "size": 10, "sha256": "1111111111111111111111111111111111111111111111111111111111111111", "source": "vmlinuz"},
    {"name": "base.cpio", "role": "initrd", "size": 20, "sha256": "2222222222222222222222222222222222222222222222222222222222222222", "source": "base.cpio"}
  ]
}
`

func seeded(b byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{b}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

func TestVerify(t *testing.T) {
	pub, priv := seeded(1)
	other, otherPriv := seeded(2)
	good := manifestsig.Sign(priv, []byte(manifest))
	trust := manifestsig.NewTrustRoot("test", pub)

	flipped := *good
	flipped.Signature = bytes.Clone(good.Signature)
	flipped.Signature[10] ^= 1

	for _, tc := range []struct {
		name     string
		manifest string
		sig      *manifestsig.Signature
		want     error
	}{
		{"good", manifest, good, nil},
		{"unsigned", manifest, nil, manifestsig.ErrUnsigned},
		{"bad signature", manifest, &flipped, manifestsig.ErrBadSignature},
		{"wrong key", manifest, manifestsig.Sign(otherPriv, []byte(manifest)), manifestsig.ErrUnknownKey},
		{"modified manifest", strings.Replace(manifest, "console=ttyS0", "console=ttyS0 init=/bin/sh", 1), good, manifestsig.ErrBadSignature},
		{"modified module digest", strings.Replace(manifest, "2222222222222222", "3333333333333333", 1), good, manifestsig.ErrBadSignature},
		{"one byte appended", manifest + " ", good, manifestsig.ErrBadSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id, err := trust.Verify(&manifestsig.Signed{Manifest: []byte(tc.manifest), Signature: tc.sig})
			if !errors.Is(err, tc.want) || (tc.want == nil) != (err == nil) {
				t.Fatalf("Verify = %q, %v; want %v", id, err, tc.want)
			}
			if err == nil && id != manifestsig.KeyID(pub) {
				t.Errorf("key id %q, want %q", id, manifestsig.KeyID(pub))
			}
		})
	}

	// The signing key's id claimed by a signature of another key.
	forged := manifestsig.Sign(otherPriv, []byte(manifest))
	forged.KeyID = manifestsig.KeyID(pub)
	if err := manifestsig.Verify(pub, []byte(manifest), forged); !errors.Is(err, manifestsig.ErrBadSignature) {
		t.Errorf("a signature by another key under the trusted id: %v, want ErrBadSignature", err)
	}
	if err := manifestsig.Verify(other, []byte(manifest), good); !errors.Is(err, manifestsig.ErrBadSignature) {
		t.Errorf("verified with the wrong key: %v, want ErrBadSignature", err)
	}
	// The signature covers a domain-separated message, not the raw bytes.
	if ed25519.Verify(pub, []byte(manifest), good.Signature) {
		t.Error("the signature verifies over the bare manifest bytes: no domain separation")
	}
}

func TestSignatureRoundTrip(t *testing.T) {
	_, priv := seeded(1)
	sig := manifestsig.Sign(priv, []byte(manifest))
	b, err := sig.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	got, err := manifestsig.ParseSignature(b)
	if err != nil {
		t.Fatalf("ParseSignature(%s): %v", b, err)
	}
	if got.KeyID != sig.KeyID || !bytes.Equal(got.Signature, sig.Signature) {
		t.Errorf("round trip: got %+v, want %+v", got, sig)
	}
	for _, bad := range []string{
		`{}`,
		`not json`,
		strings.Replace(string(b), `"ed25519"`, `"rsa"`, 1),
		strings.Replace(string(b), sig.KeyID, "xyz", 1),
		strings.Replace(string(b), manifestsig.Schema, "fastreboot.manifest-signature.v9", 1),
		strings.Replace(string(b), `"schema"`, `"extra": 1, "schema"`, 1),
		`{"schema": "fastreboot.manifest-signature.v1", "algorithm": "ed25519", "key_id": "0011223344556677", "signature": "AAAA"}`,
	} {
		if _, err := manifestsig.ParseSignature([]byte(bad)); !errors.Is(err, manifestsig.ErrMalformed) {
			t.Errorf("ParseSignature(%.60q) = %v, want ErrMalformed", bad, err)
		}
	}
}

func TestKeyFilesAndTrustRoot(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "release")
	privPath, pubPath, pub, err := manifestsig.GenerateKeyFiles(prefix, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(privPath); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("private key %s: %v, mode %v; want 0600", privPath, err, fi.Mode().Perm())
	}
	// A second generation with the same prefix must not overwrite the key.
	if _, _, _, err := manifestsig.GenerateKeyFiles(prefix, nil); !errors.Is(err, fs.ErrExist) {
		t.Errorf("second key gen over the same prefix: %v, want fs.ErrExist", err)
	}
	// Nor follow a link planted where the private key goes.
	target := filepath.Join(dir, "target")
	os.WriteFile(target, []byte("keep"), 0o644)
	os.Symlink(target, filepath.Join(dir, "linked.key"))
	if _, _, _, err := manifestsig.GenerateKeyFiles(filepath.Join(dir, "linked"), nil); err == nil {
		t.Error("key gen followed a symbolic link at PREFIX.key")
	}
	if b, _ := os.ReadFile(target); string(b) != "keep" {
		t.Errorf("link target overwritten: %q", b)
	}
	if _, err := os.Stat(filepath.Join(dir, "linked.pub")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a failed key gen left its public key: %v", err)
	}

	priv, err := manifestsig.LoadPrivateKey(privPath)
	if err != nil {
		t.Fatal(err)
	}
	mpath := filepath.Join(dir, "m.json")
	os.WriteFile(mpath, []byte(manifest), 0o644)
	sig, _ := manifestsig.Sign(priv, []byte(manifest)).Marshal()

	// Unsigned first: ReadSigned says so without an error.
	s, err := manifestsig.ReadSigned(mpath)
	if err != nil || s.Signature != nil {
		t.Fatalf("ReadSigned of an unsigned manifest = %+v, %v", s, err)
	}
	os.WriteFile(manifestsig.SignaturePath(mpath), sig, 0o644)
	if s, err = manifestsig.ReadSigned(mpath); err != nil {
		t.Fatal(err)
	}

	// Trust roots: the file, and a directory of *.pub files.
	keysDir := filepath.Join(dir, "trust")
	os.Mkdir(keysDir, 0o755)
	other, _ := seeded(3)
	otherPEM, _ := manifestsig.MarshalPublicKey(other)
	os.WriteFile(filepath.Join(keysDir, "other.pub"), otherPEM, 0o644)
	os.WriteFile(filepath.Join(keysDir, "README"), []byte("not a key"), 0o644)
	for _, root := range []string{pubPath, keysDir} {
		tr, err := manifestsig.LoadTrustRoot(root)
		if err != nil {
			t.Fatal(err)
		}
		id, err := tr.Verify(s)
		if root == keysDir {
			// Only the other key is trusted there, until release.pub joins.
			if !errors.Is(err, manifestsig.ErrUnknownKey) {
				t.Errorf("trust root %s: %v, want ErrUnknownKey", root, err)
			}
			continue
		}
		if err != nil || id != manifestsig.KeyID(pub) {
			t.Errorf("trust root %s: Verify = %q, %v", root, id, err)
		}
	}
	b, _ := os.ReadFile(pubPath)
	os.WriteFile(filepath.Join(keysDir, "release.pub"), b, 0o644)
	tr, err := manifestsig.LoadTrustRoot(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.KeyIDs()) != 2 {
		t.Errorf("trust root of two files holds %v", tr.KeyIDs())
	}
	if _, err := tr.Verify(s); err != nil {
		t.Errorf("directory trust root: %v", err)
	}

	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	if _, err := manifestsig.LoadTrustRoot(empty); !errors.Is(err, manifestsig.ErrMalformed) {
		t.Errorf("empty trust root: %v, want ErrMalformed", err)
	}
	if _, err := manifestsig.LoadTrustRoot(privPath); !errors.Is(err, manifestsig.ErrMalformed) {
		t.Errorf("a private key as the trust root: %v, want ErrMalformed", err)
	}
}
