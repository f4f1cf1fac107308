package modcache

import (
	"bytes"
	"context"
	"errors"
	"io"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// sectionMap is a Sections over byte slices.
type sectionMap map[string][]byte

func (s sectionMap) Section(digest string) *io.SectionReader {
	b, ok := s[digest]
	if !ok {
		return nil
	}
	return io.NewSectionReader(bytes.NewReader(b), 0, int64(len(b)))
}

func TestAdoptSections(t *testing.T) {
	ctx := context.Background()
	f := newAdoptFixture(t)
	secs := sectionMap{}
	for name, b := range f.files {
		secs[f.mod(name).SHA256] = b
	}
	// A flipped byte in the kernel's kept bytes: adopted, then found at use.
	bad := bytes.Clone(f.files["vmlinuz"])
	bad[100] ^= 1
	secs[f.mod("vmlinuz").SHA256] = bad

	c, h, _ := newCountingCache(t)
	rep, err := c.AdoptSections(ctx, secs, f.m)
	if err != nil {
		t.Fatalf("AdoptSections: %v", err)
	}
	if d := cmp.Diff(RehydrateReport{Modules: 3, Bytes: f.total, Unverified: 3}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	if n := h.hashes.Load(); n != 0 {
		t.Errorf("AdoptSections made %d hashes, want none", n)
	}
	if _, err := c.Get(f.mod("base.cpio").SHA256); err != nil {
		t.Errorf("Get(base.cpio): %v", err)
	}
	if _, err := c.Get(f.mod("vmlinuz").SHA256); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("Get(flipped vmlinuz) = %v, want ErrDigestMismatch", err)
	}
	if st := c.Stats().Adoption; st.Verified != 1 || st.Failed != 1 {
		t.Errorf("adoption stats %+v, want 1 verified and 1 failed", st)
	}
}

func TestAdoptSectionsMissingAndShort(t *testing.T) {
	ctx := context.Background()
	f := newAdoptFixture(t)
	secs := sectionMap{
		f.mod("base.cpio").SHA256: f.files["base.cpio"][:10],
		f.mod("site.cpio").SHA256: f.files["site.cpio"],
	}
	c, _, _ := newCountingCache(t)
	rep, err := c.AdoptSections(ctx, secs, f.m)
	if !errors.Is(err, ErrNotCached) || !errors.Is(err, ErrSizeMismatch) {
		t.Fatalf("AdoptSections = %v, want ErrNotCached (vmlinuz) and ErrSizeMismatch (base.cpio)", err)
	}
	if rep.Modules != 1 {
		t.Errorf("adopted %d modules, want 1 (site.cpio)", rep.Modules)
	}
	if _, err := c.Get(f.mod("site.cpio").SHA256); err != nil {
		t.Errorf("Get(site.cpio): %v", err)
	}
}
