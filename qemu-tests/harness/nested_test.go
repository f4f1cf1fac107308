package harness

import (
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
