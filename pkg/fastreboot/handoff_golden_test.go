package fastreboot

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/handoff/v2.json and v2-rollback.json (TestHandoffGoldenWrite, TestHandoffGoldenRollback) from what WriteHandoffPiece writes")

// handoffGoldenDir holds the handoff fixtures shared by the repository.
var handoffGoldenDir = filepath.Join("..", "..", "testdata", "handoff")

// goldenHandoff is the handoff of testdata/handoff/v2.json: every field
// set, as a crash stage in a two-stage crash kernel writes them.
func goldenHandoff() (*Handoff, []Blob) {
	im := testimage.Default()
	var blobs []Blob
	for _, b := range append([]testimage.Blob{im.Kernel}, im.Initrds...) {
		blobs = append(blobs, newMemBlob(b.Data))
	}
	t0 := time.Date(2026, 12, 5, 3, 0, 0, 0, time.UTC)
	h := &Handoff{
		Generation: 4,
		Reason:     ReasonCrash,
		Timeline:   Timeline{StageStart: t0, StageEnd: t0.Add(1500 * time.Millisecond)},
		Manifest:   *im.Manifest(),
		CPUs:       &cpustop.Record{BootCPU: 0, BootAPICID: 0, Online: []cpustop.RecordedCPU{{ID: 0, APICID: 0}, {ID: 1, APICID: 1}}},
		MemoryMap: memmap.Map{
			{Start: 0, End: 0x9fbff, Type: memmap.TypeRAM},
			{Start: 0x100000, End: 0x7ffdffff, Type: memmap.TypeRAM},
			{Start: 0xfffc0000, End: 0xffffffff, Type: memmap.TypeReserved},
		},
		Origin: goldenOrigin(),
		Crash: &HandoffCrash{
			Mode:   crashhandler.ModeTwoStage,
			Initrd: "minimal",
			Evidence: &crashhandler.Evidence{
				Time: t0.Add(-time.Minute), Reason: "Kernel panic - not syncing: sysrq triggered crash", CPU: 1,
				KernelRelease: "6.1.0-56-amd64", Log: []string{"sysrq: Trigger a crash"}, LogLines: 1,
				Generation: 3, Mode: crashhandler.ModeTwoStage, Source: "vmcore",
			},
		},
	}
	return h, blobs
}

// goldenOrigin is a signed origin of testimage.Default's manifest, with a
// fixed key.
func goldenOrigin() *ManifestOrigin {
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, ed25519.SeedSize))
	b, err := testimage.Default().Manifest().Marshal()
	if err != nil {
		panic(err)
	}
	return &ManifestOrigin{Path: "/boot/fr/test.json", Signed: &manifestsig.Signed{Manifest: b, Signature: manifestsig.Sign(priv, b)}}
}

// handoffJSONOf returns the handoff.json a handoff piece holds.
func handoffJSONOf(t *testing.T, piece []byte) []byte {
	t.Helper()
	for _, r := range readPiece(t, piece) {
		if r.Name == HandoffFile {
			return []byte(r.Data)
		}
	}
	t.Fatalf("the handoff piece has no %s", HandoffFile)
	return nil
}

// TestHandoffGoldenWrite: what WriteHandoffPiece writes is
// testdata/handoff/v2.json, byte for byte (go test -update rewrites it).
func TestHandoffGoldenWrite(t *testing.T) {
	h, blobs := goldenHandoff()
	var buf bytes.Buffer
	if _, err := WriteHandoffPiece(&buf, h, blobs); err != nil {
		t.Fatal(err)
	}
	got := handoffJSONOf(t, buf.Bytes())
	path := filepath.Join(handoffGoldenDir, "v2.json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(want), string(got)); diff != "" {
		t.Errorf("handoff.json differs from %s (-golden +written; go test -update rewrites it after a deliberate change, and HandoffVersion changes if an older reader would misread it):\n%s", path, diff)
	}
}

// TestHandoffGoldenRead: both fixtures decode; the version 1 handoff an
// older binary wrote (memory map and crash state in "extra") gives the
// same typed record as version 2.
func TestHandoffGoldenRead(t *testing.T) {
	decode := func(name string) *Handoff {
		t.Helper()
		f, err := os.Open(filepath.Join(handoffGoldenDir, name))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		h, err := DecodeHandoff(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return h
	}
	v1, v2, v2n := decode("v1-legacy.json"), decode("v2.json"), decode("v2-no-origin.json")
	if v1.Version != 1 || v2.Version != 2 || v2n.Version != 2 {
		t.Errorf("versions %d, %d and %d, want 1, 2 and 2", v1.Version, v2.Version, v2n.Version)
	}
	want, _ := goldenHandoff()
	// The origin (the signed manifest) came later within version 2.
	if diff := cmp.Diff(want.Origin, v2.Origin); diff != "" {
		t.Errorf("v2.json: origin (-want +got):\n%s", diff)
	}
	if v1.Origin != nil || v2n.Origin != nil {
		t.Errorf("an origin from a handoff without one: %+v, %+v", v1.Origin, v2n.Origin)
	}
	v2.Origin = nil
	for name, h := range map[string]*Handoff{"v1-legacy.json": v1, "v2.json": v2, "v2-no-origin.json": v2n} {
		if len(h.MemoryMap) != 3 || h.MemoryMap.RAMBytes() != want.MemoryMap.RAMBytes() {
			t.Errorf("%s: memory map %v", name, h.MemoryMap)
		}
		if h.Crash == nil || h.Crash.Mode != crashhandler.ModeTwoStage || h.Crash.Initrd != "minimal" ||
			h.Crash.Evidence == nil || h.Crash.Evidence.Generation != 3 || h.Crash.Evidence.Reason != want.Crash.Evidence.Reason {
			t.Errorf("%s: crash %+v", name, h.Crash)
		}
	}
	v1.Version = v2.Version
	j1, _ := json.MarshalIndent(v1, "", "  ")
	j2, _ := json.MarshalIndent(v2, "", "  ")
	if diff := cmp.Diff(string(j2), string(j1)); diff != "" {
		t.Errorf("version 1 and version 2 decode differently (-v2 +v1):\n%s", diff)
	}
}

// TestDecodeHandoffV1BadExtra: a version 1 extra key that does not decode
// refuses the handoff, naming the key.
func TestDecodeHandoffV1BadExtra(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(handoffGoldenDir, "v1-legacy.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	m["extra"].(map[string]any)["memory_map"] = "not a map"
	b, _ = json.Marshal(m)
	if _, err := DecodeHandoff(bytes.NewReader(b)); err == nil || !bytes.Contains([]byte(err.Error()), []byte(`"memory_map"`)) {
		t.Errorf("err = %v, want ErrHandoff naming memory_map", err)
	}
}

// goldenRollbackHandoff is the handoff of testdata/handoff/v2-rollback.json:
// a handoff with a boot assessment whose every field is set (the state no
// single transition writes: it pins the encoding of each field), and whose
// carried modules include one of the fallback image, which the manifest
// does not name.
func goldenRollbackHandoff() (*Handoff, []Blob) {
	h, blobs := goldenHandoff()
	t0 := h.Timeline.StageStart
	h.Generation, h.Reason, h.Origin = 5, ReasonRollback, nil
	h.Crash.Evidence.Generation = 4
	v0 := testimage.Default()
	v0.Name = "v0"
	v0.Initrds[2].Data = testimage.Cpio(testimage.File{Name: "etc/fastreboot-release", Data: []byte("v0\n")})
	blobs = append(blobs, newMemBlob(v0.Initrds[2].Data))
	_, v2 := testimage.Update()
	good := &rollback.Image{
		ID: rollback.ImageID(&h.Manifest), Generation: 2, Manifest: h.Manifest,
		Since: t0.Add(-time.Hour), By: "bless", Dir: "/boot/fr",
	}
	fallback := &rollback.Image{
		ID: rollback.ImageID(v0.Manifest()), Generation: 1, Manifest: *v0.Manifest(),
		Since: t0.Add(-2 * time.Hour), By: "cold boot", Dir: "/boot/fr-v0",
	}
	pending := *good
	h.Rollback = &rollback.State{
		Good:     good,
		Fallback: fallback,
		Trial: &rollback.Trial{
			ID: rollback.ImageID(v2.Manifest()), Name: v2.Name, Generation: 4, Since: t0.Add(-10 * time.Minute),
			TrialOptions: rollback.TrialOptions{Deadline: 10 * time.Minute, Health: []string{"/usr/local/bin/health", "--quick"}, HealthTimeout: 2 * time.Minute},
		},
		Crashes: []time.Time{t0.Add(-5 * time.Minute), t0.Add(-time.Minute)},
		Policy:  rollback.Policy{MaxCrashes: 3, Window: 15 * time.Minute},
		Pending: &rollback.Decision{
			Action: rollback.ActionRollback, Image: &pending,
			Why:      "generation 4 runs v2 on trial: a crash rolls back to last-known-good test",
			LoopEnds: t0.Add(10 * time.Minute),
		},
		History: []rollback.Event{
			{Generation: 1, Reason: rollback.EventCold, Image: "v0@" + fallback.ID, At: t0.Add(-2 * time.Hour)},
			{Generation: 2, Reason: rollback.EventBless, Image: "test@" + good.ID, At: t0.Add(-time.Hour), Note: "bless"},
			{Generation: 4, Reason: rollback.EventUpdate, Image: "v2@" + rollback.ImageID(v2.Manifest()), At: t0.Add(-10 * time.Minute), Note: "on trial; last-known-good test@" + good.ID},
		},
	}
	return h, blobs
}

// TestHandoffGoldenRollback: what WriteHandoffPiece writes for a handoff
// with a boot assessment is testdata/handoff/v2-rollback.json, byte for
// byte (go test -update rewrites it); the fixture decodes to the same
// assessment, and its carried fallback module is in CarriedManifest. The
// older fixtures carry none.
func TestHandoffGoldenRollback(t *testing.T) {
	h, blobs := goldenRollbackHandoff()
	want := h.Rollback.Clone()
	var buf bytes.Buffer
	if _, err := WriteHandoffPiece(&buf, h, blobs); err != nil {
		t.Fatal(err)
	}
	got := handoffJSONOf(t, buf.Bytes())
	path := filepath.Join(handoffGoldenDir, "v2-rollback.json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(golden), string(got)); diff != "" {
		t.Errorf("handoff.json differs from %s (-golden +written; go test -update rewrites it after a deliberate change, and HandoffVersion changes if an older reader would misread it):\n%s", path, diff)
	}

	read, err := DecodeHandoff(bytes.NewReader(golden))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if read.Version != 2 || read.Reason != ReasonRollback || len(read.Carried) != 5 {
		t.Errorf("%s: version %d, reason %s, carried %d; want 2, rollback, 5", path, read.Version, read.Reason, len(read.Carried))
	}
	if diff := cmp.Diff(&want, read.Rollback); diff != "" {
		t.Errorf("%s: rollback (-want +decoded):\n%s", path, diff)
	}
	cm := read.CarriedManifest()
	fallbackSite := want.Fallback.Manifest.Modules[3]
	if len(cm.Modules) != 5 || cm.Modules[4] != fallbackSite {
		t.Errorf("%s: CarriedManifest %v, want the manifest's 4 modules and the fallback's site piece", path, cm.Modules)
	}
	for _, name := range []string{"v1-legacy.json", "v2.json", "v2-no-origin.json"} {
		f, err := os.Open(filepath.Join(handoffGoldenDir, name))
		if err != nil {
			t.Fatal(err)
		}
		old, err := DecodeHandoff(f)
		f.Close()
		if err != nil || old.Rollback != nil {
			t.Errorf("%s: rollback %+v, %v; want none", name, old.Rollback, err)
		}
	}
}

// TestHandoffGoldenKept: a handoff whose modules went to the kept region
// (CarryKept) is testdata/handoff/v2-kept.json, byte for byte (go test
// -update rewrites it): Kept names the region and the index, no module is
// carried, and the version is unchanged (the field is optional: an older
// reader adopts nothing and reads the modules from storage). It decodes to
// the same record; a malformed record is refused.
func TestHandoffGoldenKept(t *testing.T) {
	h, _ := goldenHandoff()
	h.Reason, h.Crash = ReasonUpdate, nil
	h.Kept = &HandoffKept{
		Region: keptmem.Region{Start: 0x40000000, Size: 64 << 20}, CacheSize: 64 << 20,
		IndexSHA256: strings.Repeat("ab", 32), Sequence: 3, Modules: 4, Bytes: 17 << 20,
	}
	want := *h.Kept
	var buf bytes.Buffer
	if _, err := WriteHandoffPiece(&buf, h, nil); err != nil {
		t.Fatal(err)
	}
	got := handoffJSONOf(t, buf.Bytes())
	path := filepath.Join(handoffGoldenDir, "v2-kept.json")
	if *updateGolden {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	golden, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(string(golden), string(got)); diff != "" {
		t.Errorf("handoff.json differs from %s (-golden +written):\n%s", path, diff)
	}
	read, err := DecodeHandoff(bytes.NewReader(golden))
	if err != nil {
		t.Fatal(err)
	}
	if read.Version != HandoffVersion || len(read.Carried) != 0 || read.Kept == nil || *read.Kept != want {
		t.Errorf("%s: version %d, carried %v, kept %+v", path, read.Version, read.Carried, read.Kept)
	}
	bad := bytes.Replace(golden, []byte(strings.Repeat("ab", 32)), []byte("not-a-digest"), 1)
	if _, err := DecodeHandoff(bytes.NewReader(bad)); !errors.Is(err, ErrHandoff) {
		t.Errorf("a kept record with a bad digest: err = %v, want ErrHandoff", err)
	}
}
