package fastreboot

import (
	"bytes"
	"fmt"
	"slices"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// ManifestOrigin is where a staged manifest came from: its file and, when
// the file was signed, its exact bytes with the signature
// (manifestsig.Signed). The handoff carries it (Handoff.Origin) so that the
// next generation can check the signature against its own trust root, and
// read again from storage a carried module that fails its content check.
type ManifestOrigin struct {
	// Path is the manifest file's absolute path when it was staged; module
	// sources are relative to its directory. Empty for an inline manifest
	// (whose sources are absolute).
	Path string `json:"path,omitempty"`
	// Signed is the manifest's signed bytes; nil when it had no signature.
	Signed *manifestsig.Signed `json:"signed,omitempty"`
}

// Clone returns a copy of o sharing nothing with it (nil for nil).
func (o *ManifestOrigin) Clone() *ManifestOrigin {
	if o == nil {
		return nil
	}
	c := *o
	if o.Signed != nil {
		s := *o.Signed
		s.Manifest = bytes.Clone(o.Signed.Manifest)
		if s.Signature != nil {
			sig := *s.Signature
			sig.Signature = bytes.Clone(sig.Signature)
			s.Signature = &sig
		}
		c.Signed = &s
	}
	return &c
}

// CheckModules checks that m names exactly the modules of the signed
// manifest, in the same order, with the same roles, sizes, digests and
// sources: m may differ from the signed manifest only in its command line,
// to which fastreboot adds words of its own (crashkernel=, the recorded
// memory map, the pstore region). An unsigned origin checks nothing. The
// error wraps manifestsig.ErrBadSignature (the signature does not cover
// these modules) or bootimage.ErrInvalid (the signed bytes are not a
// manifest).
func (o *ManifestOrigin) CheckModules(m *bootimage.Manifest) error {
	if o == nil || o.Signed == nil {
		return nil
	}
	signed, err := o.Manifest()
	if err != nil {
		return err
	}
	if !slices.Equal(signed.Modules, m.Modules) {
		return fmt.Errorf("%w: manifest %q names other modules than the signed manifest %s", manifestsig.ErrBadSignature, m.Name, o.label())
	}
	return nil
}

// Manifest parses the signed bytes (an error if o holds none).
func (o *ManifestOrigin) Manifest() (*bootimage.Manifest, error) {
	if o == nil || o.Signed == nil {
		return nil, manifestsig.ErrUnsigned
	}
	return bootimage.Parse(bytes.NewReader(o.Signed.Manifest), o.label())
}

func (o *ManifestOrigin) label() string {
	if o.Path != "" {
		return o.Path
	}
	return "(inline)"
}

// VerifyOrigin checks that o's signature verifies against trust and that
// it covers m's modules (CheckModules), and returns the signing key's id.
// Errors name the manifest and wrap manifestsig.ErrUnsigned,
// ErrUnknownKey or ErrBadSignature.
func VerifyOrigin(trust *manifestsig.TrustRoot, o *ManifestOrigin, m *bootimage.Manifest) (string, error) {
	name := m.Name
	if o != nil && o.Path != "" {
		name = o.Path
	}
	var signed *manifestsig.Signed
	if o != nil {
		signed = o.Signed
	}
	id, err := trust.Verify(signed)
	if err != nil {
		return "", fmt.Errorf("manifest %s: %w", name, err)
	}
	if err := o.CheckModules(m); err != nil {
		return "", err
	}
	return id, nil
}

// ImageOrigin is the origin a rollback to im carries in its handoff: the
// manifest file and signed bytes recorded when im became good (nil when
// neither is known).
func ImageOrigin(im *rollback.Image) *ManifestOrigin {
	if im == nil || (im.Path == "" && im.Signed == nil) {
		return nil
	}
	return (&ManifestOrigin{Path: im.Path, Signed: im.Signed}).Clone()
}
