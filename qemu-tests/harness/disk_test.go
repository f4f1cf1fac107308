package harness

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func TestBuildDisk(t *testing.T) {
	if _, err := lookTool("mke2fs"); err != nil {
		t.Skip("needs mke2fs (e2fsprogs): run scripts/install-deps.sh")
	}
	debugfs, err := lookTool("debugfs")
	if err != nil {
		t.Skip("needs debugfs (e2fsprogs) to read the image back")
	}
	dir := t.TempDir()
	src := filepath.Join(dir, "host-file")
	writeFile(t, src, "kernel bytes")
	img := filepath.Join(dir, "storage.img")
	if err := BuildDisk(img, 0,
		File{Path: "manifest-v1.json", Data: []byte(`{"version":1}`)},
		File{Path: "images/vmlinuz", Src: src},
	); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/manifest-v1.json": `{"version":1}`, "/images/vmlinuz": "kernel bytes"} {
		out, err := exec.Command(debugfs, "-R", "cat "+path, img).Output()
		if err != nil {
			t.Fatalf("debugfs cat %s: %v", path, err)
		}
		if got := strings.TrimSpace(string(out)); got != want {
			t.Errorf("%s on the image = %q, want %q", path, got, want)
		}
	}
	if err := BuildDisk(img, 0, File{Path: "x", Src: filepath.Join(dir, "missing")}); err == nil {
		t.Error("BuildDisk with a missing source file succeeded")
	}
}
