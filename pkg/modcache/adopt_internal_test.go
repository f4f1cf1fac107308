package modcache

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// countingHash counts the hashes a cache makes and the bytes it hashes.
type countingHash struct {
	hashes, bytes atomic.Int64
}

func (c *countingHash) new() hash.Hash {
	c.hashes.Add(1)
	return &countedHash{sha256.New(), c}
}

type countedHash struct {
	hash.Hash
	c *countingHash
}

func (h *countedHash) Write(p []byte) (int, error) {
	h.c.bytes.Add(int64(len(p)))
	return h.Hash.Write(p)
}

// adoptFixture is a handoff directory carrying three modules, a storage
// directory holding the same files, and their manifest.
type adoptFixture struct {
	m            *bootimage.Manifest
	handoff, dir string
	files        map[string][]byte // by module name
	total        int64
}

func newAdoptFixture(t *testing.T) *adoptFixture {
	t.Helper()
	f := &adoptFixture{
		m:       &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: "carried"},
		handoff: t.TempDir(), dir: t.TempDir(),
		files: map[string][]byte{
			"vmlinuz":   bytes.Repeat([]byte("kernel bytes "), 9000),
			"base.cpio": bytes.Repeat([]byte("070701 base "), 7000),
			"site.cpio": []byte("070701 the site piece"),
		},
	}
	for _, name := range []string{"vmlinuz", "base.cpio", "site.cpio"} {
		b := f.files[name]
		role := bootimage.RoleInitrd
		if name == "vmlinuz" {
			role = bootimage.RoleKernel
		}
		mod := bootimage.Module{Name: name, Role: role, Size: int64(len(b)), SHA256: hexSum(b), Source: name}
		f.m.Modules = append(f.m.Modules, mod)
		f.total += mod.Size
		for _, p := range []string{filepath.Join(f.handoff, mod.SHA256), filepath.Join(f.dir, name)} {
			if err := os.WriteFile(p, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	return f
}

func (f *adoptFixture) mod(name string) bootimage.Module {
	for _, m := range f.m.Modules {
		if m.Name == name {
			return m
		}
	}
	panic(name)
}

// tamper changes the carried copy of a module, keeping its size.
func (f *adoptFixture) tamper(t *testing.T, name string) {
	t.Helper()
	b := bytes.Clone(f.files[name])
	b[len(b)/2] ^= 0xff
	if err := os.WriteFile(filepath.Join(f.handoff, f.mod(name).SHA256), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// newCountingCache returns a cache whose hashes and Check calls are counted.
func newCountingCache(t *testing.T) (*Cache, *countingHash, *atomic.Int64) {
	t.Helper()
	var checks atomic.Int64
	c := New(Options{Check: func(bootimage.Module, io.ReaderAt) error {
		checks.Add(1)
		return nil
	}})
	h := &countingHash{}
	c.newHash = h.new
	t.Cleanup(func() { c.Close() })
	return c, h, &checks
}

// noSource is the Source of a stage from the cache alone.
type noSource struct{}

var errNoStorage = errors.New("no storage")

func (noSource) Open(_ context.Context, m bootimage.Module) (io.ReadCloser, error) {
	return nil, fmt.Errorf("module %s: %w", m.Name, errNoStorage)
}

func TestAdoptDoesNotHash(t *testing.T) {
	ctx := context.Background()
	f := newAdoptFixture(t)
	c, h, checks := newCountingCache(t)

	rep, err := c.Adopt(ctx, f.handoff, f.m)
	if err != nil {
		t.Fatalf("Adopt: %v", err)
	}
	if d := cmp.Diff(RehydrateReport{Modules: 3, Bytes: f.total, Unverified: 3}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	if n, b := h.hashes.Load(), h.bytes.Load(); n != 0 || b != 0 {
		t.Errorf("Adopt made %d hashes over %d bytes, want none", n, b)
	}
	if n := checks.Load(); n != 0 {
		t.Errorf("Adopt ran Check %d times, want 0", n)
	}
	if left, _ := os.ReadDir(f.handoff); len(left) != 0 {
		t.Errorf("handoff files left after adoption: %v", left)
	}
	for _, in := range c.List() {
		if in.Verification != VerificationPending || in.Origin != OriginHandoff {
			t.Errorf("%v: verification %q origin %q, want %q %q", in.Names, in.Verification, in.Origin, VerificationPending, OriginHandoff)
		}
	}
	want := AdoptionStats{Modules: 3, Bytes: f.total, Pending: 3}
	if d := cmp.Diff(want, c.Stats().Adoption, cmpopts.IgnoreFields(AdoptionStats{}, "VerifyTime")); d != "" {
		t.Errorf("Stats.Adoption after Adopt (-want +got):\n%s", d)
	}

	// The first use hashes the entry, once.
	site := f.mod("site.cpio")
	for range 2 {
		e, err := c.Get(site.SHA256)
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		if e.Size() != site.Size {
			t.Errorf("size %d, want %d", e.Size(), site.Size)
		}
	}
	if n, b := h.hashes.Load(), h.bytes.Load(); n != 1 || b != site.Size {
		t.Errorf("two Gets made %d hashes over %d bytes, want 1 over %d", n, b, site.Size)
	}
	// A Sync hit verifies too; the background pass verifies the rest.
	if _, err := c.Sync(ctx, &bootimage.Manifest{Modules: []bootimage.Module{f.mod("vmlinuz")}}, noSource{}); err != nil {
		t.Fatalf("Sync: %v", err)
	}
	vr, err := c.VerifyPending(ctx)
	if err != nil {
		t.Fatalf("VerifyPending: %v", err)
	}
	if vr.Modules != 1 || vr.Bytes != f.mod("base.cpio").Size {
		t.Errorf("VerifyPending = %+v, want only base.cpio", vr)
	}
	if n, b := h.hashes.Load(), h.bytes.Load(); n != 3 || b != f.total {
		t.Errorf("after every use: %d hashes over %d bytes, want 3 over %d", n, b, f.total)
	}
	want = AdoptionStats{Modules: 3, Bytes: f.total, Verified: 3}
	if d := cmp.Diff(want, c.Stats().Adoption, cmpopts.IgnoreFields(AdoptionStats{}, "VerifyTime")); d != "" {
		t.Errorf("Stats.Adoption at the end (-want +got):\n%s", d)
	}
	for _, in := range c.List() {
		if in.Verification != VerificationVerified {
			t.Errorf("%v: verification %q, want %q", in.Names, in.Verification, VerificationVerified)
		}
	}
	if n := checks.Load(); n != 0 {
		t.Errorf("Check ran %d times for carried modules, want 0", n)
	}
}

func TestAdoptTampered(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		use  func(c *Cache, f *adoptFixture) (SyncReport, error)
		// wantRead: the module was read again from storage.
		wantRead bool
		wantErr  []error
	}{
		{
			name: "sync with storage re-reads",
			use: func(c *Cache, f *adoptFixture) (SyncReport, error) {
				return c.Sync(ctx, f.m, DirSource(f.dir))
			},
			wantRead: true,
		},
		{
			name: "sync without storage fails",
			use: func(c *Cache, f *adoptFixture) (SyncReport, error) {
				return c.Sync(ctx, f.m, noSource{})
			},
			wantErr: []error{ErrDigestMismatch, errNoStorage},
		},
		{
			name: "get fails",
			use: func(c *Cache, f *adoptFixture) (SyncReport, error) {
				_, err := c.Get(f.mod("base.cpio").SHA256)
				return SyncReport{}, err
			},
			wantErr: []error{ErrDigestMismatch},
		},
		{
			name: "verify reports it",
			use: func(c *Cache, f *adoptFixture) (SyncReport, error) {
				rep, err := c.Verify(ctx)
				if len(rep.Bad) != 1 || rep.Bad[0] != f.mod("base.cpio").SHA256 || rep.Modules != 3 {
					err = errors.Join(err, fmt.Errorf("verify report %+v, want 3 modules, base.cpio bad", rep))
				}
				return SyncReport{}, err
			},
			wantErr: []error{ErrDigestMismatch},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newAdoptFixture(t)
			f.tamper(t, "base.cpio")
			c, h, _ := newCountingCache(t)
			if _, err := c.Adopt(ctx, f.handoff, f.m); err != nil {
				t.Fatalf("Adopt of a tampered file must not notice (it does not hash): %v", err)
			}
			if h.bytes.Load() != 0 {
				t.Fatalf("Adopt hashed %d bytes", h.bytes.Load())
			}
			base := f.mod("base.cpio")
			rep, err := tt.use(c, f)
			for _, want := range tt.wantErr {
				if !errors.Is(err, want) {
					t.Errorf("error %v, want one wrapping %v", err, want)
				}
			}
			if len(tt.wantErr) == 0 && err != nil {
				t.Errorf("error %v, want none", err)
			}
			if err != nil && !strings.Contains(err.Error(), "base.cpio") {
				t.Errorf("error %q does not name the module", err)
			}
			if tt.wantRead {
				if rep.BytesRead != base.Size || len(rep.Read) != 1 || rep.Read[0] != "base.cpio" || rep.Hits != 2 {
					t.Errorf("Sync = %+v, want base.cpio read again (%d bytes), 2 hits", rep, base.Size)
				}
				if len(rep.Warnings) != 1 || !strings.Contains(rep.Warnings[0], "base.cpio") || !strings.Contains(rep.Warnings[0], "read again") {
					t.Errorf("Sync warnings = %q, want one naming base.cpio, read again", rep.Warnings)
				}
				e, err := c.Get(base.SHA256)
				if err != nil {
					t.Fatalf("Get after the re-read: %v", err)
				}
				got := make([]byte, e.Size())
				if _, err := e.ReadAt(got, 0); err != nil || !bytes.Equal(got, f.files["base.cpio"]) {
					t.Errorf("cached bytes are not storage's (err %v)", err)
				}
			} else if _, err := c.lookup(base.SHA256); !errors.Is(err, ErrNotCached) {
				t.Errorf("tampered entry still cached: lookup = %v", err)
			}
			a := c.Stats().Adoption
			if a.Failed != 1 || len(a.Failures) != 1 || !strings.Contains(a.Failures[0], "base.cpio") {
				t.Errorf("Stats.Adoption = %+v, want 1 failure naming base.cpio", a)
			}
		})
	}
}

// TestAdoptConcurrentUsers runs the background verification while stages
// (Sync and Get) use the same entries: each entry is hashed exactly once.
func TestAdoptConcurrentUsers(t *testing.T) {
	ctx := context.Background()
	f := newAdoptFixture(t)
	f.tamper(t, "site.cpio")
	c, h, _ := newCountingCache(t)
	if _, err := c.Adopt(ctx, f.handoff, f.m); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 20)
	wg.Add(1)
	go func() {
		defer wg.Done()
		if _, err := c.VerifyPending(ctx); err != nil && !errors.Is(err, ErrDigestMismatch) {
			errs <- fmt.Errorf("VerifyPending: %w", err)
		}
	}()
	for range 8 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			if _, err := c.Sync(ctx, f.m, DirSource(f.dir)); err != nil {
				errs <- fmt.Errorf("Sync: %w", err)
			}
		}()
		go func() {
			defer wg.Done()
			if _, err := c.Get(f.mod("vmlinuz").SHA256); err != nil {
				errs <- fmt.Errorf("Get: %w", err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Three carried entries hashed once each, and the site piece read
	// again from storage once (hashed on the way in).
	if n, b := h.hashes.Load(), h.bytes.Load(); n != 4 || b != f.total+f.mod("site.cpio").Size {
		t.Errorf("%d hashes over %d bytes, want 4 over %d", n, b, f.total+f.mod("site.cpio").Size)
	}
	a := c.Stats().Adoption
	if a.Verified != 2 || a.Failed != 1 || a.Pending != 0 {
		t.Errorf("Stats.Adoption = %+v, want 2 verified, 1 failed, 0 pending", a)
	}
	if s := c.Stats(); s.BytesRead != f.mod("site.cpio").Size {
		t.Errorf("read from storage %d bytes, want the site piece once (%d)", s.BytesRead, f.mod("site.cpio").Size)
	}
}

func TestAdoptRejectsSize(t *testing.T) {
	ctx := context.Background()
	f := newAdoptFixture(t)
	site := f.mod("site.cpio")
	p := filepath.Join(f.handoff, site.SHA256)
	if err := os.WriteFile(p, []byte("070701 short"), 0o600); err != nil {
		t.Fatal(err)
	}
	c, _, _ := newCountingCache(t)
	rep, err := c.Adopt(ctx, f.handoff, f.m)
	if !errors.Is(err, ErrSizeMismatch) || !strings.Contains(err.Error(), p) {
		t.Errorf("Adopt = %v, want a size mismatch naming %s", err, p)
	}
	if rep.Modules != 2 {
		t.Errorf("adopted %d modules, want the 2 good ones", rep.Modules)
	}
	if _, err := os.Stat(p); err != nil {
		t.Errorf("the rejected file was not left for inspection: %v", err)
	}
}
