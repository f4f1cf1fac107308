package fastreboot

import (
	"bytes"
	"context"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// cpioEntry is what a test compares of a newc record.
type cpioEntry struct {
	Name           string
	Mode           uint64
	Rmajor, Rminor uint64
	Data           string
}

func cpioEntries(t *testing.T, archive []byte) []cpioEntry {
	t.Helper()
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(archive)))
	if err != nil {
		t.Fatalf("reading the archive: %v", err)
	}
	var out []cpioEntry
	for _, r := range recs {
		e := cpioEntry{Name: r.Name, Mode: r.Mode, Rmajor: r.Rmajor, Rminor: r.Rminor}
		if r.ReaderAt != nil && r.FileSize > 0 {
			b, err := io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			if err != nil {
				t.Fatal(err)
			}
			e.Data = string(b)
		}
		out = append(out, e)
	}
	return out
}

// TestWriteCrashInitPiece: the piece holds the directories, the console
// device and the program as /init, nothing else, and is 4-byte aligned.
func TestWriteCrashInitPiece(t *testing.T) {
	exe := "\x7fELF a static fastreboot binary"
	var buf bytes.Buffer
	n, err := WriteCrashInitPiece(&buf, strings.NewReader(exe), int64(len(exe)))
	if err != nil {
		t.Fatal(err)
	}
	if n != int64(buf.Len()) || n%4 != 0 {
		t.Errorf("wrote %d bytes, buffer has %d: want equal and a multiple of 4", n, buf.Len())
	}
	var want []cpioEntry
	for _, d := range []string{"dev", "proc", "sys", "run", "tmp", "var"} {
		want = append(want, cpioEntry{Name: d, Mode: cpio.S_IFDIR | 0o755})
	}
	want = append(want,
		cpioEntry{Name: "dev/console", Mode: cpio.S_IFCHR | 0o600, Rmajor: 5, Rminor: 1},
		cpioEntry{Name: "init", Mode: cpio.S_IFREG | 0o755, Data: exe},
	)
	if diff := cmp.Diff(want, cpioEntries(t, buf.Bytes())); diff != "" {
		t.Errorf("crash init piece entries (-want +got):\n%s", diff)
	}
	// ReadAllRecords stops at the trailer, which ends the archive so that
	// the handoff piece can follow.
	if tail := buf.Bytes()[max(buf.Len()-128, 0):]; !bytes.Contains(tail, []byte(cpio.Trailer)) {
		t.Errorf("the piece does not end with the %s record", cpio.Trailer)
	}
}

func TestWriteCrashInitPieceBadInput(t *testing.T) {
	for _, tt := range []struct {
		name string
		exe  io.ReaderAt
		size int64
		want string
	}{
		{"no program", nil, 10, "no program"},
		{"empty program", strings.NewReader(""), 0, "no program"},
		{"short program", strings.NewReader("abc"), 10, "init"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := WriteCrashInitPiece(io.Discard, tt.exe, tt.size)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("WriteCrashInitPiece: %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

// TestBuildImageCrashInit: with BuildOptions.CrashInit the initrd is the
// crash init piece and the handoff piece, which still carries every module;
// ReloadInitrdBytes is the initrd a plain build of the same image has.
func TestBuildImageCrashInit(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	// A fixed clock: the handoffs' timelines must have the same length
	// (RFC 3339 drops trailing zeros of the nanoseconds).
	mc := New(newCache(t), Options{Root: fakeTree(t, goodTree), Loader: &fakeLoader{}, Logger: testLogger(t), Now: func() time.Time { return t0 }})
	full, err := mc.BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{Reason: ReasonCrash})
	if err != nil {
		t.Fatal(err)
	}
	defer full.Close()
	exe := strings.Repeat("fastreboot", 1001)
	img, err := mc.BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{
		Reason: ReasonCrash, CrashInit: strings.NewReader(exe),
	})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	initrd, err := readWhole(img.Initrd)
	if err != nil {
		t.Fatal(err)
	}
	piece := initrd[:img.Report.PiecesBytes]
	var names []string
	for _, e := range cpioEntries(t, piece) {
		names = append(names, e.Name)
		if e.Name == CrashInitPath && e.Data != exe {
			t.Errorf("/init holds %d bytes, want the program's %d", len(e.Data), len(exe))
		}
	}
	if want := []string{"dev", "proc", "sys", "run", "tmp", "var", "dev/console", "init"}; !cmp.Equal(names, want) {
		t.Errorf("crash init piece entries %q, want %q", names, want)
	}
	if bytes.Contains(initrd, padded(im)) {
		t.Error("the minimal initrd holds the manifest's pieces")
	}
	h, _ := handoffFromPiece(t, initrd[int64(len(initrd))-img.Report.HandoffBytes:])
	if len(h.Carried) != len(m.Modules) || h.Reason != ReasonCrash {
		t.Errorf("handoff: carried %d of %d modules, reason %s", len(h.Carried), len(m.Modules), h.Reason)
	}
	if got := img.Report.PiecesBytes + img.Report.HandoffBytes; got != img.Report.InitrdBytes {
		t.Errorf("initrd %d bytes, crash init piece %d + handoff %d", img.Report.InitrdBytes, img.Report.PiecesBytes, img.Report.HandoffBytes)
	}
	if img.ReloadInitrdBytes != full.Report.InitrdBytes || full.ReloadInitrdBytes != full.Report.InitrdBytes {
		t.Errorf("ReloadInitrdBytes minimal %d, full %d; want the full image's initrd %d", img.ReloadInitrdBytes, full.ReloadInitrdBytes, full.Report.InitrdBytes)
	}
	if img.UnpackedBytes != img.Report.InitrdBytes {
		t.Errorf("unpacked %d, want the uncompressed initrd's %d", img.UnpackedBytes, img.Report.InitrdBytes)
	}
}

// TestStageReleaseCache: with StageOptions.ReleaseCache the cache keeps only the
// kernel (the load's kernel fd) once the initrd is assembled, and the
// loaded initrd still holds every piece and carried module.
func TestStageReleaseCache(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	cache := newCache(t)
	for _, release := range []bool{false, true} {
		loader := &fakeLoader{}
		mc := New(cache, Options{Root: fakeTree(t, goodTree), Loader: loader})
		rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonCrash, ReleaseCache: release})
		if err != nil {
			t.Fatal(err)
		}
		_, img := loader.state()
		h, mods := handoffFromPiece(t, img.initrd[len(padded(im)):])
		if !bytes.HasPrefix(img.initrd, padded(im)) || len(h.Carried) != len(m.Modules) || len(mods) != len(m.Modules) {
			t.Errorf("release %v: loaded initrd lacks pieces or carried modules (%d of %d carried)", release, len(mods), len(m.Modules))
		}
		want := len(m.Modules)
		if release {
			want = 1
		}
		if got := cache.Stats().Modules; got != want || rep.CarriedModules != len(m.Modules) {
			t.Errorf("release %v: cache holds %d modules after the stage, want %d", release, got, want)
		}
		if _, err := cache.Get(m.Kernel().SHA256); err != nil {
			t.Errorf("release %v: the kernel left the cache: %v", release, err)
		}
	}
}
