package harness

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/qemu-tests/internal/loadlist"
	"github.com/google/go-cmp/cmp"
)

// A trimmed copy of what depmod wrote for Debian's 6.1 kernel.
const (
	testModulesDep = `kernel/fs/ext4/ext4.ko: kernel/lib/crc16.ko kernel/fs/mbcache.ko kernel/fs/jbd2/jbd2.ko
kernel/fs/mbcache.ko:
kernel/fs/jbd2/jbd2.ko:
kernel/lib/crc16.ko:
kernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/virtio/virtio_ring.ko:
kernel/drivers/virtio/virtio_pci_legacy_dev.ko:
kernel/drivers/virtio/virtio_pci_modern_dev.ko:
kernel/drivers/virtio/virtio_pci.ko: kernel/drivers/virtio/virtio_pci_legacy_dev.ko kernel/drivers/virtio/virtio_pci_modern_dev.ko kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko
kernel/arch/x86/crypto/crc32c-intel.ko:
kernel/crypto/crc32c_generic.ko:
kernel/drivers/nvdimm/libnvdimm.ko:
kernel/drivers/nvdimm/nd_pmem.ko: kernel/drivers/nvdimm/nd_btt.ko kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/nd_btt.ko: kernel/drivers/nvdimm/libnvdimm.ko
kernel/drivers/nvdimm/nd_e820.ko: kernel/drivers/nvdimm/libnvdimm.ko
kernel/fs/loop/a.ko: kernel/fs/loop/b.ko
kernel/fs/loop/b.ko: kernel/fs/loop/a.ko
`
	testSoftdep = `# Soft dependencies extracted from modules themselves.
softdep ext4 pre: crypto-crc32c
softdep jbd2 pre: crypto-crc32c
softdep virtio_blk post: no-such-alias
`
	testAlias = `alias crypto-crc32c-intel crc32c_intel
alias crypto-crc32c crc32c_intel
alias crypto-crc32c crc32c_generic
alias pci:v00001AF4d*sv*sd*bc*sc*i* virtio_pci
alias fs-sha1 sha1_builtin
`
	testBuiltin = "kernel/crypto/sha1_builtin.ko\nkernel/fs/ramfs/ramfs.ko\n"
)

func testModulesDir(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "lib", "modules", "6.1.0-test")
	for name, content := range map[string]string{
		"modules.dep": testModulesDep, "modules.softdep": testSoftdep,
		"modules.alias": testAlias, "modules.builtin": testBuiltin,
	} {
		writeFile(t, filepath.Join(dir, name), content)
	}
	for _, line := range strings.Split(testModulesDep, "\n") {
		if mod, _, ok := strings.Cut(line, ":"); ok {
			writeFile(t, filepath.Join(dir, mod), "\x7fELF "+mod)
		}
	}
	return dir
}

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestResolve(t *testing.T) {
	db, err := LoadModuleDB(testModulesDir(t))
	if err != nil {
		t.Fatal(err)
	}
	req := func(p string) LoadEntry { return LoadEntry{Path: p} }
	opt := func(p string) LoadEntry { return LoadEntry{Path: p, Optional: true} }
	for _, tt := range []struct {
		name    string
		in      []string
		want    []LoadEntry
		wantErr error
	}{
		{
			name: "virtio_pci in modprobe order",
			in:   []string{"virtio_pci"},
			want: []LoadEntry{
				req("kernel/drivers/virtio/virtio_ring.ko"),
				req("kernel/drivers/virtio/virtio.ko"),
				req("kernel/drivers/virtio/virtio_pci_modern_dev.ko"),
				req("kernel/drivers/virtio/virtio_pci_legacy_dev.ko"),
				req("kernel/drivers/virtio/virtio_pci.ko"),
			},
		},
		{
			name: "storage modules share deps, softdep alias alternatives optional",
			in:   StorageModules,
			want: []LoadEntry{
				req("kernel/drivers/virtio/virtio_ring.ko"),
				req("kernel/drivers/virtio/virtio.ko"),
				req("kernel/drivers/virtio/virtio_pci_modern_dev.ko"),
				req("kernel/drivers/virtio/virtio_pci_legacy_dev.ko"),
				req("kernel/drivers/virtio/virtio_pci.ko"),
				req("kernel/drivers/block/virtio_blk.ko"),
				opt("kernel/arch/x86/crypto/crc32c-intel.ko"),
				opt("kernel/crypto/crc32c_generic.ko"),
				req("kernel/fs/jbd2/jbd2.ko"),
				req("kernel/fs/mbcache.ko"),
				req("kernel/lib/crc16.ko"),
				req("kernel/fs/ext4/ext4.ko"),
			},
		},
		{
			name: "kept region modules: the region's driver before the namespace's",
			in:   KeptRegionModules,
			want: []LoadEntry{
				req("kernel/drivers/nvdimm/libnvdimm.ko"),
				req("kernel/drivers/nvdimm/nd_e820.ko"),
				req("kernel/drivers/nvdimm/nd_btt.ko"),
				req("kernel/drivers/nvdimm/nd_pmem.ko"),
			},
		},
		{
			name: "optional made required when asked for by name",
			in:   []string{"crypto-crc32c", "crc32c_generic"},
			want: []LoadEntry{
				opt("kernel/arch/x86/crypto/crc32c-intel.ko"),
				req("kernel/crypto/crc32c_generic.ko"),
			},
		},
		{name: "dash or underscore", in: []string{"crc32c-intel"}, want: []LoadEntry{req("kernel/arch/x86/crypto/crc32c-intel.ko")}},
		{name: "builtin skipped", in: []string{"ramfs", "fs-sha1"}, want: nil},
		{name: "unknown", in: []string{"nope"}, wantErr: ErrUnknownModule},
		{name: "cycle", in: []string{"a"}, wantErr: errCycleForTest},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := db.Resolve(tt.in...)
			if tt.wantErr == errCycleForTest {
				if err == nil || !strings.Contains(err.Error(), "cycle") {
					t.Fatalf("Resolve(%v) error = %v, want a dependency cycle", tt.in, err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Resolve(%v) error = %v, want %v", tt.in, err, tt.wantErr)
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Resolve(%v) mismatch (-want +got):\n%s", tt.in, diff)
			}
		})
	}
}

var errCycleForTest = errors.New("cycle")

func TestParseModulesDepErrors(t *testing.T) {
	var db ModuleDB
	if err := db.ParseModulesDep(strings.NewReader("kernel/a.ko kernel/b.ko\n")); err == nil {
		t.Error("ParseModulesDep accepted a line without a colon")
	}
}

func FuzzParseModuleDB(f *testing.F) {
	f.Add(testModulesDep, testSoftdep, testAlias)
	f.Add("a.ko: b.ko\nb.ko: a.ko\n", "softdep a pre: b post:", "alias x a\n")
	f.Fuzz(func(t *testing.T, dep, soft, alias string) {
		var db ModuleDB
		if db.ParseModulesDep(strings.NewReader(dep)) != nil {
			return
		}
		db.ParseSoftdeps(strings.NewReader(soft))
		db.ParseAliases(strings.NewReader(alias))
		for name := range db.ByName {
			entries, err := db.Resolve(name)
			if err != nil {
				continue
			}
			seen := map[string]bool{}
			for _, e := range entries {
				if seen[e.Path] {
					t.Fatalf("Resolve(%q) lists %s twice", name, e.Path)
				}
				seen[e.Path] = true
			}
			if last := entries[len(entries)-1]; !seen[db.ByName[name]] {
				t.Fatalf("Resolve(%q) lacks the module itself (last %v)", name, last)
			}
		}
	})
}

func TestBuildKmods(t *testing.T) {
	dir := testModulesDir(t)
	k := &Kernel{Vmlinuz: "/nonexistent", Version: "6.1.0-test", ModulesDir: dir}
	for _, c := range []Compression{None, Xz, Zstd, Gzip} {
		t.Run("compression="+string(c), func(t *testing.T) {
			dst := filepath.Join(t.TempDir(), "kmods.cpio"+c.Ext())
			p, err := BuildKmods(dst, k, c, "virtio_blk")
			if err != nil {
				t.Fatal(err)
			}
			files := readPiece(t, dst, c)
			wantList := "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio.ko\nkernel/drivers/block/virtio_blk.ko\n"
			if got := files[loadlist.Path]; got != wantList {
				t.Errorf("load list = %q, want %q", got, wantList)
			}
			if got, want := files["lib/modules/6.1.0-test/kernel/drivers/block/virtio_blk.ko"], "\x7fELF kernel/drivers/block/virtio_blk.ko"; got != want {
				t.Errorf("virtio_blk.ko content = %q, want %q", got, want)
			}
			wantDep := "kernel/drivers/virtio/virtio_ring.ko:\nkernel/drivers/virtio/virtio.ko: kernel/drivers/virtio/virtio_ring.ko\n" +
				"kernel/drivers/block/virtio_blk.ko: kernel/drivers/virtio/virtio.ko kernel/drivers/virtio/virtio_ring.ko\n"
			if got := files["lib/modules/6.1.0-test/modules.dep"]; got != wantDep {
				t.Errorf("modules.dep = %q, want %q", got, wantDep)
			}
			if len(p.Modules) != 3 || p.Size <= 0 || p.Raw <= 0 {
				t.Errorf("piece = %+v, want 3 modules and sizes", p)
			}
		})
	}
}

// TestBuildKmodsOnDisk: modules on disk are in the piece and its
// modules.dep, never in the load list, and one also loaded counts once.
func TestBuildKmodsOnDisk(t *testing.T) {
	dir := testModulesDir(t)
	k := &Kernel{Vmlinuz: "/nonexistent", Version: "6.1.0-test", ModulesDir: dir}
	dst := filepath.Join(t.TempDir(), "kmods.cpio")
	p, err := BuildKmodsOnDisk(dst, k, None, []string{"virtio_blk"}, []string{"ext4", "virtio"})
	if err != nil {
		t.Fatal(err)
	}
	files := readPiece(t, dst, None)
	wantList := "kernel/drivers/virtio/virtio_ring.ko\nkernel/drivers/virtio/virtio.ko\nkernel/drivers/block/virtio_blk.ko\n"
	if got := files[loadlist.Path]; got != wantList {
		t.Errorf("load list = %q, want %q (no module on disk only)", got, wantList)
	}
	var onDisk []string
	for _, e := range p.OnDisk {
		onDisk = append(onDisk, e.Path)
	}
	wantOnDisk := []string{"kernel/arch/x86/crypto/crc32c-intel.ko", "kernel/crypto/crc32c_generic.ko",
		"kernel/fs/jbd2/jbd2.ko", "kernel/fs/mbcache.ko", "kernel/lib/crc16.ko", "kernel/fs/ext4/ext4.ko"}
	if diff := cmp.Diff(wantOnDisk, onDisk); diff != "" {
		t.Errorf("OnDisk mismatch (-want +got):\n%s", diff)
	}
	dep := files["lib/modules/6.1.0-test/modules.dep"]
	for _, m := range append(wantOnDisk, "kernel/drivers/block/virtio_blk.ko") {
		if _, ok := files["lib/modules/6.1.0-test/"+m]; !ok {
			t.Errorf("piece lacks %s", m)
		}
		if !strings.Contains(dep, m+":") {
			t.Errorf("modules.dep lacks %s: %q", m, dep)
		}
	}
	if n := strings.Count(dep, "kernel/drivers/virtio/virtio.ko:"); n != 1 {
		t.Errorf("modules.dep lists virtio.ko %d times, want once: %q", n, dep)
	}
}
