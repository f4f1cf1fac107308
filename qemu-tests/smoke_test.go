package qemutests

import (
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// TestSmokeBoot boots Debian's kernel with base+kmods+site and a storage
// disk: the kernel comes up, frguest loads the modules and reports all four
// CPUs, and the ext4 disk written on the host reads back in the guest.
func TestSmokeBoot(t *testing.T) {
	harness.RequireQEMU(t)
	k := harness.RequireKernel(t)
	img := buildImage(t, k, "v1")
	t.Logf("base piece %s: %d bytes (raw %d), cached=%v, %v", filepath.Base(img.base.Path), img.base.Size, img.base.Raw, img.base.Cached, img.base.BuildTime.Round(time.Millisecond))
	t.Logf("kmods piece: %d bytes (.ko total %d), %d modules", img.kmods.Size, img.kmods.Raw, len(img.kmods.Modules))

	token := hex.EncodeToString(randBytes(t, 16))
	disk := filepath.Join(t.TempDir(), "storage.img")
	if err := harness.BuildDisk(disk, 0,
		harness.File{Path: "hello.txt", Data: []byte("hello from the host " + token + "\n")},
		harness.File{Path: "vmlinuz", Src: k.Vmlinuz},
	); err != nil {
		t.Fatalf("build disk: %v", err)
	}

	vm, boot := harness.StartBootT(t, harness.Options{
		Kernel: k.Vmlinuz,
		Initrd: img.initrd,
		Disks:  []harness.Disk{{Path: disk, ReadOnly: true}},
	}, 120*time.Second)
	t.Logf("boot (accel %s): QEMU start -> kernel banner %.2fs, -> userspace (FRGUEST_START) %.2fs, -> ready %.2fs; guest uptime at ready %.2fs",
		vm.Options().Accel, boot.KernelAt.Seconds(), boot.StartAt.Seconds(), boot.ReadyAt.Seconds(), boot.Uptime.Seconds())

	if boot.Release != "v1" {
		t.Errorf("release = %q, want v1 (site piece)", boot.Release)
	}
	if boot.CPUs != "0-3" {
		t.Errorf("cpus online = %q, want 0-3", boot.CPUs)
	}
	if boot.MemTotalKB < 1<<20 {
		t.Errorf("MemTotal = %d kB, want > 1 GiB of the 2 GiB guest", boot.MemTotalKB)
	}
	if boot.ModulesListed != len(img.kmods.Modules) || boot.ModulesLoaded == 0 {
		t.Errorf("modules loaded %d of %d listed, kmods piece has %d", boot.ModulesLoaded, boot.ModulesListed, len(img.kmods.Modules))
	}
	if required := len(img.kmods.Modules) - countOptional(img.kmods.Modules); boot.ModulesLoaded < required {
		t.Errorf("modules loaded %d, want at least the %d required ones", boot.ModulesLoaded, required)
	}

	mods, err := vm.RunOK("cat /proc/modules", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"virtio_pci ", "virtio_blk ", "ext4 "} {
		if !strings.Contains(mods, want) {
			t.Errorf("/proc/modules lacks %q:\n%s", want, mods)
		}
	}

	if _, err := vm.RunOK("mount -t ext4 -o ro /dev/vda /mnt", 60*time.Second); err != nil {
		t.Fatalf("mount storage disk: %v", err)
	}
	got, err := vm.RunOK("cat /mnt/hello.txt", 30*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := "hello from the host " + token; strings.TrimSpace(got) != want {
		t.Errorf("cat /mnt/hello.txt = %q, want %q", got, want)
	}
	if _, code, err := vm.Run("cat /mnt/no-such-file", 30*time.Second); err != nil || code == 0 {
		t.Errorf("cat of a missing file: exit %d, err %v; want a non-zero exit status", code, err)
	}
	sum, err := vm.RunOK("shasum -a 256 /mnt/vmlinuz", 60*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if want := sha256File(t, k.Vmlinuz); !strings.Contains(sum, want) {
		t.Errorf("guest sha256 of vmlinuz = %q, want %s", sum, want)
	}
	if out, err := vm.Monitor("info status"); err != nil || !strings.Contains(out, "running") {
		t.Errorf("monitor info status = %q, %v; want running", out, err)
	}
}

func countOptional(es []harness.LoadEntry) int {
	n := 0
	for _, e := range es {
		if e.Optional {
			n++
		}
	}
	return n
}

func randBytes(t *testing.T, n int) []byte {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func sha256File(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return harness.SHA256Hex(b)
}

// TestKexecBaseline kexecs from generation 1 (site v1) into generation 2
// (site v2) with u-root's kexec command (kexec_file_load), no fastreboot
// involved: the harness follows a boot across a kexec, and the numbers are
// the baseline a fastreboot update is compared with.
func TestKexecBaseline(t *testing.T) {
	harness.RequireQEMU(t)
	k := harness.RequireKernel(t)
	v1 := buildImage(t, k, "v1")
	v2 := buildImage(t, k, "v2")
	disk := filepath.Join(t.TempDir(), "storage.img")
	if err := harness.BuildDisk(disk, 0,
		harness.File{Path: "vmlinuz", Src: k.Vmlinuz},
		harness.File{Path: "initrd-v2.img", Src: v2.initrd},
	); err != nil {
		t.Fatalf("build disk: %v", err)
	}
	vm, gen1 := harness.StartBootT(t, harness.Options{
		Kernel: k.Vmlinuz,
		Initrd: v1.initrd,
		Disks:  []harness.Disk{{Path: disk, ReadOnly: true}},
	}, 120*time.Second)
	if gen1.Release != "v1" {
		t.Fatalf("gen 1 release = %q, want v1", gen1.Release)
	}
	if _, err := vm.RunOK("mount -t ext4 -o ro /dev/vda /mnt", 60*time.Second); err != nil {
		t.Fatal(err)
	}
	loadStart := vm.Elapsed()
	if _, err := vm.RunOK(`kexec -l -i /mnt/initrd-v2.img -c "`+harness.DefaultCmdline+`" /mnt/vmlinuz`, 120*time.Second); err != nil {
		t.Fatalf("kexec load: %v", err)
	}
	loadTook := vm.Elapsed() - loadStart
	if err := vm.SendLine("kexec -e"); err != nil {
		t.Fatal(err)
	}
	requested := vm.Elapsed()
	gen2, err := vm.WaitBoot(120 * time.Second)
	if err != nil {
		t.Fatalf("gen 2 boot: %v", err)
	}
	if gen2.Release != "v2" || gen2.CPUs != "0-3" {
		t.Errorf("gen 2 = release %q cpus %q, want v2 and 0-3", gen2.Release, gen2.CPUs)
	}
	if gen2.KernelAt == 0 {
		t.Errorf("gen 2: no kernel banner seen after the kexec")
	}
	t.Logf("u-root kexec (kexec_file_load): load %.2fs; request -> kernel banner %.2fs, -> userspace %.2fs, -> ready %.2fs",
		loadTook.Seconds(), (gen2.KernelAt - requested).Seconds(), (gen2.StartAt - requested).Seconds(), (gen2.ReadyAt - requested).Seconds())
	if out, err := vm.RunOK("cat /etc/fastreboot-release", 30*time.Second); err != nil || strings.TrimSpace(out) != "v2" {
		t.Errorf("gen 2 shell: release %q, %v; want v2", out, err)
	}
}
