package bootentry_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/u-root/u-root/pkg/boot"
	"github.com/u-root/u-root/pkg/boot/bls"
	"github.com/u-root/u-root/pkg/ulog"
)

// TestAgreesWithURootBLS compares the BLS entries with u-root's
// pkg/boot/bls on the same tree. This package parses Type #1 entries
// itself because u-root's ScanBLSEntries (v0.16.0) returns images without
// the entry's id (so --entry ID could not be resolved), keeps one initrd
// (the first word of the last initrd line: the 6.1.0-10 entry below loses
// its microcode piece), never matches loader.conf's default (its test of
// filepath.Match's result is inverted), and leaves every kernel and initrd
// it opened open. Where u-root's result is complete, the two agree.
func TestAgreesWithURootBLS(t *testing.T) {
	root, _ := filepath.Abs(filepath.Join(fixtures, "bls"))
	l := scan(t, root)
	imgs, err := bls.ScanBLSEntries(ulog.Null, filepath.Join(root, "boot"), nil, "")
	if err != nil {
		t.Fatal(err)
	}
	byKernel := map[string]*boot.LinuxImage{}
	for _, im := range imgs {
		li := im.(*boot.LinuxImage)
		k := li.Kernel.(*os.File)
		defer k.Close()
		defer li.Initrd.(*os.File).Close()
		byKernel[k.Name()] = li
	}
	if len(byKernel) != len(l.Entries) {
		t.Fatalf("u-root found %d entries, we %d", len(byKernel), len(l.Entries))
	}
	for _, e := range l.Entries {
		li := byKernel[e.Kernel]
		if li == nil {
			t.Errorf("%s: u-root has no entry with kernel %s", e.ID, e.Kernel)
			continue
		}
		if li.Cmdline != e.Cmdline && e.ID != "0a1b2c-6.1.0-10-amd64" {
			t.Errorf("%s: command line %q, u-root %q", e.ID, e.Cmdline, li.Cmdline)
		}
		initrd := li.Initrd.(*os.File).Name()
		if initrd != e.Initrds[len(e.Initrds)-1] {
			t.Errorf("%s: last initrd %s, u-root %s", e.ID, e.Initrds[len(e.Initrds)-1], initrd)
		}
		if want := e.Title + " " + e.Version; li.Name != want {
			t.Errorf("%s: u-root names it %q, want %q", e.ID, li.Name, want)
		}
	}
	if e, _ := l.Lookup("0a1b2c-6.1.0-10-amd64"); len(e.Initrds) != 2 {
		t.Errorf("the 6.1.0-10 entry has %d initrds, want 2 (ucode.img and its initramfs)", len(e.Initrds))
	}
}
