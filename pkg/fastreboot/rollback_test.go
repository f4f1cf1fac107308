package fastreboot

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// goodImage is m as a rollback image proven good by generation gen.
func goodImage(m *bootimage.Manifest, gen int, by string) *rollback.Image {
	return &rollback.Image{ID: rollback.ImageID(m), Generation: gen, Manifest: *m, Since: t0, By: by}
}

// rollbackImages returns three versions of the test image that differ in
// their site piece only: v0 (the fallback), v1 (last-known-good) and v2
// (the update on trial), and the state generation 2 runs v2 under.
func rollbackImages() (v0, v1, v2 testimage.Image, st *rollback.State) {
	v1, v2 = testimage.Update()
	v0 = testimage.Default()
	v0.Name = "v0"
	v0.Initrds[2].Data = testimage.Cpio(testimage.File{Name: "etc/fastreboot-release", Data: []byte("v0\n")})
	s := rollback.State{
		Good:     goodImage(v1.Manifest(), 1, "bless"),
		Fallback: goodImage(v0.Manifest(), 1, "cold boot"),
		Policy:   rollback.DefaultPolicy(),
	}
	s, err := s.Stage(2, v2.Manifest(), rollback.EventUpdate, &rollback.TrialOptions{Deadline: time.Minute}, t0)
	if err != nil {
		panic(err)
	}
	return v0, v1, v2, &s
}

// TestStageCarriesRollbackImages: a Stage with StageOptions.Rollback
// carries, besides its manifest's modules, the cached modules of the
// state's last-known-good image that the manifest does not name (once
// each), so that the next generation can roll back from its cache alone;
// a module of the fallback image that is not cached is left out and the
// stage still succeeds. The handoff carries the state as given, and
// CarriedManifest lists every carried module once, which Resume adopts:
// the next generation's cache holds last-known-good whole.
func TestStageCarriesRollbackImages(t *testing.T) {
	ctx := context.Background()
	_, v1, v2, st := rollbackImages()
	m1, dir1 := v1.WriteTempDir(t)
	m2, dir2 := v2.WriteTempDir(t)
	cache := newCache(t)
	// Last-known-good is cached (it runs); the fallback is not.
	if _, err := cache.Sync(ctx, m1, modcache.DirSource(dir1)); err != nil {
		t.Fatal(err)
	}
	loader := &fakeLoader{}
	mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader, Logger: testLogger(t)})
	rep, err := mc.Stage(ctx, m2, modcache.DirSource(dir2), StageOptions{Reason: ReasonUpdate, Rollback: st})
	if err != nil {
		t.Fatalf("Stage with a fallback whose module is not cached: %v", err)
	}
	_, img := loader.state()
	h, mods := handoffFromPiece(t, img.initrd[int64(len(img.initrd))-rep.HandoffBytes:])

	site1 := m1.Modules[3]
	want := map[string]bool{}
	for _, mod := range append(slices.Clone(m2.Modules), site1) {
		want[mod.SHA256] = true
	}
	got := map[string]bool{}
	for d := range mods {
		got[d] = true
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("carried module files (-want +got; want v2's and v1's site piece, not v0's):\n%s", diff)
	}
	if mods[site1.SHA256] != string(v1.Initrds[2].Data) {
		t.Errorf("v1's site piece carried with other content")
	}
	if rep.CarriedModules != 5 || rep.CarriedBytes != testimage.TotalSize(m2)+site1.Size || len(h.Carried) != 5 {
		t.Errorf("report: carried %d modules, %d bytes; handoff carried %v", rep.CarriedModules, rep.CarriedBytes, h.Carried)
	}
	if diff := cmp.Diff(st, h.Rollback); diff != "" {
		t.Errorf("Handoff.Rollback (-staged +read):\n%s", diff)
	}
	if h.Rollback == st || h.Rollback.Good == st.Good {
		t.Error("the handoff shares the caller's state")
	}
	wantCarried := append(slices.Clone(m2.Modules), site1)
	if diff := cmp.Diff(wantCarried, h.CarriedManifest().Modules); diff != "" {
		t.Errorf("CarriedManifest (-want +got; v2's modules, then v1's site piece, each once):\n%s", diff)
	}

	// The next generation adopts them all: last-known-good is served from
	// its cache alone.
	root := unpackHandoff(t, img.initrd, rep.HandoffBytes)
	next := newCache(t)
	rs, err := Resume(ctx, next, ResumeOptions{Root: root, StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rs.Rehydrated.Modules != 5 || rs.RehydrateError != "" {
		t.Errorf("resumed: rehydrated %+v, error %q", rs.Rehydrated, rs.RehydrateError)
	}
	if diff := cmp.Diff(st, rs.Rollback); diff != "" {
		t.Errorf("State.Rollback (-staged +resumed):\n%s", diff)
	}
	none := &countingSource{fail: true}
	if _, err := next.Sync(ctx, m1, none); err != nil || len(none.opens) != 0 {
		t.Errorf("last-known-good is not whole in the next generation's cache: %v (read %v)", err, none.opens)
	}
}

// TestStageRollbackCarryNone: CarryNone carries no good image either; the
// state still travels.
func TestStageRollbackCarryNone(t *testing.T) {
	ctx := context.Background()
	_, v1, v2, st := rollbackImages()
	m1, dir1 := v1.WriteTempDir(t)
	m2, dir2 := v2.WriteTempDir(t)
	cache := newCache(t)
	if _, err := cache.Sync(ctx, m1, modcache.DirSource(dir1)); err != nil {
		t.Fatal(err)
	}
	loader := &fakeLoader{}
	mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader})
	rep, err := mc.Stage(ctx, m2, modcache.DirSource(dir2), StageOptions{Reason: ReasonUpdate, Rollback: st, Carry: CarryNone})
	if err != nil {
		t.Fatal(err)
	}
	_, img := loader.state()
	h, mods := handoffFromPiece(t, img.initrd[int64(len(img.initrd))-rep.HandoffBytes:])
	if len(mods) != 0 || len(h.Carried) != 0 || rep.CarriedModules != 0 {
		t.Errorf("CarryNone carried %d files (%v), report %d", len(mods), h.Carried, rep.CarriedModules)
	}
	if diff := cmp.Diff(st, h.Rollback); diff != "" {
		t.Errorf("Handoff.Rollback (-staged +read):\n%s", diff)
	}
}

// TestBuildImageCarriesGoodImages: a crash image (BuildImage) with a
// rollback state carries the state, its own manifest's modules and the
// good images' cached ones: the generation it starts arms a crash loop's
// fallback from its cache (a crash kernel has no storage).
func TestBuildImageCarriesGoodImages(t *testing.T) {
	ctx := context.Background()
	v0, v1, v2, st := rollbackImages()
	m0, dir0 := v0.WriteTempDir(t)
	m1, dir1 := v1.WriteTempDir(t)
	m2, dir2 := v2.WriteTempDir(t)
	cache := newCache(t)
	for m, dir := range map[*bootimage.Manifest]string{m0: dir0, m1: dir1} {
		if _, err := cache.Sync(ctx, m, modcache.DirSource(dir)); err != nil {
			t.Fatal(err)
		}
	}
	mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}})
	armed := st.Armed(st.Decide(2, t0))
	img, err := mc.BuildImage(ctx, m2, modcache.DirSource(dir2), BuildOptions{Reason: ReasonRollback, Generation: 2, Rollback: &armed})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	initrd, err := readWhole(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	h, mods := handoffFromPiece(t, initrd[int64(len(initrd))-img.Report.HandoffBytes:])
	want := map[string]bool{}
	for _, ms := range [][]bootimage.Module{m2.Modules, st.Good.Manifest.Modules, st.Fallback.Manifest.Modules} {
		for _, mod := range ms {
			want[mod.SHA256] = true
		}
	}
	if len(mods) != len(want) || img.Report.CarriedModules != len(want) {
		t.Errorf("crash image carried %d module files (report %d), want %d (v2's and the good images')", len(mods), img.Report.CarriedModules, len(want))
	}
	for d := range want {
		if _, ok := mods[d]; !ok {
			t.Errorf("crash image does not carry %s", d)
		}
	}
	if diff := cmp.Diff(&armed, h.Rollback); diff != "" {
		t.Errorf("crash handoff's Rollback (-built +read):\n%s", diff)
	}
	if h.Reason != ReasonRollback || h.Rollback.Pending == nil || h.Rollback.Pending.Action != rollback.ActionRollback {
		t.Errorf("crash handoff: reason %s, pending %+v", h.Reason, h.Rollback.Pending)
	}
	if got := len(h.CarriedManifest().Modules); got != len(want) {
		t.Errorf("CarriedManifest of the crash handoff: %d modules, want %d", got, len(want))
	}
}
