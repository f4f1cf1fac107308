package bootimage

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// fakeRoot writes a /proc and /boot tree for release rel into a temp dir.
func fakeRoot(t *testing.T, rel, initrdName string, kernel, initrd []byte) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, root, "proc/cmdline", []byte("BOOT_IMAGE=/boot/vmlinuz-"+rel+" root=UUID=0c9f ro quiet crashkernel=256M initrd=/boot/initrd.img\n"))
	writeFile(t, root, "proc/sys/kernel/osrelease", []byte(rel+"\n"))
	writeFile(t, root, "boot/vmlinuz-"+rel, kernel)
	if initrdName != "" {
		writeFile(t, root, "boot/"+initrdName, initrd)
	}
	return root
}

func TestFromRunningSystem(t *testing.T) {
	const rel = "6.1.0-56-amd64"
	kernel := fakeBzImage(nil)
	initrd := concat(compress(t, "gzip", sampleNewc(t)), compress(t, "zstd", sampleCRC()))

	for _, initrdName := range []string{"initrd.img-" + rel, "initramfs-" + rel + ".img", "initrd-" + rel} {
		t.Run(initrdName, func(t *testing.T) {
			root := fakeRoot(t, rel, initrdName, kernel, initrd)
			got, err := FromRunningSystem(RunningOptions{Root: root})
			if err != nil {
				t.Fatal(err)
			}
			want := &Manifest{
				Version: SchemaVersion,
				Name:    rel,
				Cmdline: "root=UUID=0c9f ro quiet crashkernel=256M",
				Modules: []Module{
					{Name: "vmlinuz-" + rel, Role: RoleKernel, Size: int64(len(kernel)), SHA256: sha256Hex(kernel), Source: filepath.Join(root, "boot/vmlinuz-"+rel)},
					{Name: initrdName, Role: RoleInitrd, Size: int64(len(initrd)), SHA256: sha256Hex(initrd), Source: filepath.Join(root, "boot", initrdName)},
				},
			}
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("FromRunningSystem (-want +got):\n%s", diff)
			}
		})
	}
}

func TestFromRunningSystemErrors(t *testing.T) {
	const rel = "6.1.0-test"
	kernel := fakeBzImage(nil)
	initrd := sampleNewc(t)

	t.Run("release given", func(t *testing.T) {
		root := fakeRoot(t, rel, "initrd.img-"+rel, kernel, initrd)
		// Another release installed next to the running one.
		writeFile(t, root, "boot/vmlinuz-6.2.0", kernel)
		writeFile(t, root, "boot/initrd.img-6.2.0", initrd)
		m, err := FromRunningSystem(RunningOptions{Root: root, Release: "6.2.0"})
		if err != nil {
			t.Fatal(err)
		}
		if m.Name != "6.2.0" || m.Kernel().Name != "vmlinuz-6.2.0" {
			t.Errorf("got manifest %q with kernel %q, want release 6.2.0", m.Name, m.Kernel().Name)
		}
	})
	t.Run("no initrd", func(t *testing.T) {
		root := fakeRoot(t, rel, "", kernel, nil)
		_, err := FromRunningSystem(RunningOptions{Root: root})
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), filepath.Join(root, "boot/initrd.img-"+rel)) {
			t.Errorf("FromRunningSystem = %v, want ErrNotExist naming the initrd paths tried", err)
		}
	})
	t.Run("no osrelease", func(t *testing.T) {
		root := fakeRoot(t, rel, "initrd.img-"+rel, kernel, initrd)
		os.Remove(filepath.Join(root, "proc/sys/kernel/osrelease"))
		_, err := FromRunningSystem(RunningOptions{Root: root})
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "osrelease") {
			t.Errorf("FromRunningSystem = %v, want ErrNotExist naming osrelease", err)
		}
	})
	t.Run("kernel is not a bzImage", func(t *testing.T) {
		root := fakeRoot(t, rel, "initrd.img-"+rel, []byte(strings.Repeat("ELF", 1000)), initrd)
		_, err := FromRunningSystem(RunningOptions{Root: root})
		if !errors.Is(err, ErrNotBzImage) || !strings.Contains(err.Error(), "vmlinuz-"+rel) {
			t.Errorf("FromRunningSystem = %v, want ErrNotBzImage naming the kernel", err)
		}
	})
	t.Run("release with a slash", func(t *testing.T) {
		root := fakeRoot(t, rel, "initrd.img-"+rel, kernel, initrd)
		if _, err := FromRunningSystem(RunningOptions{Root: root, Release: "../../etc/x"}); !errors.Is(err, ErrInvalid) {
			t.Errorf("FromRunningSystem = %v, want ErrInvalid", err)
		}
	})
}

func TestFromFiles(t *testing.T) {
	dir := t.TempDir()
	kernel := fakeBzImage(nil)
	base := compress(t, "zstd", sampleNewc(t))
	site := sampleCRC()
	kp := writeFile(t, dir, "vmlinuz", kernel)
	bp := writeFile(t, dir, "base.cpio.zst", base)
	sp := writeFile(t, dir, "v2/site.cpio", site)

	got, err := FromFiles(kp, []string{bp, sp}, "console=ttyS0")
	if err != nil {
		t.Fatal(err)
	}
	want := &Manifest{
		Version: SchemaVersion,
		Cmdline: "console=ttyS0",
		Modules: []Module{
			{Name: "vmlinuz", Role: RoleKernel, Size: int64(len(kernel)), SHA256: sha256Hex(kernel), Source: kp},
			{Name: "base.cpio.zst", Role: RoleInitrd, Size: int64(len(base)), SHA256: sha256Hex(base), Source: bp},
			{Name: "site.cpio", Role: RoleInitrd, Size: int64(len(site)), SHA256: sha256Hex(site), Source: sp},
		},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("FromFiles (-want +got):\n%s", diff)
	}

	bad := writeFile(t, dir, "bad.cpio.gz", compress(t, "gzip", newcArchive(t, sampleRecords(), true)))
	tests := []struct {
		name    string
		kernel  string
		initrds []string
		cmdline string
		is      error
		want    string
	}{
		{"initrd without trailer", kp, []string{bp, bad}, "", ErrBadInitrd, bad},
		{"initrd as kernel", bp, nil, "", ErrNotBzImage, bp},
		{"missing file", kp, []string{filepath.Join(dir, "nope")}, "", fs.ErrNotExist, "nope"},
		{"directory", kp, []string{filepath.Join(dir, "v2")}, "", ErrNotRegularFile, "v2: is a directory"},
		{"same base name twice", kp, []string{sp, writeFile(t, dir, "v3/site.cpio", site)}, "", ErrInvalid, `duplicate module name "site.cpio"`},
		{"cmdline too long", kp, nil, strings.Repeat("x", 4096), ErrCmdlineTooLong, "4096 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromFiles(tt.kernel, tt.initrds, tt.cmdline)
			if !errors.Is(err, tt.is) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("FromFiles = %v, want %v mentioning %q", err, tt.is, tt.want)
			}
		})
	}
}
