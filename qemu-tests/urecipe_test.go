package qemutests

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// recipeBlock returns the shell block after the <!-- mkuimage --> marker of
// docs/u-root.md: the recipe as a u-root user copies it.
func recipeBlock(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "docs", "u-root.md"))
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	i := strings.Index(doc, "<!-- mkuimage -->\n```sh\n")
	if i < 0 {
		t.Fatal("docs/u-root.md: no ```sh block after <!-- mkuimage -->")
	}
	block := doc[i+len("<!-- mkuimage -->\n```sh\n"):]
	j := strings.Index(block, "\n```")
	if j < 0 {
		t.Fatal("docs/u-root.md: the recipe's block does not end")
	}
	return block[:j+1]
}

// TestURootRecipe runs docs/u-root.md's mkuimage recipe as it is written
// (with mkuimage built from the version qemu-tests requires, and KVER,
// MODROOT and IMG pointing at the kernel the tests boot and a temporary
// image) and boots the image it makes: u-root's init starts frguest, which
// loads the listed modules and starts the daemon, and the virtio ext4 disk
// mounts and reads back.
func TestURootRecipe(t *testing.T) {
	harness.RequireQEMU(t)
	k := harness.RequireKernel(t)
	if _, err := exec.LookPath("modprobe"); err != nil {
		if _, err := os.Stat("/usr/sbin/modprobe"); err != nil {
			t.Skip("no modprobe (kmod) on this machine: the recipe resolves the modules with it")
		}
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	build := exec.Command("go", "build", "-o", filepath.Join(bin, "mkuimage"), "github.com/u-root/mkuimage/cmd/mkuimage")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mkuimage: %v\n%s", err, out)
	}
	script := filepath.Join(dir, "recipe.sh")
	if err := os.WriteFile(script, []byte(recipeBlock(t)), 0o644); err != nil {
		t.Fatal(err)
	}
	img := filepath.Join(dir, "initramfs.cpio")
	// ModulesDir is MODROOT/lib/modules/KVER.
	modRoot := filepath.Dir(filepath.Dir(filepath.Dir(k.ModulesDir)))
	run := exec.Command("bash", "-euo", "pipefail", script)
	run.Env = append(os.Environ(), "KVER="+k.Version, "MODROOT="+modRoot, "IMG="+img,
		"PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH")+string(os.PathListSeparator)+"/usr/sbin:/sbin")
	start := time.Now()
	out, err := run.CombinedOutput()
	if err != nil {
		t.Fatalf("the recipe failed: %v\n%s", err, out)
	}
	st, err := os.Stat(img)
	if err != nil {
		t.Fatalf("the recipe wrote no image: %v\n%s", err, out)
	}
	t.Logf("recipe: %s, %d bytes, built in %v", filepath.Base(img), st.Size(), time.Since(start).Round(time.Second))

	disk := filepath.Join(dir, "storage.img")
	if err := harness.BuildDisk(disk, 0, harness.File{Path: "hello.txt", Data: []byte("hello from the recipe's disk\n")}); err != nil {
		t.Fatal(err)
	}
	vm, boot := harness.StartBootT(t, harness.Options{
		Kernel: k.Vmlinuz, Initrd: img,
		Disks: []harness.Disk{{Path: disk, ReadOnly: true}},
	}, 3*time.Minute)
	t.Logf("boot: QEMU start -> userspace %.2fs, -> ready %.2fs; modules loaded %d of %d listed, daemon %s",
		boot.StartAt.Seconds(), boot.ReadyAt.Seconds(), boot.ModulesLoaded, boot.ModulesListed, boot.Daemon)
	if boot.Daemon != "started" || boot.CPUs != "0-3" {
		t.Errorf("ready %+v: want the daemon started and CPUs 0-3", boot.Ready)
	}
	// 12 modules for Debian's 6.1 (one optional: crc32c-intel).
	if boot.ModulesListed < 10 || boot.ModulesLoaded < boot.ModulesListed-1 {
		t.Errorf("modules loaded %d of %d listed: want the recipe's list loaded", boot.ModulesLoaded, boot.ModulesListed)
	}
	got, err := vm.RunOK("mkdir -p /mnt && mount -t ext4 -o ro /dev/vda /mnt && cat /mnt/hello.txt", time.Minute)
	if err != nil || !strings.Contains(got, "hello from the recipe's disk") {
		t.Errorf("reading the virtio ext4 disk: %q, %v", got, err)
	}
	if got, err := vm.RunOK("fastreboot status", time.Minute); err != nil || !strings.Contains(got, "generation 1") {
		t.Errorf("fastreboot status in the recipe's image: %v\n%s", err, got)
	}
}
