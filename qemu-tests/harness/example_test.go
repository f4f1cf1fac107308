package harness_test

import (
	"context"
	"fmt"
	"log"
	"path/filepath"
	"regexp"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// Build the three initrd pieces and a storage disk, boot Debian's kernel,
// and read a file from the disk in the guest.
func Example() {
	k, err := harness.FindKernel() // after scripts/fetch-kernel.sh
	if err != nil {
		log.Fatal(err)
	}
	dir := "/tmp/fastreboot-example"
	base, err := harness.BuildBase(context.Background(), harness.BaseOptions{
		Commands: []string{harness.FastrebootCmd},
	})
	if err != nil {
		log.Fatal(err)
	}
	kmods, err := harness.BuildKmods(filepath.Join(dir, "kmods.cpio"), k, harness.None, harness.StorageModules...)
	if err != nil {
		log.Fatal(err)
	}
	site := filepath.Join(dir, "site-v1.cpio")
	if err := harness.BuildSite(site, "v1"); err != nil {
		log.Fatal(err)
	}
	initrd := filepath.Join(dir, "initrd-v1.img")
	if _, err := harness.Concat(initrd, base.Path, kmods.Path, site); err != nil {
		log.Fatal(err)
	}
	disk := filepath.Join(dir, "storage.img")
	if err := harness.BuildDisk(disk, 0, harness.File{Path: "hello.txt", Data: []byte("hi\n")}); err != nil {
		log.Fatal(err)
	}

	vm, err := harness.Start(harness.Options{
		Kernel: k.Vmlinuz,
		Initrd: initrd,
		Disks:  []harness.Disk{{Path: disk, ReadOnly: true}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer vm.Close()
	boot, err := vm.WaitBoot(2 * time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("userspace after %.1fs, release %s, CPUs %s\n", boot.StartAt.Seconds(), boot.Release, boot.CPUs)
	if _, err := vm.RunOK("mount -t ext4 -o ro /dev/vda /mnt", 0); err != nil {
		log.Fatal(err)
	}
	out, err := vm.RunOK("cat /mnt/hello.txt", 0)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Print(out)
}

// Drive a kexec from the console: send the command that reboots, then wait
// for the next generation's boot and read the phase timings.
func ExampleVM_WaitBoot() {
	var vm *harness.VM // started and booted as in Example
	if err := vm.SendLine("fastreboot reboot"); err != nil {
		log.Fatal(err)
	}
	sent := vm.Elapsed()
	next, err := vm.WaitBoot(3 * time.Minute)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("request -> kernel %.2fs, kernel -> userspace %.2fs\n",
		(next.KernelAt - sent).Seconds(), (next.StartAt - next.KernelAt).Seconds())
}

// Prove a fast reboot by what the next kernel prints; the old generation's
// last line only dates the request when it reached the console.
func ExampleVM_WaitReboot() {
	var vm *harness.VM // started and booted as in Example
	sent := vm.Elapsed()
	if err := vm.SendLine("fastreboot reboot"); err != nil {
		log.Fatal(err)
	}
	r, err := vm.WaitReboot(sent, regexp.MustCompile(`^fastreboot: rebooting through kexec`), 3*time.Minute)
	if err != nil {
		log.Fatal(err) // no boot, or no new kernel banner (harness.ErrNoJump)
	}
	fmt.Printf("downtime %.2fs (line lost: %v)\n", r.Downtime().Seconds(), r.LineLost)
}

// Poke the machine through QEMU's monitor: an NMI (with
// kernel.unknown_nmi_panic=1 the guest panics into its crash kernel).
func ExampleVM_Monitor() {
	var vm *harness.VM // started and booted as in Example
	if _, err := vm.Monitor("nmi"); err != nil {
		log.Fatal(err)
	}
}
