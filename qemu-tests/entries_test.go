package qemutests

import (
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// bootEntry is the Boot Loader Specification entry the guest's /boot holds.
const bootEntry = "fastreboot-test"

// TestBootEntryStory: the image comes from what the boot loader would
// boot. A /boot disk holds a BLS entry naming Debian's kernel and the three
// initrd pieces (the site piece as /boot/site.cpio); `fastreboot stage
// --default` picks it, reads and hashes its files, and the next generation
// runs it. There the stat index is empty (it lives in the state directory,
// on tmpfs): the first stage hashes the four files and takes every module
// from the carried cache, the second reads nothing; then the site piece is
// replaced (the initramfs regenerated with a changed file), and staging
// reads that file alone, by the report's count and by the disk's, and the
// generation after runs the new piece.
func TestBootEntryStory(t *testing.T) {
	s := prepare(t, scenario.Options{})
	// The kernel is not /boot/vmlinuz: that name would be Debian's link,
	// a second entry (without initrd.img).
	const kernel = "vmlinuz-6.1.0-test"
	entry := fmt.Sprintf("title   fastreboot QEMU test\nversion 6.1.0-test\nlinux   /%s\ninitrd  /%s\ninitrd  /%s\ninitrd  /site.cpio\noptions %s\n",
		kernel, scenario.BaseFile, scenario.KmodsFile, s.Cmdline)
	bootDisk := filepath.Join(t.TempDir(), "boot.img")
	if err := harness.BuildDisk(bootDisk, 0,
		harness.File{Path: "loader/entries/" + bootEntry + ".conf", Data: []byte(entry)},
		harness.File{Path: kernel, Src: s.Files[scenario.KernelFile]},
		harness.File{Path: scenario.BaseFile, Src: s.Files[scenario.BaseFile]},
		harness.File{Path: scenario.KmodsFile, Src: s.Files[scenario.KmodsFile]},
		harness.File{Path: "site.cpio", Src: s.Files[scenario.SiteV1File]},
		harness.File{Path: scenario.SiteV2File, Src: s.Files[scenario.SiteV2File]},
	); err != nil {
		t.Fatal(err)
	}
	opts := s.VMOptions()
	opts.Disks = append(opts.Disks, harness.Disk{Path: bootDisk}) // /dev/vdb, writable
	vm, boot := harness.StartBootT(t, opts, 3*time.Minute)
	g := &scenario.Guest{VM: vm}
	if boot.Release != "v1" {
		t.Fatalf("gen 1 release %q, want v1", boot.Release)
	}
	mountBoot := func() {
		t.Helper()
		if _, err := g.Run("mkdir -p /boot && mount -t ext4 /dev/vdb /boot"); err != nil {
			t.Fatal(err)
		}
	}
	mountBoot()

	var list cli.EntriesV1
	if err := g.FastrebootJSON("entries", &list); err != nil {
		t.Fatal(err)
	}
	if list.Default != bootEntry || !strings.Contains(list.DefaultReason, "newest BLS entry") || len(list.Entries) != 1 ||
		list.Entries[0].Kernel != "/boot/"+kernel || len(list.Entries[0].Initrds) != 3 || list.Entries[0].Error != "" {
		t.Fatalf("entries: %+v", list)
	}

	// Gen 1 stages the default entry: every file is hashed (no index yet)
	// and read into the cache (cold: the cache is empty).
	sizes := map[string]int64{}
	var total int64
	for _, f := range []string{kernel, scenario.BaseFile, scenario.KmodsFile, "site.cpio"} {
		sizes[f] = fileSize(t, g, "/boot/"+f)
		total += sizes[f]
	}
	var rep cli.StageV1
	if err := g.FastrebootJSON("stage --default", &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Manifest != bootEntry || !rep.Loaded || rep.Hashed == nil || rep.Hashed.Hashed != 4 || rep.Hashed.BytesRead != total ||
		rep.Sync.BytesRead != total || rep.BytesRead != 2*total {
		t.Errorf("gen 1 stage --default: %s loaded %v, hashed %+v, sync %d, in all %d; want 4 files of %d bytes hashed and read", rep.Manifest, rep.Loaded, rep.Hashed, rep.Sync.BytesRead, rep.BytesRead, total)
	}
	t.Logf("gen 1 stage --default: hashed %d bytes, cache read %d, took %v", rep.Hashed.BytesRead, rep.Sync.BytesRead, rep.Durations.Total)

	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st := guestStatus(t, g)
	if r.Boot.Release != "v1" || st.Generation != 2 || st.Reason != string(fastreboot.ReasonUpdate) || st.Manifest != bootEntry {
		t.Errorf("gen 2: release %q, generation %d, reason %s, image %q; want v1, 2, update, %s", r.Boot.Release, st.Generation, st.Reason, st.Manifest, bootEntry)
	}
	mountBoot()

	// A new generation starts with an empty index (tmpfs): the files are
	// hashed once, the modules come from the carried cache.
	if err := g.FastrebootJSON("stage --default", &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Hashed.Hashed != 4 || rep.Sync.BytesRead != 0 || rep.Sync.Hits != 4 {
		t.Errorf("gen 2 first stage: hashed %+v, sync %+v; want 4 files hashed, 4 cache hits, nothing read into the cache", rep.Hashed, rep.Sync)
	}
	// Nothing changed: the index answers for every file.
	if err := g.FastrebootJSON("stage --default", &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Hashed.Hits != 4 || rep.BytesRead != 0 {
		t.Errorf("gen 2 unchanged stage: hashed %+v, in all %d; want 4 index hits and nothing read", rep.Hashed, rep.BytesRead)
	}

	// The site piece is replaced (same path, new content, as
	// update-initramfs does); the page cache is dropped so that the disk
	// counts what staging reads.
	if _, err := g.Run("cp /boot/" + scenario.SiteV2File + " /boot/site.cpio && sync"); err != nil {
		t.Fatal(err)
	}
	site := fileSize(t, g, "/boot/site.cpio") // wc reads the file: before the drop
	if _, err := g.Run("echo 3 > /proc/sys/vm/drop_caches"); err != nil {
		t.Fatal(err)
	}
	before := diskRead(t, g, "vdb")
	if err := g.FastrebootJSON("stage --default", &rep); err != nil {
		t.Fatal(err)
	}
	after := diskRead(t, g, "vdb")
	if strings.Join(rep.Hashed.Read, ",") != "/boot/site.cpio" || rep.Hashed.BytesRead != site || rep.Hashed.Hits != 3 ||
		strings.Join(rep.Sync.Read, ",") != "site.cpio" || rep.Sync.BytesRead != site || rep.BytesRead != 2*site {
		t.Errorf("stage after the change: hashed %+v, sync %+v, in all %d; want only /boot/site.cpio (%d bytes), hashed and read", rep.Hashed, rep.Sync, rep.BytesRead, site)
	}
	// The hash pass reads it from the disk, the cache's read finds it in
	// the page cache; a read of another file would add megabytes.
	if disk := after - before; disk < site || disk > site+256<<10 {
		t.Errorf("the /boot disk read %d bytes while staging, want the %d-byte piece plus at most 256 KiB of metadata", disk, site)
	}
	t.Logf("stage after changing site.cpio: report %d bytes (hashing %d + cache %d), /boot disk read %d bytes", rep.BytesRead, rep.Hashed.BytesRead, rep.Sync.BytesRead, after-before)

	r, err = g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	st = guestStatus(t, g)
	if r.Boot.Release != "v2" || st.Generation != 3 || st.Manifest != bootEntry {
		t.Errorf("gen 3: release %q, generation %d, image %q; want v2 (the new site piece), 3, %s", r.Boot.Release, st.Generation, st.Manifest, bootEntry)
	}
}

// fileSize is the size of a file in the guest (wc -c).
func fileSize(t *testing.T, g *scenario.Guest, path string) int64 {
	t.Helper()
	out, err := g.Run("wc -c < " + path)
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(scenario.StripKernelLines(out)), "$"))
	if len(f) == 0 {
		t.Fatalf("wc -c %s: %q", path, out)
	}
	n, err := strconv.ParseInt(f[0], 10, 64)
	if err != nil {
		t.Fatalf("wc -c %s: %q: %v", path, out, err)
	}
	return n
}

// diskRead is the bytes a guest disk has read since boot.
func diskRead(t *testing.T, g *scenario.Guest, dev string) int64 {
	t.Helper()
	out, err := g.Run("cat /sys/block/" + dev + "/stat")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(scenario.StripKernelLines(out)), "$"))
	if len(f) < 3 {
		t.Fatalf("/sys/block/%s/stat: %q", dev, out)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n * 512
}
