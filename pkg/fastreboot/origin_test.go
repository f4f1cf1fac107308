package fastreboot

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// signedOrigin signs m's JSON with a fixed key and returns the origin and
// the trust root holding the key.
func signedOrigin(t *testing.T, m *bootimage.Manifest, path string) (*ManifestOrigin, *manifestsig.TrustRoot) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	b, err := m.Marshal()
	if err != nil {
		t.Fatal(err)
	}
	o := &ManifestOrigin{Path: path, Signed: &manifestsig.Signed{Manifest: b, Signature: manifestsig.Sign(priv, b)}}
	return o, manifestsig.NewTrustRoot("test-trust", priv.Public().(ed25519.PublicKey))
}

// stageForResume stages m with origin o and returns the next generation's
// unpacked root.
func stageForResume(t *testing.T, m *bootimage.Manifest, dir string, o *ManifestOrigin) string {
	t.Helper()
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: loader})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Origin: o})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	return unpackHandoff(t, img.initrd, rep.HandoffBytes)
}

// TestResumeTrust: under a trust root, the next generation adopts the
// carried modules only when the handoff's manifest is signed by a trusted
// key and the signature covers the handoff manifest's modules; a carried
// module whose bytes were changed is adopted and fails its content check,
// so it is never used.
func TestResumeTrust(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	o, trust := signedOrigin(t, m, filepath.Join(dir, "m.json"))
	otherTrust := manifestsig.NewTrustRoot("other", ed25519.NewKeyFromSeed(bytes.Repeat([]byte{9}, ed25519.SeedSize)).Public().(ed25519.PublicKey))

	resume := func(root string, tr *manifestsig.TrustRoot) (*State, *modcache.Cache) {
		t.Helper()
		cache := newCache(t)
		st, err := Resume(ctx, cache, ResumeOptions{Root: root, StateDir: t.TempDir(), Trust: tr, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st, cache
	}

	t.Run("signed", func(t *testing.T) {
		st, cache := resume(stageForResume(t, m, dir, o), trust)
		if st.Trust == nil || st.Trust.SignedBy != o.Signed.Signature.KeyID || st.Trust.Error != "" {
			t.Fatalf("trust %+v", st.Trust)
		}
		if st.Rehydrated.Modules != 4 || cache.Stats().Modules != 4 {
			t.Errorf("rehydrated %+v", st.Rehydrated)
		}
		if st.Origin == nil || !bytes.Equal(st.Origin.Signed.Manifest, o.Signed.Manifest) || st.Origin.Path != o.Path {
			t.Errorf("state origin %+v", st.Origin)
		}
	})
	t.Run("no trust root", func(t *testing.T) {
		st, _ := resume(stageForResume(t, m, dir, nil), nil)
		if st.Trust != nil || st.Rehydrated.Modules != 4 {
			t.Errorf("without a trust root: trust %+v, rehydrated %+v", st.Trust, st.Rehydrated)
		}
	})
	for _, tc := range []struct {
		name   string
		origin *ManifestOrigin
		trust  *manifestsig.TrustRoot
		want   error
	}{
		{"unsigned", nil, trust, manifestsig.ErrUnsigned},
		{"path only", &ManifestOrigin{Path: "/boot/m.json"}, trust, manifestsig.ErrUnsigned},
		{"unknown key", o, otherTrust, manifestsig.ErrUnknownKey},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := stageForResume(t, m, dir, tc.origin)
			st, cache := resume(root, tc.trust)
			if st.Trust == nil || st.Trust.Error == "" || st.Trust.SignedBy != "" {
				t.Fatalf("trust %+v", st.Trust)
			}
			if _, err := VerifyOrigin(tc.trust, tc.origin, m); !errors.Is(err, tc.want) {
				t.Errorf("VerifyOrigin: %v, want %v", err, tc.want)
			}
			if st.Rehydrated.Modules != 0 || cache.Stats().Modules != 0 || st.Manifest == nil {
				t.Errorf("untrusted handoff: rehydrated %+v, cache %+v, manifest %v", st.Rehydrated, cache.Stats(), st.Manifest)
			}
			if left, _ := os.ReadDir(filepath.Join(root, HandoffModulesDir)); len(left) != 0 {
				t.Errorf("%d untrusted carried files left in RAM", len(left))
			}
		})
	}

	t.Run("handoff manifest other than the signed one", func(t *testing.T) {
		root := stageForResume(t, m, dir, o)
		// An attacker rewrites handoff.json to name another initrd digest.
		p := filepath.Join(root, HandoffFile)
		b, _ := os.ReadFile(p)
		h, err := DecodeHandoff(bytes.NewReader(b))
		if err != nil {
			t.Fatal(err)
		}
		h.Manifest.Modules[1].Source = "evil.cpio"
		var js bytes.Buffer
		if _, err := WriteHandoffPiece(&js, h, nil); err != nil {
			t.Fatal(err)
		}
		b = handoffJSONOf(t, js.Bytes())
		os.WriteFile(p, b, 0o644)
		st, _ := resume(root, trust)
		if st.Trust == nil || !strings.Contains(st.Trust.Error, "other modules than the signed manifest") {
			t.Errorf("trust %+v", st.Trust)
		}
	})

	t.Run("tampered carried module", func(t *testing.T) {
		root := stageForResume(t, m, dir, o)
		initrd := m.Initrds()[0]
		p := filepath.Join(root, HandoffModulesDir, initrd.SHA256)
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		b[len(b)/2] ^= 0xff
		os.WriteFile(p, b, 0o644)
		st, cache := resume(root, trust)
		if st.Trust.Error != "" || st.Rehydrated.Modules != 4 {
			t.Fatalf("trust %+v, rehydrated %+v", st.Trust, st.Rehydrated)
		}
		// The content check runs before any use: the module is dropped.
		rep, err := cache.VerifyPending(ctx)
		if !errors.Is(err, modcache.ErrDigestMismatch) || len(rep.Bad) != 1 || rep.Bad[0] != initrd.SHA256 {
			t.Fatalf("VerifyPending = %+v, %v; want %s to fail", rep, err, initrd.SHA256)
		}
		if _, err := cache.Get(initrd.SHA256); err == nil {
			t.Error("the tampered module is still cached")
		}
	})

	t.Run("stage refuses an origin of other modules", func(t *testing.T) {
		other := *m
		other.Modules = append([]bootimage.Module(nil), m.Modules...)
		other.Modules[0].Source = "/elsewhere/vmlinuz"
		mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}})
		_, err := mc.Stage(ctx, &other, modcache.DirSource(dir), StageOptions{Origin: o})
		if !errors.Is(err, manifestsig.ErrBadSignature) {
			t.Errorf("Stage with a mismatched origin: %v, want ErrBadSignature", err)
		}
	})
}
