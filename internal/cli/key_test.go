package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

func TestKeyGenSignVerify(t *testing.T) {
	im, _ := testimage.Update()
	m, path := im.WriteTemp(t)
	h := newHarness(t)
	keys := t.TempDir()
	prefix := filepath.Join(keys, "release")

	if r := h.run("key", "gen", "-o", prefix); r.code != ExitOK || !strings.Contains(r.stdout, prefix+".key") {
		t.Fatalf("key gen: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	if fi, err := os.Stat(prefix + ".key"); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("private key: %v, mode %v", err, fi.Mode())
	}
	if r := h.run("key", "gen", "-o", prefix); r.code != ExitFailed || !strings.Contains(r.stderr, "exists") {
		t.Errorf("key gen over an existing key: exit %d, %q", r.code, r.stderr)
	}

	// Unsigned: verify names the manifest and the reason.
	r := h.run("key", "verify", "-p", prefix+".pub", path)
	if r.code != ExitFailed || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "not signed") {
		t.Errorf("verify unsigned: exit %d, %q", r.code, r.stderr)
	}
	if r := h.run("key", "sign", "-k", prefix+".key", path); r.code != ExitOK {
		t.Fatalf("key sign: exit %d, %q", r.code, r.stderr)
	}
	if _, err := os.Stat(path + ".sig"); err != nil {
		t.Fatal(err)
	}
	if r := h.run("key", "verify", "-p", prefix+".pub", path); r.code != ExitOK || !strings.Contains(r.stdout, "good signature") {
		t.Errorf("verify: exit %d, %q %q", r.code, r.stdout, r.stderr)
	}
	var doc keyVerifyV1
	decodeStdout(t, h.run("key", "verify", "--json", "-p", keys, path), &doc)
	if doc.Schema != schemaKeyVerify || doc.Modules != len(m.Modules) || doc.KeyID == "" || doc.TrustRoot != keys {
		t.Errorf("verify --json: %+v", doc)
	}
	// The global trust root serves when -p is not given.
	if r := h.run("--trust", keys, "key", "verify", path); r.code != ExitOK {
		t.Errorf("verify with --trust: exit %d, %q", r.code, r.stderr)
	}

	// Another key does not verify it; a changed manifest does not verify.
	other := filepath.Join(t.TempDir(), "other")
	h.run("key", "gen", "-o", other)
	r = h.run("key", "verify", "--json", "-p", other+".pub", path)
	if r.code != ExitFailed || !strings.Contains(r.stdout, "manifestsig.unknown_key") {
		t.Errorf("verify with another key: exit %d, %q", r.code, r.stdout)
	}
	b, _ := os.ReadFile(path)
	os.WriteFile(path, []byte(strings.Replace(string(b), m.Cmdline, m.Cmdline+" init=/bin/sh", 1)), 0o644)
	r = h.run("key", "verify", "--json", "-p", prefix+".pub", path)
	if r.code != ExitFailed || !strings.Contains(r.stdout, "manifestsig.bad_signature") {
		t.Errorf("verify a changed manifest: exit %d, %q", r.code, r.stdout)
	}

	// Only manifests are signed.
	junk := filepath.Join(t.TempDir(), "junk.json")
	os.WriteFile(junk, []byte("{}"), 0o644)
	if r := h.run("key", "sign", "-k", prefix+".key", junk); r.code != ExitFailed {
		t.Errorf("signing a non-manifest: exit %d", r.code)
	}
	if _, err := os.Stat(manifestsig.SignaturePath(junk)); err == nil {
		t.Error("a signature was written for a non-manifest")
	}
	if r := h.run("key", "verify", path); r.code != ExitUsage {
		t.Errorf("verify without a key or trust root: exit %d, %q", r.code, r.stderr)
	}
}
