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
	var doc KeyVerifyV1
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

// TestTrustRootCLI: with --trust (or the default trust directory under
// --root), stage refuses an unsigned manifest naming it and the reason,
// stages it once signed, and status says which trust root is set.
func TestTrustRootCLI(t *testing.T) {
	im, _ := testimage.Update()
	_, path := im.WriteTemp(t)
	h := newHarness(t)
	if r := h.run("--no-daemon", "status"); !strings.Contains(r.stdout, "trust root: none") {
		t.Errorf("status without a trust root: %q", r.stdout)
	}
	prefix := filepath.Join(h.root, "etc/fastreboot/trust/release")
	os.MkdirAll(filepath.Dir(prefix), 0o755)
	if r := h.run("key", "gen", "-o", prefix); r.code != ExitOK {
		t.Fatal(r.stderr)
	}
	r := h.run("--no-daemon", "stage", "--dry-run", path)
	if r.code != ExitFailed || !strings.Contains(r.stderr, path) || !strings.Contains(r.stderr, "not signed") {
		t.Errorf("stage of an unsigned manifest under the default trust root: exit %d, %q", r.code, r.stderr)
	}
	r = h.run("--no-daemon", "stage", "--json", "--dry-run", path)
	if !strings.Contains(r.stdout, `"manifestsig.unsigned"`) {
		t.Errorf("stage --json error kinds: %q", r.stdout)
	}
	h.run("key", "sign", "-k", prefix+".key", path)
	if r := h.run("--no-daemon", "stage", "--dry-run", path); r.code != ExitOK {
		t.Errorf("stage of the signed manifest: exit %d, %q", r.code, r.stderr)
	}
	var st StatusV1
	decodeStdout(t, h.run("--no-daemon", "status", "--json"), &st)
	if st.Trust == nil || st.Trust.Root != filepath.Dir(prefix) || len(st.Trust.Keys) != 1 {
		t.Errorf("status --json trust: %+v", st.Trust)
	}
	// --trust names another root; one without keys is an error.
	empty := t.TempDir()
	if r := h.run("--no-daemon", "--trust", empty, "stage", "--dry-run", path); r.code != ExitFailed || !strings.Contains(r.stderr, "no public key") {
		t.Errorf("stage with an empty trust root: exit %d, %q", r.code, r.stderr)
	}
}
