package statindex_test

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/statindex"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// tree writes a kernel and two initrds whose times are an hour old.
func tree(t *testing.T) (dir string, files []string) {
	t.Helper()
	dir = t.TempDir()
	data := map[string][]byte{
		"vmlinuz":   testimage.Kernel(testimage.KernelOptions{}),
		"base.cpio": testimage.Cpio(testimage.File{Name: "init", Data: testimage.Bytes(4096, 1)}),
		"site.cpio": testimage.Cpio(testimage.File{Name: "etc/site", Data: testimage.Bytes(1024, 2)}),
	}
	old := time.Now().Add(-time.Hour)
	for _, n := range []string{"vmlinuz", "base.cpio", "site.cpio"} {
		p := filepath.Join(dir, n)
		if err := os.WriteFile(p, data[n], 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(p, old, old); err != nil {
			t.Fatal(err)
		}
		files = append(files, p)
	}
	return dir, files
}

// describe runs one stage's worth of describing: Open, every file, Save.
// now is the run's start: a test passes a time after the files' change
// times so that their records are not racy.
func describe(t *testing.T, index string, now time.Time, files []string) ([]bootimage.Module, statindex.Report) {
	t.Helper()
	x := statindex.Open(index, now)
	var mods []bootimage.Module
	for i, f := range files {
		role := bootimage.RoleInitrd
		if i == 0 {
			role = bootimage.RoleKernel
		}
		m, err := x.Module(f, role, false)
		if err != nil {
			t.Fatal(err)
		}
		mods = append(mods, m)
	}
	if err := x.Save(); err != nil {
		t.Fatal(err)
	}
	return mods, x.Report()
}

func size(t *testing.T, p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

// later is a run start well after every change the test made.
func later() time.Time { return time.Now().Add(time.Minute) }

func TestSecondRunReadsOnlyTheChangedFile(t *testing.T) {
	dir, files := tree(t)
	index := filepath.Join(t.TempDir(), "state", statindex.FileName)
	mods1, rep := describe(t, index, later(), files)
	var all int64
	for _, f := range files {
		all += size(t, f)
	}
	if rep.Hashed != 3 || rep.BytesRead != all {
		t.Fatalf("first run: %+v, want 3 files hashed, %d bytes", rep, all)
	}
	for i, m := range mods1 {
		b, _ := os.ReadFile(files[i])
		if m.SHA256 != testimage.Digest(b) || m.Size != int64(len(b)) || m.Source != files[i] {
			t.Errorf("%s: %+v", files[i], m)
		}
	}

	// Nothing changed: nothing is read.
	mods2, rep := describe(t, index, later(), files)
	if diff := cmp.Diff(statindex.Report{Files: 3, Hits: 3}, rep); diff != "" {
		t.Errorf("unchanged run (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(mods1, mods2); diff != "" {
		t.Errorf("modules from the index differ (-hashed +index):\n%s", diff)
	}

	// One initrd changes: only it is read.
	site := filepath.Join(dir, "site.cpio")
	changed := testimage.Cpio(testimage.File{Name: "etc/site", Data: testimage.Bytes(2048, 3)})
	if err := os.WriteFile(site, changed, 0o644); err != nil {
		t.Fatal(err)
	}
	mods3, rep := describe(t, index, later(), files)
	want := statindex.Report{Files: 3, Hits: 2, Hashed: 1, BytesRead: int64(len(changed)), Read: []string{site}}
	if diff := cmp.Diff(want, rep); diff != "" {
		t.Errorf("after changing site.cpio (-want +got):\n%s", diff)
	}
	if mods3[2].SHA256 != testimage.Digest(changed) {
		t.Errorf("site.cpio's digest %s, want the new content's", mods3[2].SHA256)
	}
}

// A file touched without a change of content is read again (its times
// changed) and keeps its digest.
func TestTouchedSameContent(t *testing.T) {
	_, files := tree(t)
	index := filepath.Join(t.TempDir(), statindex.FileName)
	mods1, _ := describe(t, index, later(), files)
	touched := time.Now().Add(-30 * time.Minute)
	if err := os.Chtimes(files[1], touched, touched); err != nil {
		t.Fatal(err)
	}
	mods2, rep := describe(t, index, later(), files)
	if rep.Hashed != 1 || rep.Hits != 2 || rep.BytesRead != size(t, files[1]) || mods2[1].SHA256 != mods1[1].SHA256 {
		t.Errorf("after touch: %+v, digest %s want %s", rep, mods2[1].SHA256, mods1[1].SHA256)
	}
}

// An index that lies: the content changes, the size and modification time
// are put back (touch -r, tar, rsync --times). The change time, which user
// space cannot set, gives it away.
func TestIndexThatLies(t *testing.T) {
	_, files := tree(t)
	index := filepath.Join(t.TempDir(), statindex.FileName)
	mods1, _ := describe(t, index, later(), files)
	fi, _ := os.Stat(files[2])
	b, _ := os.ReadFile(files[2])
	forged := append([]byte(nil), b...)
	forged[len(forged)/2] ^= 0xff
	time.Sleep(20 * time.Millisecond) // past the kernel's coarse timestamp tick
	if err := os.WriteFile(files[2], forged, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(files[2], fi.ModTime(), fi.ModTime()); err != nil {
		t.Fatal(err)
	}
	if fi2, _ := os.Stat(files[2]); !fi2.ModTime().Equal(fi.ModTime()) || fi2.Size() != fi.Size() {
		t.Fatal("the forgery did not keep size and modification time")
	}
	mods2, rep := describe(t, index, later(), files)
	if rep.Hashed != 1 || rep.Read[0] != files[2] || mods2[2].SHA256 != testimage.Digest(forged) || mods2[2].SHA256 == mods1[2].SHA256 {
		t.Errorf("forged file: %+v, digest %s (old %s)", rep, mods2[2].SHA256, mods1[2].SHA256)
	}
}

// Racy-clean: a record of a file whose times are not older than the
// index's write time (less the granularity) is hashed again.
func TestRacyClean(t *testing.T) {
	_, files := tree(t)
	index := filepath.Join(t.TempDir(), statindex.FileName)
	now := time.Now()
	// The site file changes in the same second as the run that indexes it.
	if err := os.Chtimes(files[2], now, now); err != nil {
		t.Fatal(err)
	}
	describe(t, index, now, files)
	_, rep := describe(t, index, later(), files)
	// vmlinuz and base.cpio are an hour old but were changed (chtimes) now:
	// their change times are racy too.
	if rep.Racy != 3 || rep.Hashed != 3 {
		t.Errorf("racy run: %+v, want all 3 racy and hashed", rep)
	}
	// Written a minute later, the records are trusted.
	_, rep = describe(t, index, later(), files)
	if rep.Hits != 3 {
		t.Errorf("after aging: %+v", rep)
	}
}

// A corrupt or foreign index is an empty one.
func TestCorruptIndex(t *testing.T) {
	_, files := tree(t)
	index := filepath.Join(t.TempDir(), statindex.FileName)
	for _, content := range []string{"not json", `{"version": 99, "records": {}}`} {
		os.WriteFile(index, []byte(content), 0o644)
		_, rep := describe(t, index, later(), files)
		if rep.Hashed != 3 {
			t.Errorf("%q: %+v", content, rep)
		}
	}
}

// The content checks read bytes too, and are counted.
func TestCheckCounted(t *testing.T) {
	_, files := tree(t)
	x := statindex.Open(filepath.Join(t.TempDir(), statindex.FileName), later())
	if _, err := x.Module(files[1], bootimage.RoleInitrd, true); err != nil {
		t.Fatal(err)
	}
	if rep := x.Report(); rep.BytesRead <= size(t, files[1]) {
		t.Errorf("bytes read %d, want more than the file's %d (hash and check)", rep.BytesRead, size(t, files[1]))
	}
	if _, err := x.Module(files[1], bootimage.RoleKernel, true); err == nil {
		t.Errorf("an initrd checked as a kernel passed")
	}
}
