package fastreboot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// memBlob is a Blob held in memory.
type memBlob struct {
	*bytes.Reader
	digest string
}

func newMemBlob(b []byte) memBlob { return memBlob{bytes.NewReader(b), testimage.Digest(b)} }

func (m memBlob) Digest() string { return m.digest }

// pieceRecord is one record of a parsed cpio piece.
type pieceRecord struct {
	Name string
	Mode uint64
	Data string
}

// readPiece parses a newc archive with u-root's reader.
func readPiece(t *testing.T, b []byte) []pieceRecord {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("parse handoff piece: %v", err)
	}
	var out []pieceRecord
	for _, r := range recs {
		var data []byte
		if r.ReaderAt != nil {
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatalf("read %s: %v", r.Name, err)
			}
		}
		out = append(out, pieceRecord{Name: r.Name, Mode: r.Mode, Data: string(data)})
	}
	return out
}

// handoffFromPiece returns the decoded handoff.json of a piece and the
// carried module files by digest.
func handoffFromPiece(t *testing.T, b []byte) (*Handoff, map[string]string) {
	t.Helper()
	var h *Handoff
	mods := map[string]string{}
	for _, r := range readPiece(t, b) {
		switch {
		case r.Name == HandoffFile:
			var err error
			if h, err = DecodeHandoff(strings.NewReader(r.Data)); err != nil {
				t.Fatalf("decode %s: %v", r.Name, err)
			}
		case strings.HasPrefix(r.Name, HandoffModulesDir+"/"):
			mods[strings.TrimPrefix(r.Name, HandoffModulesDir+"/")] = r.Data
		}
	}
	if h == nil {
		t.Fatalf("no %s in the piece", HandoffFile)
	}
	return h, mods
}

func testHandoff(m *bootimage.Manifest) *Handoff {
	t0 := time.Date(2025, 11, 25, 15, 0, 0, 0, time.UTC)
	return &Handoff{
		Generation: 2,
		Reason:     ReasonUpdate,
		Timeline:   Timeline{StageStart: t0, StageEnd: t0.Add(1500 * time.Millisecond)},
		Manifest:   *m,
	}
}

func TestWriteHandoffPieceRoundTrip(t *testing.T) {
	im := testimage.Default()
	m := im.Manifest()
	var blobs []Blob
	want := map[string]string{}
	for _, b := range append([]testimage.Blob{im.Kernel}, im.Initrds...) {
		blobs = append(blobs, newMemBlob(b.Data))
		want[testimage.Digest(b.Data)] = string(b.Data)
	}
	blobs = append(blobs, blobs[1]) // a duplicate is carried once
	h := testHandoff(m)
	h.MemoryMap = qemuMap
	h.Crash = &HandoffCrash{Mode: "two-stage", Initrd: "minimal"}

	var buf bytes.Buffer
	n, err := WriteHandoffPiece(&buf, h, blobs)
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n%4 != 0 {
		t.Errorf("wrote %d bytes, buffer holds %d; want equal and a multiple of 4", n, buf.Len())
	}
	if h.Version != HandoffVersion || len(h.Carried) != 4 || !slices.IsSorted(h.Carried) {
		t.Errorf("h after write: version %d carried %v", h.Version, h.Carried)
	}

	recs := readPiece(t, buf.Bytes())
	var names []string
	for _, r := range recs {
		names = append(names, r.Name)
	}
	wantNames := []string{HandoffDir, HandoffModulesDir}
	for _, d := range h.Carried {
		wantNames = append(wantNames, HandoffModulesDir+"/"+d)
	}
	wantNames = append(wantNames, HandoffFile)
	if diff := cmp.Diff(wantNames, names); diff != "" {
		t.Errorf("records (-want +got):\n%s", diff)
	}
	// Root's alone in the next generation's rootfs (the handoff may
	// carry the crash log).
	last := recs[len(recs)-1]
	if recs[0].Mode != cpio.S_IFDIR|0o700 || recs[1].Mode != cpio.S_IFDIR|0o700 || recs[2].Mode != cpio.S_IFREG|0o400 || last.Mode != cpio.S_IFREG|0o600 {
		t.Errorf("modes: dirs %o %o, module %o, %s %o; want 0700, 0400 and 0600", recs[0].Mode, recs[1].Mode, recs[2].Mode, last.Name, last.Mode)
	}
	if !bytes.Contains(buf.Bytes()[buf.Len()-16:], []byte(cpio.Trailer)) {
		t.Errorf("piece does not end with %s", cpio.Trailer)
	}

	got, mods := handoffFromPiece(t, buf.Bytes())
	if diff := cmp.Diff(h, got); diff != "" {
		t.Errorf("handoff.json (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(want, mods); diff != "" {
		t.Errorf("carried modules differ (-want +got):\n%s", diff)
	}
}

func TestWriteHandoffPieceNothingCarried(t *testing.T) {
	h := testHandoff(testimage.Default().Manifest())
	h.Carried = []string{"stale"}
	var buf bytes.Buffer
	if _, err := WriteHandoffPiece(&buf, h, nil); err != nil {
		t.Fatal(err)
	}
	got, mods := handoffFromPiece(t, buf.Bytes())
	if len(got.Carried) != 0 || len(mods) != 0 {
		t.Errorf("carried %v, files %d; want none", got.Carried, len(mods))
	}
}

type badBlob struct {
	memBlob
	digest string
	size   int64
}

func (b badBlob) Digest() string { return b.digest }
func (b badBlob) Size() int64    { return b.size }

func TestWriteHandoffPieceErrors(t *testing.T) {
	data := []byte("module")
	good := newMemBlob(data)
	for _, tc := range []struct {
		name string
		blob Blob
		want string
	}{
		{"path in digest", badBlob{good, "../../etc/passwd", 6}, "not 64 lowercase hex"},
		{"uppercase digest", badBlob{good, strings.ToUpper(good.digest), 6}, "not 64 lowercase hex"},
		{"too large for newc", badBlob{good, good.digest, 1 << 33}, "does not fit"},
		{"short read", badBlob{good, good.digest, 100}, "wrote 6 bytes of file instead of 100"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := WriteHandoffPiece(io.Discard, testHandoff(testimage.Default().Manifest()), []Blob{tc.blob})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

func handoffJSON(t *testing.T, edit func(map[string]any)) string {
	t.Helper()
	h := testHandoff(testimage.Default().Manifest())
	h.Version = HandoffVersion
	h.Carried = []string{h.Manifest.Modules[0].SHA256}
	b, err := json.Marshal(h)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	edit(m)
	b, err = json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestDecodeHandoff(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(map[string]any)
		want string // "" means valid
	}{
		{"valid", func(map[string]any) {}, ""},
		{"unknown fields of a later release", func(m map[string]any) { m["firmware_memmap"] = []int{1, 2} }, ""},
		{"version 0", func(m map[string]any) { m["version"] = 0 }, "version 0"},
		{"future version", func(m map[string]any) { m["version"] = HandoffVersion + 1 }, fmt.Sprintf("version %d", HandoffVersion+1)},
		{"generation 1", func(m map[string]any) { m["generation"] = 1 }, "generation 1"},
		{"cold reason", func(m map[string]any) { m["reason"] = "cold" }, `reason "cold"`},
		{"unknown reason", func(m map[string]any) { m["reason"] = "whim" }, `reason "whim"`},
		{"bad manifest", func(m map[string]any) { m["manifest"].(map[string]any)["modules"] = []any{} }, "manifest"},
		{"carried not in manifest", func(m map[string]any) { m["carried"] = []string{strings.Repeat("ab", 32)} }, "not in the manifest"},
		{"carried path", func(m map[string]any) { m["carried"] = []string{"../x"} }, "not 64 lowercase hex"},
		// A Stage carries the rollback state's good images too.
		{"carried of last-known-good", func(m map[string]any) {
			m["rollback"] = map[string]any{"good": map[string]any{"manifest": map[string]any{"modules": []any{map[string]any{"sha256": strings.Repeat("ab", 32)}}}}}
			m["carried"] = []string{strings.Repeat("ab", 32)}
		}, ""},
		{"carried of the fallback", func(m map[string]any) {
			m["rollback"] = map[string]any{"fallback": map[string]any{"manifest": map[string]any{"modules": []any{map[string]any{"sha256": strings.Repeat("ab", 32)}}}}}
			m["carried"] = []string{strings.Repeat("ab", 32)}
		}, ""},
		{"carried of neither", func(m map[string]any) {
			m["rollback"] = map[string]any{"good": map[string]any{"manifest": map[string]any{"modules": []any{map[string]any{"sha256": strings.Repeat("cd", 32)}}}}}
			m["carried"] = []string{strings.Repeat("ab", 32)}
		}, "not in the manifest or the rollback state's good images"},
		{"wrong type", func(m map[string]any) { m["generation"] = "two" }, "cannot unmarshal"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := DecodeHandoff(strings.NewReader(handoffJSON(t, tc.edit)))
			if tc.want == "" {
				if err != nil || h.Generation != 2 {
					t.Fatalf("DecodeHandoff = %+v, %v", h, err)
				}
				return
			}
			if !errors.Is(err, ErrHandoff) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("err = %v, want ErrHandoff containing %q", err, tc.want)
			}
		})
	}
	if _, err := DecodeHandoff(strings.NewReader("{")); !errors.Is(err, ErrHandoff) {
		t.Errorf("truncated JSON: %v", err)
	}
}

func TestReadHandoff(t *testing.T) {
	root := t.TempDir()
	if _, err := ReadHandoff(root); !errors.Is(err, ErrNoHandoff) {
		t.Fatalf("empty root: %v, want ErrNoHandoff", err)
	}
	p := filepath.Join(root, HandoffFile)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte("not json"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadHandoff(root); !errors.Is(err, ErrHandoff) || !strings.Contains(err.Error(), p) {
		t.Fatalf("bad file: %v, want ErrHandoff naming %s", err, p)
	}
	if err := os.WriteFile(p, []byte(handoffJSON(t, func(map[string]any) {})), 0o644); err != nil {
		t.Fatal(err)
	}
	h, err := ReadHandoff(root)
	if err != nil {
		t.Fatal(err)
	}
	cm := h.CarriedManifest()
	if len(cm.Modules) != 1 || cm.Modules[0].Role != bootimage.RoleKernel || cm.Cmdline != h.Manifest.Cmdline || len(h.Manifest.Modules) != 4 {
		t.Errorf("CarriedManifest = %+v", cm)
	}
}

func FuzzDecodeHandoff(f *testing.F) {
	h := testHandoff(testimage.Default().Manifest())
	h.Version = HandoffVersion
	b, _ := json.Marshal(h)
	f.Add(b)
	f.Add([]byte(`{"version":1,"generation":2,"reason":"crash","manifest":{}}`))
	f.Add([]byte(`{"version":1,"carried":["x"]}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		h, err := DecodeHandoff(bytes.NewReader(data))
		if err != nil {
			if !errors.Is(err, ErrHandoff) {
				t.Fatalf("error %v does not wrap ErrHandoff", err)
			}
			return
		}
		// What decodes must survive a round trip unchanged.
		b, err := json.Marshal(h)
		if err != nil {
			t.Fatal(err)
		}
		h2, err := DecodeHandoff(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("re-decode: %v", err)
		}
		if diff := cmp.Diff(h, h2); diff != "" {
			t.Errorf("round trip (-first +second):\n%s", diff)
		}
	})
}
