package manifestsig_test

import (
	"bytes"
	"crypto/ed25519"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

// FuzzParseSignature: a signature file (outside input) either fails with
// ErrMalformed or parses into a document that marshals back to one that
// parses the same; only the key's own signature verifies.
func FuzzParseSignature(f *testing.F) {
	pub, priv := seeded(1)
	good, _ := manifestsig.Sign(priv, []byte(manifest)).Marshal()
	f.Add(good)
	f.Add([]byte(`{"schema": "fastreboot.manifest-signature.v1", "algorithm": "ed25519", "key_id": "0011223344556677", "signature": ""}`))
	f.Add([]byte(`{}`))
	trust := manifestsig.NewTrustRoot("fuzz", pub)
	// ed25519 signatures are deterministic: the only one that verifies.
	want := manifestsig.Sign(priv, []byte(manifest)).Signature
	f.Fuzz(func(t *testing.T, b []byte) {
		s, err := manifestsig.ParseSignature(b)
		if err != nil {
			return
		}
		again, err := s.Marshal()
		if err != nil {
			t.Fatal(err)
		}
		s2, err := manifestsig.ParseSignature(again)
		if err != nil || s2.KeyID != s.KeyID || !bytes.Equal(s2.Signature, s.Signature) {
			t.Fatalf("round trip of %q: %+v, %v", b, s2, err)
		}
		if _, err := trust.Verify(&manifestsig.Signed{Manifest: []byte(manifest), Signature: s}); err == nil && !bytes.Equal(s.Signature, want) {
			t.Fatalf("a signature other than the key's verified: %q", b)
		}
	})
}

// FuzzParsePublicKeys: a trust root file (outside input) either fails or
// yields ed25519 keys of the right size.
func FuzzParsePublicKeys(f *testing.F) {
	pub, _ := seeded(1)
	pem, _ := manifestsig.MarshalPublicKey(pub)
	f.Add(pem)
	f.Add(append(bytes.Clone(pem), pem...))
	f.Add([]byte("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := manifestsig.ParsePublicKeys(b)
		if err != nil {
			return
		}
		for _, k := range keys {
			if len(k) != ed25519.PublicKeySize {
				t.Fatalf("a key of %d bytes from %q", len(k), b)
			}
		}
	})
}
