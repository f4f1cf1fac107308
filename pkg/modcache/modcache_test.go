package modcache_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/google/go-cmp/cmp"
)

// fakeSource serves modules from memory, keyed by Module.Source, and counts
// every open and every byte handed out.
type fakeSource struct {
	mu    sync.Mutex
	files map[string][]byte
	opens map[string]int
	bytes int64
	delay time.Duration
}

func newFakeSource(files map[string][]byte) *fakeSource {
	return &fakeSource{files: files, opens: map[string]int{}}
}

func (s *fakeSource) Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error) {
	time.Sleep(s.delay)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens[m.Source]++
	b, ok := s.files[m.Source]
	if !ok {
		return nil, fmt.Errorf("fake source %q: %w", m.Source, fs.ErrNotExist)
	}
	return &countingReader{s: s, r: bytes.NewReader(b)}, nil
}

func (s *fakeSource) reset() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.opens = map[string]int{}
	s.bytes = 0
}

func (s *fakeSource) counts() (map[string]int, int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.opens, s.bytes
}

type countingReader struct {
	s *fakeSource
	r io.Reader
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.s.mu.Lock()
	c.s.bytes += int64(n)
	c.s.mu.Unlock()
	return n, err
}

func (c *countingReader) Close() error { return nil }

// failSource fails the test when anything is opened.
type failSource struct{ t *testing.T }

func (s failSource) Open(_ context.Context, m bootimage.Module) (io.ReadCloser, error) {
	s.t.Errorf("source opened for module %q (%s): nothing may be read from storage", m.Name, m.Source)
	return nil, errors.New("failSource")
}

// content returns n deterministic pseudo-random bytes, different per seed.
func content(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 42))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func mod(name string, role bootimage.Role, source string, b []byte) bootimage.Module {
	return bootimage.Module{Name: name, Role: role, Size: int64(len(b)), SHA256: digest(b), Source: source}
}

// testImage is a kernel and three initrd pieces, with two versions of the
// last piece.
type testImage struct {
	files  map[string][]byte
	v1, v2 *bootimage.Manifest
}

func newTestImage() testImage {
	files := map[string][]byte{
		"vmlinuz":       content(1, 90000),
		"base.cpio.zst": content(2, 70001),
		"kmods.cpio.xz": content(3, 50003),
		"site-v1.cpio":  content(4, 512),
		"site-v2.cpio":  content(5, 520),
	}
	manifest := func(site string) *bootimage.Manifest {
		return &bootimage.Manifest{
			Version: bootimage.SchemaVersion,
			Name:    site,
			Cmdline: "console=ttyS0",
			Modules: []bootimage.Module{
				mod("vmlinuz", bootimage.RoleKernel, "vmlinuz", files["vmlinuz"]),
				mod("base", bootimage.RoleInitrd, "base.cpio.zst", files["base.cpio.zst"]),
				mod("kmods", bootimage.RoleInitrd, "kmods.cpio.xz", files["kmods.cpio.xz"]),
				mod("site", bootimage.RoleInitrd, site, files[site]),
			},
		}
	}
	return testImage{files: files, v1: manifest("site-v1.cpio"), v2: manifest("site-v2.cpio")}
}

func clone(m *bootimage.Manifest) *bootimage.Manifest {
	c := *m
	c.Modules = append([]bootimage.Module(nil), m.Modules...)
	return &c
}

func sumSizes(m *bootimage.Manifest) int64 {
	var n int64
	for _, mod := range m.Modules {
		n += mod.Size
	}
	return n
}

// TestSyncReadsOnlyTheChangedPiece is the central property of the cache:
// after a manifest was synced, syncing one in which exactly one initrd piece
// changed opens storage only for that piece and reads exactly its bytes.
func TestSyncReadsOnlyTheChangedPiece(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	src := newFakeSource(img.files)
	c := modcache.New(modcache.Options{})
	defer c.Close()

	rep, err := c.Sync(ctx, img.v1, src)
	if err != nil {
		t.Fatalf("Sync(v1): %v", err)
	}
	want := modcache.SyncReport{Misses: 4, BytesRead: sumSizes(img.v1), Read: []string{"vmlinuz", "base", "kmods", "site"}}
	if d := cmp.Diff(want, rep); d != "" {
		t.Errorf("Sync(v1) report (-want +got):\n%s", d)
	}

	src.reset()
	rep, err = c.Sync(ctx, img.v2, src)
	if err != nil {
		t.Fatalf("Sync(v2): %v", err)
	}
	site2 := int64(len(img.files["site-v2.cpio"]))
	want = modcache.SyncReport{Hits: 3, Misses: 1, BytesRead: site2, Read: []string{"site"}}
	if d := cmp.Diff(want, rep); d != "" {
		t.Errorf("Sync(v2) report (-want +got):\n%s", d)
	}
	opens, read := src.counts()
	if d := cmp.Diff(map[string]int{"site-v2.cpio": 1}, opens); d != "" {
		t.Errorf("Sync(v2) opened (-want +got):\n%s", d)
	}
	if read != site2 {
		t.Errorf("Sync(v2) read %d bytes from the source, want %d (site-v2.cpio only)", read, site2)
	}

	wantStats := modcache.Stats{
		Modules:   5,
		BytesHeld: sumSizes(img.v1) + site2,
		Hits:      3,
		Misses:    5,
		BytesRead: sumSizes(img.v1) + site2,
	}
	got := c.Stats()
	got.OverheadBytes = 0 // checked in TestStatsOverhead
	if d := cmp.Diff(wantStats, got); d != "" {
		t.Errorf("Stats (-want +got):\n%s", d)
	}

	// A third sync of v2 reads nothing at all.
	if rep, err := c.Sync(ctx, img.v2, failSource{t}); err != nil || rep.BytesRead != 0 || rep.Hits != 4 {
		t.Errorf("Sync(v2) again = %+v, %v; want 4 hits and nothing read", rep, err)
	}
}

func TestSyncContent(t *testing.T) {
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	if _, err := c.Sync(context.Background(), img.v1, newFakeSource(img.files)); err != nil {
		t.Fatal(err)
	}
	for _, m := range img.v1.Modules {
		e, err := c.Get(m.SHA256)
		if err != nil {
			t.Fatalf("Get(%s): %v", m.Name, err)
		}
		got, err := io.ReadAll(io.NewSectionReader(e, 0, e.Size()))
		if err != nil {
			t.Fatalf("reading %s: %v", m.Name, err)
		}
		if !bytes.Equal(got, img.files[m.Source]) {
			t.Errorf("%s: cached bytes differ from the source", m.Name)
		}
		if e.Digest() != m.SHA256 || e.Size() != m.Size {
			t.Errorf("%s: entry digest/size = %s/%d, want %s/%d", m.Name, e.Digest(), e.Size(), m.SHA256, m.Size)
		}
	}
}

var errRejected = errors.New("not a bzImage")

func TestSyncRejects(t *testing.T) {
	img := newTestImage()
	good := img.files["site-v2.cpio"]
	extra := content(9, 333)
	tests := []struct {
		name     string
		bad      bootimage.Module
		wantErr  error
		wantRead int64 // bytes read from the source for the bad module
	}{
		{
			name:     "digest",
			bad:      bootimage.Module{Name: "bad", Role: bootimage.RoleInitrd, Size: int64(len(good)), SHA256: digest(content(7, 520)), Source: "site-v2.cpio"},
			wantErr:  modcache.ErrDigestMismatch,
			wantRead: int64(len(good)),
		},
		{
			name:     "short",
			bad:      bootimage.Module{Name: "bad", Role: bootimage.RoleInitrd, Size: int64(len(good)) + 1, SHA256: digest(good), Source: "site-v2.cpio"},
			wantErr:  modcache.ErrSizeMismatch,
			wantRead: int64(len(good)),
		},
		{
			name: "long",
			bad:  bootimage.Module{Name: "bad", Role: bootimage.RoleInitrd, Size: 100, SHA256: digest(good[:100]), Source: "site-v2.cpio"},
			// Stops one byte past the expected size.
			wantErr:  modcache.ErrSizeMismatch,
			wantRead: 101,
		},
		{
			name:    "missing",
			bad:     bootimage.Module{Name: "bad", Role: bootimage.RoleInitrd, Size: 10, SHA256: digest(content(8, 10)), Source: "nowhere.cpio"},
			wantErr: fs.ErrNotExist,
		},
		{
			name:     "check",
			bad:      bootimage.Module{Name: "bad", Role: bootimage.RoleKernel, Size: int64(len(good)), SHA256: digest(good), Source: "site-v2.cpio"},
			wantErr:  errRejected,
			wantRead: int64(len(good)),
		},
		{
			name:    "invalid digest",
			bad:     bootimage.Module{Name: "bad", Role: bootimage.RoleInitrd, Size: 10, SHA256: strings.ToUpper(digest(good)), Source: "site-v2.cpio"},
			wantErr: nil, // any error
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			files := map[string][]byte{"extra.cpio": extra}
			for k, v := range img.files {
				files[k] = v
			}
			src := newFakeSource(files)
			c := modcache.New(modcache.Options{Check: func(m bootimage.Module, r io.ReaderAt) error {
				if m.Name == "bad" {
					return errRejected
				}
				return nil
			}})
			defer c.Close()
			if _, err := c.Sync(ctx, img.v1, src); err != nil {
				t.Fatal(err)
			}
			before := c.List()

			m := &bootimage.Manifest{Modules: []bootimage.Module{tt.bad, mod("extra", bootimage.RoleInitrd, "extra.cpio", extra)}}
			rep, err := c.Sync(ctx, m, src)
			if err == nil {
				t.Fatalf("Sync accepted a bad module; report %+v", rep)
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("Sync error %q does not wrap %v", err, tt.wantErr)
			}
			if msg := err.Error(); !strings.Contains(msg, `"bad"`) || !strings.Contains(msg, tt.bad.Source) {
				t.Errorf("Sync error %q does not name the module and its source %q", msg, tt.bad.Source)
			}
			if _, err := c.Get(tt.bad.SHA256); !errors.Is(err, modcache.ErrNotCached) {
				t.Errorf("Get(bad digest) = %v, want ErrNotCached", err)
			}
			if want := int64(len(extra)) + tt.wantRead; rep.BytesRead != want {
				t.Errorf("BytesRead = %d, want %d", rep.BytesRead, want)
			}
			if d := cmp.Diff([]string{"extra"}, rep.Read); d != "" {
				t.Errorf("Read (-want +got):\n%s", d)
			}
			// The earlier entries are untouched, "extra" was added.
			e, err := c.Get(digest(extra))
			if err != nil {
				t.Fatalf("the good module of the same manifest was not added: %v", err)
			}
			after := c.List()
			want := append(before, modcache.Info{Digest: e.Digest(), Size: e.Size(), Names: []string{"extra"}, Origin: modcache.OriginStorage})
			sortInfo(want)
			if d := cmp.Diff(want, after); d != "" {
				t.Errorf("List after the failed sync (-want +got):\n%s", d)
			}
		})
	}
}

func sortInfo(l []modcache.Info) {
	for i := range l {
		for j := i + 1; j < len(l); j++ {
			if l[j].Digest < l[i].Digest {
				l[i], l[j] = l[j], l[i]
			}
		}
	}
}

func TestSyncDedupesNames(t *testing.T) {
	b := content(11, 4096)
	m := &bootimage.Manifest{Modules: []bootimage.Module{
		mod("vmlinuz", bootimage.RoleKernel, "k", content(12, 100)),
		mod("a", bootimage.RoleInitrd, "a.cpio", b),
		mod("b", bootimage.RoleInitrd, "b.cpio", b),
	}}
	src := newFakeSource(map[string][]byte{"k": content(12, 100), "a.cpio": b, "b.cpio": b})
	c := modcache.New(modcache.Options{})
	defer c.Close()
	rep, err := c.Sync(context.Background(), m, src)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(modcache.SyncReport{Hits: 1, Misses: 2, BytesRead: 4196, Read: []string{"vmlinuz", "a"}}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	e, err := c.Get(digest(b))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"a", "b"}, e.Names()); d != "" {
		t.Errorf("Names (-want +got):\n%s", d)
	}
	if s := c.Stats(); s.Modules != 2 || s.BytesHeld != 4196 {
		t.Errorf("Stats = %+v, want 2 modules, 4196 bytes", s)
	}
}

func TestCheckRunsOncePerContent(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	checked := map[string]int{}
	var mu sync.Mutex
	check := func(m bootimage.Module, r io.ReaderAt) error {
		b, err := io.ReadAll(io.NewSectionReader(r, 0, m.Size))
		if err != nil {
			return err
		}
		if digest(b) != m.SHA256 {
			t.Errorf("Check(%s) saw other bytes than the module's", m.Name)
		}
		mu.Lock()
		checked[m.Name]++
		mu.Unlock()
		return nil
	}
	c := modcache.New(modcache.Options{Check: check})
	defer c.Close()
	src := newFakeSource(img.files)
	for _, m := range []*bootimage.Manifest{img.v1, img.v2, img.v1} {
		if _, err := c.Sync(ctx, m, src); err != nil {
			t.Fatal(err)
		}
	}
	b := img.files["vmlinuz"]
	if _, err := c.Add(ctx, mod("vmlinuz-copy", bootimage.RoleKernel, "", b), bytes.NewReader(b)); err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(map[string]int{"vmlinuz": 1, "base": 1, "kmods": 1, "site": 2}, checked); d != "" {
		t.Errorf("Check calls (-want +got):\n%s", d)
	}
}

func TestAdd(t *testing.T) {
	ctx := context.Background()
	b := content(21, 3000)
	m := mod("base", bootimage.RoleInitrd, "", b)
	c := modcache.New(modcache.Options{})
	defer c.Close()
	e, err := c.Add(ctx, m, bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	m2 := m
	m2.Name = "base-again"
	e2, err := c.Add(ctx, m2, iotestFail{t})
	if err != nil {
		t.Fatal(err)
	}
	if e2 != e {
		t.Errorf("Add of cached content returned another entry")
	}
	if d := cmp.Diff([]modcache.Info{{Digest: m.SHA256, Size: 3000, Names: []string{"base", "base-again"}, Origin: modcache.OriginAdded}}, c.List()); d != "" {
		t.Errorf("List (-want +got):\n%s", d)
	}
	if s := c.Stats(); s.BytesAdded != 3000 || s.BytesRead != 0 || s.Hits != 0 || s.Misses != 0 {
		t.Errorf("Stats = %+v, want 3000 bytes added, none read from storage, no Sync lookups", s)
	}

	bad := mod("other", bootimage.RoleInitrd, "", content(22, 10))
	if _, err := c.Add(ctx, bad, bytes.NewReader(content(23, 10))); !errors.Is(err, modcache.ErrDigestMismatch) || !strings.Contains(err.Error(), `"other"`) {
		t.Errorf("Add(wrong bytes) = %v, want ErrDigestMismatch naming the module", err)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := c.Add(cctx, bad, bytes.NewReader(content(22, 10))); !errors.Is(err, context.Canceled) {
		t.Errorf("Add(canceled) = %v, want context.Canceled", err)
	}
	if _, err := c.Get(bad.SHA256); !errors.Is(err, modcache.ErrNotCached) {
		t.Errorf("Get after failed adds = %v, want ErrNotCached", err)
	}
}

// iotestFail fails the test when read.
type iotestFail struct{ t *testing.T }

func (r iotestFail) Read([]byte) (int, error) {
	r.t.Error("reader of already cached content was read")
	return 0, io.EOF
}

func TestSyncCanceled(t *testing.T) {
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	rep, err := c.Sync(ctx, img.v1, failSource{t})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("Sync(canceled) error = %v, want context.Canceled", err)
	}
	if d := cmp.Diff(modcache.SyncReport{}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
}

// handoffDir writes the modules of m into a fresh directory, one file per
// unique digest, named by it, as the previous generation would carry them.
func handoffDir(t *testing.T, m *bootimage.Manifest, files map[string][]byte) string {
	t.Helper()
	dir := t.TempDir()
	for _, mod := range m.Modules {
		if err := os.WriteFile(filepath.Join(dir, mod.SHA256), files[mod.Source], 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestRehydrate(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	m := clone(img.v1)
	// The same content under a second name is carried once.
	m.Modules = append(m.Modules, mod("site-copy", bootimage.RoleInitrd, "site-v1.cpio", img.files["site-v1.cpio"]))
	dir := handoffDir(t, m, img.files)
	unique := sumSizes(img.v1) // site-copy adds no bytes

	c := modcache.New(modcache.Options{Check: func(m bootimage.Module, _ io.ReaderAt) error {
		t.Errorf("Check ran for rehydrated module %q", m.Name)
		return nil
	}})
	defer c.Close()
	rep, err := c.Rehydrate(ctx, dir, m)
	if err != nil {
		t.Fatalf("Rehydrate: %v", err)
	}
	if d := cmp.Diff(modcache.RehydrateReport{Modules: 4, Bytes: unique}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("handoff files left after rehydration: %v", left)
	}
	s := c.Stats()
	if s.BytesHeld != unique || s.Modules != 4 || s.BytesRehydrated != unique || s.BytesRead != 0 {
		t.Errorf("Stats = %+v, want %d bytes held and rehydrated in 4 modules, 0 read", s, unique)
	}
	var overhead int64
	for _, in := range c.List() {
		if in.Origin != modcache.OriginHandoff {
			t.Errorf("%v: origin %q, want %q", in.Names, in.Origin, modcache.OriginHandoff)
		}
		overhead += modcache.Overhead(in.Size, in.Names)
	}
	if s.OverheadBytes != overhead {
		t.Errorf("OverheadBytes = %d, want %d", s.OverheadBytes, overhead)
	}
	e, err := c.Get(digest(img.files["site-v1.cpio"]))
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff([]string{"site", "site-copy"}, e.Names()); d != "" {
		t.Errorf("Names (-want +got):\n%s", d)
	}
	// The rehydrated cache serves the manifest: storage is not touched.
	if rep, err := c.Sync(ctx, m, failSource{t}); err != nil || rep.BytesRead != 0 || rep.Hits != 5 {
		t.Errorf("Sync after Rehydrate = %+v, %v; want 5 hits, nothing read", rep, err)
	}
}

func TestRehydrateRejects(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	m := clone(img.v1)
	dir := handoffDir(t, m, img.files)
	// A carried file whose bytes are not what its name says, and one that
	// was never carried.
	evil := mod("evil", bootimage.RoleInitrd, "", content(31, 700))
	evilPath := filepath.Join(dir, evil.SHA256)
	if err := os.WriteFile(evilPath, content(32, 700), 0o600); err != nil {
		t.Fatal(err)
	}
	lost := mod("lost", bootimage.RoleInitrd, "", content(33, 10))
	lostPath := filepath.Join(dir, lost.SHA256)
	m.Modules = append(m.Modules, evil, lost)

	c := modcache.New(modcache.Options{})
	defer c.Close()
	rep, err := c.Rehydrate(ctx, dir, m)
	if !errors.Is(err, modcache.ErrDigestMismatch) || !strings.Contains(err.Error(), evilPath) {
		t.Errorf("Rehydrate error %q does not report the mismatch of %s", err, evilPath)
	}
	if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), lostPath) {
		t.Errorf("Rehydrate error %q does not report the missing %s", err, lostPath)
	}
	if d := cmp.Diff(modcache.RehydrateReport{Modules: 4, Bytes: sumSizes(img.v1)}, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
	for _, d := range []string{evil.SHA256, lost.SHA256} {
		if _, err := c.Get(d); !errors.Is(err, modcache.ErrNotCached) {
			t.Errorf("Get(%s) = %v, want ErrNotCached", d, err)
		}
	}
	// The mismatched file stays for inspection; the good ones are gone.
	left, _ := os.ReadDir(dir)
	if len(left) != 1 || left[0].Name() != evil.SHA256 {
		t.Errorf("handoff dir holds %v, want only %s", left, evil.SHA256)
	}
	if s := c.Stats(); s.BytesHeld != sumSizes(img.v1) || s.Modules != 4 {
		t.Errorf("Stats = %+v, want the 4 good modules", s)
	}
}

func TestRehydrateAlreadyCached(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	if _, err := c.Sync(ctx, img.v1, newFakeSource(img.files)); err != nil {
		t.Fatal(err)
	}
	dir := handoffDir(t, img.v1, img.files)
	rep, err := c.Rehydrate(ctx, dir, img.v1)
	if err != nil || rep != (modcache.RehydrateReport{}) {
		t.Errorf("Rehydrate of cached modules = %+v, %v; want nothing added", rep, err)
	}
	if left, _ := os.ReadDir(dir); len(left) != 0 {
		t.Errorf("redundant handoff files left: %v", left)
	}
}

func TestVerifyGood(t *testing.T) {
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	src := newFakeSource(img.files)
	for _, m := range []*bootimage.Manifest{img.v1, img.v2} {
		if _, err := c.Sync(context.Background(), m, src); err != nil {
			t.Fatal(err)
		}
	}
	rep, err := c.Verify(context.Background())
	if err != nil {
		t.Fatalf("Verify: %v", err)
	}
	want := modcache.VerifyReport{Modules: 5, Bytes: sumSizes(img.v1) + int64(len(img.files["site-v2.cpio"]))}
	if d := cmp.Diff(want, rep); d != "" {
		t.Errorf("report (-want +got):\n%s", d)
	}
}

func TestEvict(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	defer c.Close()
	src := newFakeSource(img.files)
	for _, m := range []*bootimage.Manifest{img.v1, img.v2} {
		if _, err := c.Sync(ctx, m, src); err != nil {
			t.Fatal(err)
		}
	}
	old, err := c.Get(digest(img.files["site-v1.cpio"]))
	if err != nil {
		t.Fatal(err)
	}

	if d := cmp.Diff(modcache.EvictReport{}, c.Evict(img.v1, img.v2)); d != "" {
		t.Errorf("Evict(v1, v2) (-want +got):\n%s", d)
	}
	if d := cmp.Diff(modcache.EvictReport{Modules: 1, Bytes: 512}, c.Evict(img.v2)); d != "" {
		t.Errorf("Evict(v2) (-want +got):\n%s", d)
	}
	if _, err := c.Get(old.Digest()); !errors.Is(err, modcache.ErrNotCached) {
		t.Errorf("Get(evicted) = %v, want ErrNotCached", err)
	}
	if _, err := old.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadAt on the evicted entry = %v, want os.ErrClosed (memfd closed)", err)
	}
	if s := c.Stats(); s.Modules != 4 || s.BytesHeld != sumSizes(img.v2) {
		t.Errorf("Stats = %+v, want v2's 4 modules", s)
	}
	if d := cmp.Diff(modcache.EvictReport{Modules: 4, Bytes: sumSizes(img.v2)}, c.Evict()); d != "" {
		t.Errorf("Evict() (-want +got):\n%s", d)
	}
}

func TestClose(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	c := modcache.New(modcache.Options{})
	if _, err := c.Sync(ctx, img.v1, newFakeSource(img.files)); err != nil {
		t.Fatal(err)
	}
	e, err := c.Get(img.v1.Modules[0].SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if _, err := e.ReadAt(make([]byte, 1), 0); !errors.Is(err, os.ErrClosed) {
		t.Errorf("ReadAt after Close = %v, want os.ErrClosed", err)
	}
	checks := map[string]error{}
	_, checks["Get"] = c.Get(e.Digest())
	_, checks["Sync"] = c.Sync(ctx, img.v1, failSource{t})
	_, checks["Add"] = c.Add(ctx, img.v1.Modules[0], iotestFail{t})
	_, checks["Rehydrate"] = c.Rehydrate(ctx, t.TempDir(), img.v1)
	_, checks["Verify"] = c.Verify(ctx)
	checks["Close"] = c.Close()
	for name, err := range checks {
		if !errors.Is(err, modcache.ErrClosed) {
			t.Errorf("%s after Close = %v, want ErrClosed", name, err)
		}
	}
	if s := c.Stats(); s.Modules != 0 || s.BytesHeld != 0 {
		t.Errorf("Stats after Close = %+v, want empty", s)
	}
}

// TestConcurrent syncs overlapping manifests from several goroutines while
// others read the cache; run with -race. Every unique content must be read
// from the source exactly once.
func TestConcurrent(t *testing.T) {
	ctx := context.Background()
	img := newTestImage()
	src := newFakeSource(img.files)
	src.delay = time.Millisecond
	c := modcache.New(modcache.Options{})
	defer c.Close()

	const syncers = 6
	var wg sync.WaitGroup
	errs := make(chan error, 2*syncers)
	stop := make(chan struct{})
	for i := range syncers {
		m := img.v1
		if i%2 == 1 {
			m = img.v2
		}
		wg.Go(func() {
			if _, err := c.Sync(ctx, m, src); err != nil {
				errs <- err
			}
		})
	}
	var readers sync.WaitGroup
	for range 2 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for _, in := range c.List() {
					if e, err := c.Get(in.Digest); err == nil {
						e.Names()
					}
				}
				c.Stats()
				if _, err := c.Verify(ctx); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	readers.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	opens, read := src.counts()
	want := map[string]int{"vmlinuz": 1, "base.cpio.zst": 1, "kmods.cpio.xz": 1, "site-v1.cpio": 1, "site-v2.cpio": 1}
	if d := cmp.Diff(want, opens); d != "" {
		t.Errorf("opens (-want +got):\n%s", d)
	}
	s := c.Stats()
	if s.Hits+s.Misses != syncers*4 || s.Misses != 5 || read != s.BytesRead || s.BytesRead != s.BytesHeld {
		t.Errorf("Stats = %+v (source handed out %d bytes), want %d lookups, 5 misses, each content read once", s, read, syncers*4)
	}
}

func TestDirSource(t *testing.T) {
	dir := t.TempDir()
	b := content(41, 100)
	if err := os.WriteFile(filepath.Join(dir, "base.cpio"), b, 0o600); err != nil {
		t.Fatal(err)
	}
	abs := filepath.Join(t.TempDir(), "abs.cpio")
	if err := os.WriteFile(abs, b, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		source  string
		wantErr error
		inErr   []string
	}{
		{source: "base.cpio"},
		{source: abs},
		{source: "", wantErr: modcache.ErrNoSource, inErr: []string{`"base"`}},
		{source: "gone.cpio", wantErr: fs.ErrNotExist, inErr: []string{`"base"`, filepath.Join(dir, "gone.cpio")}},
	}
	for _, tt := range tests {
		t.Run(tt.source, func(t *testing.T) {
			rc, err := modcache.DirSource(dir).Open(context.Background(), mod("base", bootimage.RoleInitrd, tt.source, b))
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("Open = %v, want %v", err, tt.wantErr)
				}
				for _, s := range tt.inErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not name %s", err, s)
					}
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer rc.Close()
			got, err := io.ReadAll(rc)
			if err != nil || !bytes.Equal(got, b) {
				t.Errorf("read %d bytes, %v; want the file's %d bytes", len(got), err, len(b))
			}
		})
	}
}

func TestOverhead(t *testing.T) {
	ps := int64(os.Getpagesize())
	tests := []struct {
		size  int64
		names []string
		want  int64
	}{
		{size: 0, want: modcache.PerEntryOverhead},
		{size: 1, names: []string{"ab"}, want: modcache.PerEntryOverhead + 2 + ps - 1 + 576},
		{size: 64 * ps, want: modcache.PerEntryOverhead + 576},
		{size: 64*ps + 1, names: []string{"a", "bcd"}, want: modcache.PerEntryOverhead + 4 + ps - 1 + 2*576},
	}
	for _, tt := range tests {
		if got := modcache.Overhead(tt.size, tt.names); got != tt.want {
			t.Errorf("Overhead(%d, %q) = %d, want %d", tt.size, tt.names, got, tt.want)
		}
	}
}
