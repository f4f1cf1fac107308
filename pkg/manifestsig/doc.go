// Package manifestsig signs boot image manifests with ed25519 and verifies
// them against a trust root, so that a machine stages, arms and adopts only
// images whose manifest a trusted key signed.
//
// What is signed is the manifest file's exact bytes. The manifest names
// every module of the image (the kernel and every initrd piece) by its
// SHA-256 digest and size, and fastreboot checks each module's bytes
// against that digest before it uses them, so one signature over the
// manifest covers every module. (The kernel's own signature check,
// kexec_file_load under KEXEC_SIG or lockdown, covers the kernel image
// only: never the initrd nor the command line.)
//
// A signature is a detached file next to the manifest, MANIFEST.sig
// (SignaturePath), holding one JSON document:
//
//	{
//	  "schema": "fastreboot.manifest-signature.v1",
//	  "algorithm": "ed25519",
//	  "key_id": "9f3c2a1b0d4e5f60",
//	  "signature": "<base64 of the 64-byte ed25519 signature>"
//	}
//
// The signature is ed25519 over SignedMessage(manifest): the domain
// prefix "fastreboot-manifest-v1\x00" followed by the manifest's bytes, so
// that a signature made for something else with the same key is never a
// manifest signature. key_id is KeyID of the public key: the first 8
// bytes of the SHA-256 of its 32 raw bytes, in hex; it only selects the
// key, the signature proves it.
//
// Keys are PEM files the Go standard library and OpenSSL both read: the
// private key PKCS #8 ("PRIVATE KEY"), the public key PKIX ("PUBLIC KEY").
// A trust root (LoadTrustRoot) is one public key file, or a directory whose
// *.pub files each hold one or more public keys.
package manifestsig
