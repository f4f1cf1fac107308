package qemutests

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// frtamperCmd stages a signed manifest with the library and loads the image
// with one byte of a carried module changed.
const frtamperCmd = harness.ModulePath + "/qemu-tests/cmd/frtamper"

// TestSignedManifestTrust proves the trust story on Debian's kernel: every
// generation's initramfs holds a trust root (the public key in the kmods
// piece), so its daemon refuses manifests no trusted key signed. Generation
// 1 refuses the unsigned manifest and an inline image, accepts the signed
// v2; then an attacker with root (frtamper) builds v2's image with the
// library, flips a byte of the carried site piece inside the handoff and
// loads it. Generation 2 verifies the handoff's signed manifest, adopts the
// carried modules, finds the tampered one in its content check, drops it
// and reads it from storage again once the disk is mounted (status warns),
// and still refuses the unsigned manifest.
func TestSignedManifestTrust(t *testing.T) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	keyID := manifestsig.KeyID(pub)
	s := prepare(t, scenario.Options{SignKey: priv, ExtraCommands: []string{frtamperCmd}})
	vm, boot := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm}
	if boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want the daemon started", boot.Ready)
	}
	m := scenario.MountPoint + "/"
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}

	status := func() *cli.StatusV1 {
		t.Helper()
		var st cli.StatusV1
		if err := g.FastrebootJSON("status", &st); err != nil {
			t.Fatalf("fastreboot status: %v", err)
		}
		return &st
	}
	refused := func(gen int, cmd, want string) {
		t.Helper()
		out, err := g.Run(cmd)
		if !errors.Is(err, scenario.ErrCommand) || !strings.Contains(out, want) || !strings.Contains(out, "not signed") {
			t.Errorf("gen %d: %q: %v\n%s\nwant a refusal naming %q and saying it is not signed", gen, cmd, err, out, want)
		}
	}

	st := status()
	if st.Trust == nil || st.Trust.Root != "/etc/fastreboot/trust" || len(st.Trust.Keys) != 1 || st.Trust.Keys[0] != keyID {
		t.Fatalf("gen 1: status trust %+v, want the default root with key %s", st.Trust, keyID)
	}
	refused(1, "fastreboot stage "+m+scenario.ManifestCorrupt, m+scenario.ManifestCorrupt)
	refused(1, "fastreboot stage --dry-run --kernel "+m+scenario.KernelFile+" --initrd "+m+scenario.BaseFile, "inline manifest")
	if out, err := g.Run("fastreboot key verify " + m + scenario.ManifestV2); err != nil || !strings.Contains(out, "good signature by key "+keyID) {
		t.Fatalf("gen 1: key verify of the signed v2: %v\n%s", err, out)
	}

	// The attacker: v2's image as fastreboot builds it, one carried byte
	// changed, loaded for the next reboot.
	out, err := g.Run("frtamper " + m + scenario.ManifestV2 + " " + scenario.SiteV2File)
	if err != nil || !strings.Contains(out, "FRTAMPER module="+scenario.SiteV2File) {
		t.Fatalf("gen 1: frtamper: %v\n%s", err, out)
	}
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Boot.Release != "v2" || r.Boot.Daemon != "started" {
		t.Fatalf("gen 2 ready = %+v, want release v2 and the daemon", r.Boot.Ready)
	}

	// Generation 2: the signature verified, the modules were adopted.
	st = status()
	if st.Generation != 2 || st.State == nil || st.State.Trust == nil || st.State.Trust.SignedBy != keyID || st.State.Trust.Error != "" {
		t.Fatalf("gen 2: generation %d, state %+v", st.Generation, st.State)
	}
	if st.State.Carried == 0 || st.State.Rehydrated.Modules != st.State.Carried || st.State.ManifestPath != m+scenario.ManifestV2 {
		t.Errorf("gen 2: carried %d, rehydrated %d, manifest path %q", st.State.Carried, st.State.Rehydrated.Modules, st.State.ManifestPath)
	}
	// The storage comes after the daemon, as on a real boot; the daemon
	// reads the dropped module again once it is there.
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(90 * time.Second)
	for {
		st = status()
		var w string
		if st.Agent != nil {
			w = strings.Join(st.Agent.Warnings, "\n")
		}
		if strings.Contains(w, "read from storage again (/mnt): "+scenario.SiteV2File) {
			if !strings.Contains(w, "dropped a carried module that failed its content check") || !strings.Contains(w, scenario.SiteV2File) {
				t.Errorf("gen 2: warnings %q", st.Agent.Warnings)
			}
			t.Logf("gen 2 warnings:\n%s", w)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gen 2: the tampered module was not read from storage again: warnings %q", w)
		}
		time.Sleep(2 * time.Second)
	}
	if st.Trust == nil || st.Trust.RunningSignedBy != keyID {
		t.Errorf("gen 2: status trust %+v, want the running image signed by %s", st.Trust, keyID)
	}
	// Everything is cached again: the running image restages from the
	// cache alone, and an unsigned manifest is still refused.
	if _, err := g.Run("fastreboot stage --dry-run --current"); err != nil {
		t.Errorf("gen 2: stage --current after the re-read: %v", err)
	}
	refused(2, "fastreboot stage "+m+scenario.ManifestCorrupt, m+scenario.ManifestCorrupt)
}
