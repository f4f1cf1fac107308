package manifestsig_test

import (
	"crypto/ed25519"
	"fmt"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

// A release signs a manifest; a machine whose trust root holds the release
// key accepts it, and refuses it once a byte changes.
func Example() {
	pub, priv, _ := ed25519.GenerateKey(nil)
	m := []byte(`{"version": 1, "name": "v2", "cmdline": "quiet", "modules": []}`)
	signed := &manifestsig.Signed{Manifest: m, Signature: manifestsig.Sign(priv, m)}

	trust := manifestsig.NewTrustRoot("/etc/fastreboot/trust", pub)
	_, err := trust.Verify(signed)
	fmt.Println("signed:", err)

	signed.Manifest = []byte(strings.Replace(string(m), "quiet", "init=/bin/sh", 1))
	_, err = trust.Verify(signed)
	fmt.Println("changed:", err != nil)

	_, err = trust.Verify(&manifestsig.Signed{Manifest: m})
	fmt.Println("unsigned:", err != nil)
	// Output:
	// signed: <nil>
	// changed: true
	// unsigned: true
}
