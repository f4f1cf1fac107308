package bootimage

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"

	"github.com/u-root/u-root/pkg/cpio"
)

func ExampleDiff() {
	v1 := &Manifest{
		Version: SchemaVersion,
		Cmdline: "console=ttyS0 quiet",
		Modules: []Module{
			{Name: "vmlinuz", Role: RoleKernel, Size: 8 << 20, SHA256: "1111111111111111111111111111111111111111111111111111111111111111"},
			{Name: "base.cpio.zst", Role: RoleInitrd, Size: 3 << 20, SHA256: "2222222222222222222222222222222222222222222222222222222222222222"},
			{Name: "site.cpio", Role: RoleInitrd, Size: 512, SHA256: "3333333333333333333333333333333333333333333333333333333333333333"},
		},
	}
	// v2 ships a new site piece and a kernel module piece; kernel and base
	// stay, so a cache holding v1 reads only the two new pieces.
	v2 := &Manifest{
		Version: SchemaVersion,
		Cmdline: "console=ttyS0 quiet",
		Modules: []Module{
			v1.Modules[0],
			v1.Modules[1],
			{Name: "kmods.cpio.xz", Role: RoleInitrd, Size: 900 << 10, SHA256: "4444444444444444444444444444444444444444444444444444444444444444"},
			{Name: "site.cpio", Role: RoleInitrd, Size: 512, SHA256: "5555555555555555555555555555555555555555555555555555555555555555"},
		},
	}
	d := Diff(v1, v2)
	fmt.Println(d)
	fmt.Println("same image:", d.Empty())
	// Output:
	// added: kmods.cpio.xz
	// changed: site.cpio
	// same image: false
}

func ExampleFromFiles() {
	dir, err := os.MkdirTemp("", "bootimage-example")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dir)

	// A kernel and an initrd piece as a build leaves them (here: a
	// minimal bzImage around a gzip-compressed ELF and a one-file newc
	// archive).
	kernel := filepath.Join(dir, "vmlinuz")
	initrd := filepath.Join(dir, "site.cpio")
	if err := os.WriteFile(kernel, fakeBzImage(nil), 0o644); err != nil {
		fmt.Println(err)
		return
	}
	var site bytes.Buffer
	w := cpio.Newc.Writer(&site)
	cpio.WriteRecords(w, []cpio.Record{cpio.StaticFile("etc/fastreboot-release", "v2\n", 0o644)})
	cpio.WriteTrailer(w)
	if err := os.WriteFile(initrd, site.Bytes(), 0o644); err != nil {
		fmt.Println(err)
		return
	}

	// FromFiles hashes and checks each file; the result is ready to be
	// written next to them.
	m, err := FromFiles(kernel, []string{initrd}, "console=ttyS0 quiet")
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, mod := range m.Modules {
		fmt.Printf("%-6s %-9s %5d bytes  sha256 %s...\n", mod.Role, mod.Name, mod.Size, mod.SHA256[:12])
	}
	if _, err := m.Marshal(); err != nil {
		fmt.Println(err)
	}
	// Output:
	// kernel vmlinuz    3072 bytes  sha256 3fd65776031f...
	// initrd site.cpio   264 bytes  sha256 a027700feb45...
}

func ExampleCleanCmdline() {
	fmt.Println(CleanCmdline("BOOT_IMAGE=/boot/vmlinuz-6.1.0-56-amd64 root=UUID=0c9f ro quiet initrd=/initrd.img\n"))
	fmt.Println(CleanCmdline("console=ttyS0 crashkernel=256M elfcorehdr=0x7b000000 fastreboot.crash nr_cpus=1 reset_devices"))
	// Output:
	// root=UUID=0c9f ro quiet
	// console=ttyS0 crashkernel=256M
}
