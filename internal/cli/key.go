package cli

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

func cmdKey(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("key needs a subcommand: gen, sign, verify")
	}
	switch args[0] {
	case "gen":
		return keyGen(e, args[1:])
	case "sign":
		return keySign(e, args[1:])
	case "verify":
		return keyVerify(e, args[1:])
	}
	return usagef("unknown key subcommand %q (gen, sign, verify)", args[0])
}

func keyGen(e *env, args []string) error {
	fs := newFlags("key gen")
	prefix := fs.String("o", "", "write the key pair to PREFIX.key (private, 0600) and PREFIX.pub (public); neither may exist")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 || *prefix == "" {
		return usagef("key gen takes -o PREFIX only")
	}
	priv, pub, key, err := manifestsig.GenerateKeyFiles(*prefix, nil)
	if err != nil {
		return fmt.Errorf("key gen: %w", err)
	}
	fmt.Fprintf(e.stdout, "key %s: private %s (keep it off the machines that verify), public %s (put it in their trust root)\n",
		manifestsig.KeyID(key), priv, pub)
	return nil
}

func keySign(e *env, args []string) error {
	fs := newFlags("key sign")
	keyPath := fs.String("k", "", "the private key file (from key gen)")
	out := fs.String("o", "", "write the signature here instead of MANIFEST.sig")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 || *keyPath == "" {
		return usagef("key sign takes -k KEY and one MANIFEST")
	}
	path := pos[0]
	priv, err := manifestsig.LoadPrivateKey(*keyPath)
	if err != nil {
		return fmt.Errorf("key sign: %w", err)
	}
	s, err := manifestsig.ReadSigned(path)
	if err != nil {
		return fmt.Errorf("key sign: %w", err)
	}
	// Sign only what parses as a manifest: a signature vouches for an
	// image, not for arbitrary bytes.
	if _, err := bootimage.Parse(bytes.NewReader(s.Manifest), path); err != nil {
		return fmt.Errorf("key sign: %w", err)
	}
	sig := manifestsig.Sign(priv, s.Manifest)
	b, err := sig.Marshal()
	if err != nil {
		return err
	}
	dst := *out
	if dst == "" {
		dst = manifestsig.SignaturePath(path)
	}
	if err := atomicfile.WriteFile(dst, b, 0o644); err != nil {
		return fmt.Errorf("key sign: %w", err)
	}
	fmt.Fprintf(e.stdout, "signed %s with key %s: %s\n", path, sig.KeyID, dst)
	return nil
}

func keyVerify(e *env, args []string) error {
	fs := newFlags("key verify")
	pub := fs.String("p", "", "the public key file, or a directory of *.pub files; default: the trust root (--trust)")
	asJSON := fs.Bool("json", false, "print the result as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usagef("key verify takes one MANIFEST")
	}
	path := pos[0]
	var trust *manifestsig.TrustRoot
	if *pub != "" {
		trust, err = manifestsig.LoadTrustRoot(*pub)
	} else {
		trust, err = e.trustRoot()
		if err == nil && trust == nil {
			return usagef("key verify needs -p PUB or a trust root (--trust)")
		}
	}
	if err != nil {
		return fmt.Errorf("key verify: %w", err)
	}
	m, keyID, err := verifyManifestFile(path, trust)
	if err != nil {
		return fmt.Errorf("key verify: %w", err)
	}
	if *asJSON {
		return printJSON(e.stdout, keyVerifyDoc(path, m, keyID, trust))
	}
	fmt.Fprintf(e.stdout, "%s: good signature by key %s (trust root %s); it covers %d modules by SHA-256\n",
		path, keyID, trust.Path, len(m.Modules))
	return nil
}

// verifyManifestFile reads the manifest at path and its signature, checks
// the signature against trust and parses the signed bytes. Errors name the
// manifest.
func verifyManifestFile(path string, trust *manifestsig.TrustRoot) (*bootimage.Manifest, string, error) {
	s, err := manifestsig.ReadSigned(path)
	if err != nil {
		return nil, "", err
	}
	keyID, err := trust.Verify(s)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", path, err)
	}
	m, err := bootimage.Parse(bytes.NewReader(s.Manifest), path)
	if err != nil {
		return nil, "", err
	}
	return m, keyID, nil
}

// trustRoot loads the trust root: --trust, or manifestsig.DefaultTrustRoot
// under --root when that exists; nil when neither is set.
func (e *env) trustRoot() (*manifestsig.TrustRoot, error) {
	path := e.trust
	if path == "" {
		path = filepath.Join(e.root, manifestsig.DefaultTrustRoot)
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
	}
	return manifestsig.LoadTrustRoot(path)
}
