package qemutests

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// keptRegion is the legacy persistent-memory region of TestKeptRegion: 64
// MiB at 1 GiB, inside the 2 GiB guest's RAM.
const (
	keptRegion      = "64M!0x40000000"
	keptRegionIomem = "40000000-43ffffff : Persistent Memory (legacy)"
)

// TestKeptRegion proves what docs/kernel-facts.md ("Kept memory region")
// says about memmap=SIZE!START on Debian's kernel: frguest's modules give a
// raw /dev/pmem0 over exactly the region, probing writes nothing into it,
// it is not System RAM (kexec_file_load puts no segment there), and bytes
// written with O_SYNC read back unchanged after a fast reboot whose command
// line carries the region again.
func TestKeptRegion(t *testing.T) {
	pattern := bytes.Repeat([]byte("fastreboot kept\n"), 4096) // 64 KiB
	s := prepare(t, scenario.Options{
		KeptRegion:    keptRegion,
		ExtraCommands: []string{"github.com/u-root/u-root/cmds/core/dd"},
		ExtraFiles:    []harness.File{{Path: "etc/kept-pattern", Data: pattern}},
	})
	vm, boot := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm, Timeout: 2 * time.Minute}
	if boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want daemon started", boot.Ready)
	}
	run := func(cmd string) string {
		t.Helper()
		out, err := g.Run(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(scenario.StripKernelLines(out))
	}
	checkRegion := func(gen int) {
		t.Helper()
		if out := run("cat /proc/iomem"); !strings.Contains(out, keptRegionIomem) {
			t.Errorf("gen %d /proc/iomem lacks %q:\n%s", gen, keptRegionIomem, out)
		}
		for file, want := range map[string]string{
			"/sys/block/pmem0/device/resource":         "0x40000000",
			"/sys/block/pmem0/device/size":             "67108864",
			"/sys/block/pmem0/size":                    "131072", // 512-byte sectors: the whole region
			"/sys/bus/nd/devices/region0/resource":     "0x40000000",
			"/sys/bus/nd/devices/namespace0.0/devtype": "nd_namespace_io",
		} {
			if got := run("cat " + file); got != want {
				t.Errorf("gen %d %s = %q, want %q", gen, file, got, want)
			}
		}
	}
	checkRegion(1)
	// QEMU's RAM starts zeroed: a non-zero byte would be the kernel's.
	zeroMiB := harness.SHA256Hex(make([]byte, 1<<20))
	if out := run("dd if=/dev/pmem0 bs=4096 count=256 status=none | shasum -a 256"); !strings.HasPrefix(out, zeroMiB) {
		t.Errorf("gen 1: first MiB of /dev/pmem0 after probing = %s, want zeros (%s)", out, zeroMiB)
	}
	run("dd if=/etc/kept-pattern of=/dev/pmem0 bs=4096 conv=notrunc oflag=sync status=none")

	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	// The initrd carries the cache: the default carrier (auto) would
	// write it over the pattern, into the region this test reads raw.
	run("fastreboot stage --carry initrd " + scenario.MountPoint + "/" + scenario.ManifestV2)
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if r.Boot.Release != "v2" {
		t.Fatalf("gen 2 release = %q, want v2", r.Boot.Release)
	}
	if out := run("cat /proc/cmdline"); !strings.Contains(out, "memmap="+keptRegion) {
		t.Errorf("gen 2 command line %q lacks memmap=%s", out, keptRegion)
	}
	checkRegion(2)
	want := harness.SHA256Hex(pattern)
	if out := run("dd if=/dev/pmem0 bs=4096 count=16 status=none | shasum -a 256"); !strings.HasPrefix(out, want) {
		t.Errorf("gen 2: first 64 KiB of /dev/pmem0 = %s, want the pattern gen 1 wrote (%s)", out, want)
	}
}
