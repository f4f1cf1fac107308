package bootentry_test

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
)

var update = flag.Bool("update", false, "rewrite the stand-in kernels and initrds of testdata/boot")

// fixtures is the top-level testdata/boot: one root per source (bls,
// grub, debian) and one of broken entries (bad).
var fixtures = filepath.Join("..", "..", "testdata", "boot")

// standIns are the binary files of the fixtures: tiny bzImages with a real
// boot header (the kernel version in their name) and newc archives. The
// text files (entries, grub.cfg, grubenv) and the links are written by
// hand; TestFixtures checks the binaries, -update rewrites them.
func standIns() map[string][]byte {
	kernel := func(v string) []byte { return testimage.Kernel(testimage.KernelOptions{Version: v}) }
	initrd := func(v string) []byte {
		return testimage.Gzip(testimage.Cpio(testimage.File{Name: "init", Data: []byte("#!/bin/sh\necho " + v + "\n"), Mode: 0o755}))
	}
	out := map[string][]byte{}
	for _, root := range []string{"bls/boot", "grub/boot", "debian/boot"} {
		for _, v := range []string{"6.1.0-9-amd64", "6.1.0-10-amd64"} {
			out[root+"/vmlinuz-"+v] = kernel(v)
			out[root+"/initrd.img-"+v] = initrd(v)
		}
	}
	out["bls/boot/ucode.img"] = testimage.Cpio(testimage.File{Name: "kernel/x86/microcode/GenuineIntel.bin", Data: []byte("ucode")})
	out["bad/boot/vmlinuz-6.1.0-10-amd64"] = kernel("6.1.0-10-amd64")
	out["bad/boot/initrd.img-6.1.0-10-amd64"] = initrd("6.1.0-10-amd64")
	return out
}

func TestFixtures(t *testing.T) {
	for name, want := range standIns() {
		p := filepath.Join(fixtures, filepath.FromSlash(name))
		if *update {
			if err := os.WriteFile(p, want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(p)
		if err != nil {
			t.Fatalf("%v (go test ./pkg/bootentry -run TestFixtures -update writes it)", err)
		}
		if string(got) != string(want) && !strings.HasSuffix(name, ".img") {
			// gzip output may change with the Go version: only the kernels must match.
			t.Errorf("%s differs from the stand-in (go test -run TestFixtures -update)", p)
		}
	}
}
