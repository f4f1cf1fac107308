package harness

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseLdd(t *testing.T) {
	out := "\tlinux-vdso.so.1 (0x00007ffd5a9f2000)\n" +
		"\tlibz.so.1 => /lib/x86_64-linux-gnu/libz.so.1 (0x00007f459728e000)\n" +
		"\tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007fd3482a4000)\n" +
		"\t/lib64/ld-linux-x86-64.so.2 (0x00007fd3484a1000)\n"
	got, err := ParseLdd([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"libz.so.1":            "/lib/x86_64-linux-gnu/libz.so.1",
		"libc.so.6":            "/lib/x86_64-linux-gnu/libc.so.6",
		"ld-linux-x86-64.so.2": "/lib64/ld-linux-x86-64.so.2",
	}
	if d := cmp.Diff(want, got); d != "" {
		t.Errorf("ParseLdd (-want +got):\n%s", d)
	}
	for _, bad := range []string{
		"\tlibfoo.so.1 => not found\n",
		"",
		"\tlibz.so.1 => (0x0)\n",
	} {
		if _, err := ParseLdd([]byte(bad)); err == nil {
			t.Errorf("ParseLdd(%q): no error", bad)
		}
	}
}

func TestNestedQEMUFiles(t *testing.T) {
	files, err := NestedQEMUFiles("")
	if err != nil {
		t.Skipf("no nested QEMU on this host: %v", err)
	}
	have := map[string]bool{}
	for _, f := range files {
		have[f.Path] = true
	}
	for _, p := range []string{"qemu-system-x86_64", "lib/ld-linux-x86-64.so.2", "lib/libc.so.6", "modules/accel-tcg-x86_64.so", "share/kvmvapic.bin"} {
		if !have[p] {
			t.Errorf("NestedQEMUFiles has no %s (%d files)", p, len(files))
		}
	}
}

// TestHostBinaries: a dynamically linked host program comes with its
// libraries and the dynamic loader, each once, at their host paths; a
// missing program is an error naming it.
func TestHostBinaries(t *testing.T) {
	if _, err := exec.LookPath("ldd"); err != nil {
		t.Skipf("no ldd on this host: %v", err)
	}
	sh, err := exec.LookPath("sh")
	if err != nil {
		t.Skipf("no sh: %v", err)
	}
	sh, _ = filepath.Abs(sh)
	files, err := HostBinaries(sh, sh)
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]bool{}
	var loader, libc bool
	for _, f := range files {
		if seen[f.Path] {
			t.Errorf("%s listed twice", f.Path)
		}
		seen[f.Path] = true
		if strings.HasPrefix(f.Path, "/") || f.Src == "" || f.Mode != 0o755 {
			t.Errorf("file %+v: want a relative path, a source and mode 0755", f)
		}
		loader = loader || strings.Contains(f.Path, "ld-linux")
		libc = libc || strings.Contains(f.Path, "libc.so")
	}
	if !seen[strings.TrimPrefix(sh, "/")] || !loader || !libc {
		t.Errorf("HostBinaries(%s) = %+v; want the program, libc and the dynamic loader", sh, files)
	}
	if _, err := HostBinaries("/nonexistent/kexec"); err == nil || !strings.Contains(err.Error(), "/nonexistent/kexec") {
		t.Errorf("HostBinaries of a missing program: %v, want an error naming it", err)
	}
}
