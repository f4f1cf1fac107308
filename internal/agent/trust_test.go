package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// newKey makes a key pair in a temporary directory and returns the
// private key's path and a trust root of the public key.
func newKey(t *testing.T) (string, *manifestsig.TrustRoot) {
	t.Helper()
	priv, pub, _, err := manifestsig.GenerateKeyFiles(filepath.Join(t.TempDir(), "k"), nil)
	if err != nil {
		t.Fatal(err)
	}
	trust, err := manifestsig.LoadTrustRoot(pub)
	if err != nil {
		t.Fatal(err)
	}
	return priv, trust
}

// sign writes path.sig with the private key at keyPath.
func sign(t *testing.T, keyPath, path string) {
	t.Helper()
	priv, err := manifestsig.LoadPrivateKey(keyPath)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := manifestsig.Sign(priv, b).Marshal()
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(manifestsig.SignaturePath(path), sig, 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestTrustRootRefusesUnsigned: under a trust root, every request that
// names a manifest (sync, stage, crash arm, crash estimate) refuses it,
// naming it and the reason, unless a trusted key signed its exact bytes;
// an inline manifest (which has no signature) is refused; the errors keep
// their kind across the daemon's socket.
func TestTrustRootRefusesUnsigned(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	keyPath, trust := newKey(t)
	otherKey, _ := newKey(t)
	a, l := newAgent(t, agent.Options{Root: crashRoot(t, 384<<20), Trust: trust})
	c, _ := serve(t, a)

	refused := func(what string, want error) {
		t.Helper()
		for name, s := range map[string]agent.Service{"in process": a, "socket": c} {
			checks := map[string]error{}
			_, checks["sync"] = s.Sync(ctx, agent.SyncRequest{Manifest: p})
			_, checks["stage"] = s.Stage(ctx, agent.StageRequest{Manifest: p, DryRun: true})
			_, checks["crash arm"] = s.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect})
			_, checks["crash estimate"] = s.CrashEstimate(ctx, agent.CrashEstimateRequest{Manifest: p})
			for op, err := range checks {
				if !errors.Is(err, want) || !strings.Contains(err.Error(), p) {
					t.Errorf("%s, %s of %s manifest: %v; want %v naming %s", name, op, what, err, want, p)
				}
			}
		}
	}
	refused("an unsigned", manifestsig.ErrUnsigned)
	sign(t, otherKey, p)
	refused("another key's", manifestsig.ErrUnknownKey)
	sign(t, keyPath, p)
	b, _ := os.ReadFile(p)
	os.WriteFile(p, append(b, ' '), 0o644)
	refused("a changed", manifestsig.ErrBadSignature)
	os.WriteFile(p, b, 0o644)
	if l.Calls() != 0 {
		t.Fatalf("the loader ran %d times for refused manifests", l.Calls())
	}

	// Signed: accepted, and the handoff carries the signed bytes.
	if _, err := c.Sync(ctx, agent.SyncRequest{Manifest: p}); err != nil {
		t.Fatalf("sync of the signed manifest: %v", err)
	}
	rep, err := c.Stage(ctx, agent.StageRequest{Manifest: p})
	if err != nil {
		t.Fatalf("stage of the signed manifest: %v", err)
	}
	root := t.TempDir()
	_, initrd, _ := l.last()
	unpackHandoff(t, initrd, rep, root)
	hb, err := os.ReadFile(filepath.Join(root, "fastreboot/handoff.json"))
	if err != nil || !strings.Contains(string(hb), `"origin"`) || !strings.Contains(string(hb), manifestsig.Schema) {
		t.Errorf("the handoff does not carry the signed manifest (%v): %.300s", err, hb)
	}

	// An inline manifest has no signature.
	_, err = c.Stage(ctx, agent.StageRequest{Inline: m, DryRun: true})
	if !errors.Is(err, manifestsig.ErrUnsigned) {
		t.Errorf("stage of an inline manifest under a trust root: %v, want ErrUnsigned", err)
	}
	in, err := c.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if in.Trust == nil || in.Trust.Root != trust.Path || len(in.Trust.Keys) != 1 {
		t.Errorf("Info.Trust = %+v", in.Trust)
	}
}

// TestTamperedCarriedModuleReread: the next generation verifies the
// handoff's signed manifest against its trust root and adopts the carried
// modules; the one whose bytes were changed in the handoff fails its
// content check, is dropped and is read again from storage, and Info
// warns about it.
func TestTamperedCarriedModuleReread(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	keyPath, trust := newKey(t)
	sign(t, keyPath, p)
	victim := m.Initrds()[1]
	root := crashRoot(t, 384<<20)
	carriedRoot(t, root, p, m, victim.Name)

	a, _ := newAgent(t, agent.Options{Root: root, Resume: true, Trust: trust})
	st := a.State()
	if st.Trust == nil || st.Trust.SignedBy == "" || st.Trust.Error != "" || st.Rehydrated.Modules != len(m.Modules) {
		t.Fatalf("resume under the trust root: trust %+v, rehydrated %+v", st.Trust, st.Rehydrated)
	}
	// The storage is not there yet when the daemon starts (mounted later
	// in the boot): the re-read is retried until it is.
	src := filepath.Join(filepath.Dir(p), victim.Source)
	if err := os.Rename(src, src+".away"); err != nil {
		t.Fatal(err)
	}
	if !a.VerifyCarried(ctx) {
		t.Fatal("VerifyCarried did not start")
	}
	waitWarning := func(want string) *agent.Info {
		t.Helper()
		for deadline := time.Now().Add(20 * time.Second); ; {
			in, err := a.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(strings.Join(in.Warnings, "\n"), want) {
				return in
			}
			if time.Now().After(deadline) {
				t.Fatalf("no warning %q: %q", want, in.Warnings)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitWarning("retrying")
	if err := os.Rename(src+".away", src); err != nil {
		t.Fatal(err)
	}
	in := waitWarning("read from storage again (")
	all := strings.Join(in.Warnings, "\n")
	if len(in.Warnings) != 2 || !strings.Contains(in.Warnings[0], victim.Name) || !strings.Contains(all, "read from storage again (") ||
		!strings.Contains(in.Warnings[1], victim.Name) {
		t.Errorf("warnings %q; want the drop of %s and its re-read", in.Warnings, victim.Name)
	}
	if in.Trust == nil || in.Trust.RunningSignedBy != st.Trust.SignedBy {
		t.Errorf("Info.Trust %+v", in.Trust)
	}
	ls, err := a.Cache(ctx)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mod := range ls.Modules {
		if mod.Digest == victim.SHA256 {
			found = mod.Origin == modcache.OriginStorage
		}
	}
	if !found || len(ls.Modules) != len(m.Modules) {
		t.Errorf("cache after the re-read: %+v; want all %d modules, %s from storage", ls.Modules, len(m.Modules), victim.Name)
	}
	// The running image is staged again from the cache alone.
	if _, err := a.Stage(ctx, agent.StageRequest{Current: true, DryRun: true}); err != nil {
		t.Errorf("stage --current after the re-read: %v", err)
	}
}

// TestUntrustedHandoff: a handoff whose manifest no trusted key signed is
// not adopted, and the running image is neither restaged nor armed from it.
func TestUntrustedHandoff(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	_, trust := newKey(t)
	root := crashRoot(t, 384<<20)
	carriedRoot(t, root, p, m, "")

	a, _ := newAgent(t, agent.Options{Root: root, Resume: true, Trust: trust})
	st := a.State()
	if st.Trust == nil || !strings.Contains(st.Trust.Error, "not signed") || st.Rehydrated.Modules != 0 {
		t.Fatalf("resume of an unsigned handoff: trust %+v, rehydrated %+v", st.Trust, st.Rehydrated)
	}
	if _, err := a.Stage(ctx, agent.StageRequest{Current: true, DryRun: true}); !errors.Is(err, manifestsig.ErrUnsigned) {
		t.Errorf("stage --current of an untrusted image: %v, want ErrUnsigned", err)
	}
	if _, err := a.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect}); !errors.Is(err, manifestsig.ErrUnsigned) {
		t.Errorf("crash arm of an untrusted image: %v, want ErrUnsigned", err)
	}
	// An estimate loads nothing: it is not a question of trust.
	if _, err := a.CrashEstimate(ctx, agent.CrashEstimateRequest{}); errors.Is(err, manifestsig.ErrUnsigned) {
		t.Errorf("crash estimate of the running image refused for trust: %v", err)
	}
	in, _ := a.Info(ctx)
	if in.Trust == nil || in.Trust.RunningSignedBy != "" || in.Trust.RunningError == "" {
		t.Errorf("Info.Trust %+v", in.Trust)
	}
}

// TestRollbackCarriesSignedManifest: under a trust root, v1 (signed) is
// last-known-good and v2 (signed) boots on trial; its rollback stages v1
// with v1's signed manifest in the handoff, so that the generation it
// boots verifies its own image and adopts the carried modules.
func TestRollbackCarriesSignedManifest(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	_, p2 := im2.WriteTemp(t)
	keyPath, trust := newKey(t)
	sign(t, keyPath, p1)
	sign(t, keyPath, p2)

	gen1, l1 := newAgent(t, agent.Options{Root: crashRoot(t, 384<<20), Trust: trust})
	if _, err := gen1.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}
	rep, err := gen1.Stage(ctx, agent.StageRequest{Manifest: p2})
	if err != nil {
		t.Fatal(err)
	}
	root2 := crashRoot(t, 384<<20)
	withBootID(t, root2, "boot-1")
	_, initrd, _ := l1.last()
	unpackHandoff(t, initrd, rep, root2)
	gen1.Close()

	gen2, l2 := newAgent(t, agent.Options{Root: root2, Resume: true, Trust: trust})
	if r := rbInfo(t, gen2); !r.OnTrial || r.State.Good == nil || r.State.Good.Signed == nil {
		t.Fatalf("generation 2: on trial %v, last-known-good %+v; want v1 with its signed manifest", r.OnTrial, r.State.Good)
	}
	rb, err := gen2.Rollback(ctx, agent.RollbackRequest{Why: "test"})
	if err != nil {
		t.Fatal(err)
	}
	root3 := crashRoot(t, 384<<20)
	withBootID(t, root3, "boot-1")
	_, initrd, _ = l2.last()
	unpackHandoff(t, initrd, rb.Staged, root3)
	gen2.Close()

	gen3, _ := newAgent(t, agent.Options{Root: root3, Resume: true, Trust: trust})
	st := gen3.State()
	if st.Reason != "rollback" || st.Manifest == nil || st.Manifest.Name != m1.Name {
		t.Fatalf("generation 3: reason %s, manifest %+v; want v1 by rollback", st.Reason, st.Manifest)
	}
	if st.Trust == nil || st.Trust.SignedBy == "" || st.Trust.Error != "" || st.Rehydrated.Modules != len(m1.Modules) {
		t.Errorf("generation 3 under the trust root: trust %+v, rehydrated %+v; want v1's signature verified and its %d modules adopted",
			st.Trust, st.Rehydrated, len(m1.Modules))
	}
}
