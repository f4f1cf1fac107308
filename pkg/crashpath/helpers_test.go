package crashpath_test

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/faketree"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// qemuIomem is /proc/iomem of a 2 GiB QEMU guest with crashkernel=384M.
const qemuIomem = faketree.QEMUIomem

// withCmdline writes root/proc/cmdline.
func withCmdline(t *testing.T, root, cmdline string) {
	t.Helper()
	writeRootFile(t, root, "proc/cmdline", cmdline+"\n")
}

// hasWords tells whether every word is a word of cmdline.
func hasWords(cmdline string, words []string) bool {
	fields := strings.Fields(cmdline)
	for _, w := range words {
		found := false
		for _, f := range fields {
			found = found || f == w
		}
		if !found {
			return false
		}
	}
	return true
}

// rearmWarnings are the warnings about re-arming among ws (the fake roots
// of these tests have no pstore backend, which adds evidence warnings).
func rearmWarnings(ws []string) []string {
	var out []string
	for _, w := range ws {
		if strings.Contains(w, "could not re-arm") {
			out = append(out, w)
		}
	}
	return out
}

// unpackHandoff extracts the handoff piece, the last part of a built
// initrd, into root, as the next kernel would unpack it.
func unpackHandoff(t *testing.T, initrd []byte, rep *fastreboot.StageReport, root string) {
	t.Helper()
	if rep.HandoffBytes <= 0 || rep.HandoffBytes > int64(len(initrd)) {
		t.Fatalf("handoff piece of %d bytes in an initrd of %d", rep.HandoffBytes, len(initrd))
	}
	piece := initrd[int64(len(initrd))-rep.HandoffBytes:]
	rr := cpio.Newc.Reader(bytes.NewReader(piece))
	if err := cpio.ForEachRecord(rr, func(r cpio.Record) error {
		return cpio.CreateFileInRoot(r, root, false)
	}); err != nil {
		t.Fatalf("unpacking the handoff piece: %v", err)
	}
}

// handoffOf unpacks the handoff piece of a built image and reads it.
func handoffOf(t *testing.T, initrd []byte, rep *fastreboot.StageReport) *fastreboot.Handoff {
	t.Helper()
	root := t.TempDir()
	unpackHandoff(t, initrd, rep, root)
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// writeExe writes prog as an executable file and returns its path.
func writeExe(t *testing.T, prog []byte) string {
	t.Helper()
	exe := filepath.Join(t.TempDir(), "fastreboot")
	if err := os.WriteFile(exe, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	return exe
}
