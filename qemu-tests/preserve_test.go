package qemutests

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/internal/workload"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// TestPreserveWorkload's layout: a 320 MiB kept region at 1 GiB whose last
// 258 MiB are the areas part, holding one area of 256 MiB (the table takes
// the part's first 64 KiB, so 256 MiB of areas need a 258 MiB part: sizes
// are 2 MiB multiples).
const (
	preserveRegion   = "320M!0x40000000"
	preserveWord     = "fastreboot.preserve=258M"
	preserveAreaSize = 256 << 20
	preserveSeed     = 14
	frworkloadCmd    = harness.ModulePath + "/qemu-tests/cmd/frworkload"
	workCgroup       = "/sys/fs/cgroup/work"
)

// frworkloadRE matches frworkload's report line.
var frworkloadRE = reportLineRE("FRWORKLOAD")

// frworkloadLine returns the key=value pairs of frworkload's line of kind
// in out.
func frworkloadLine(t *testing.T, out, kind string) map[string]string {
	t.Helper()
	return reportLine(t, frworkloadRE, out, kind)
}

// reportLineRE matches a test program's report line: TAG, its kind, then
// key=value pairs.
func reportLineRE(tag string) *regexp.Regexp {
	return regexp.MustCompile(tag + ` (\w+) ((?:\w+=\S+ ?)+)`)
}

// reportLine returns the key=value pairs of the first line of kind that
// re (a reportLineRE) matches in out, kernel lines removed.
func reportLine(t *testing.T, re *regexp.Regexp, out, kind string) map[string]string {
	t.Helper()
	for _, m := range re.FindAllStringSubmatch(scenario.StripKernelLines(out), -1) {
		if m[1] != kind {
			continue
		}
		kv := map[string]string{}
		for _, f := range strings.Fields(m[2]) {
			k, v, _ := strings.Cut(f, "=")
			kv[k] = v
		}
		return kv
	}
	t.Fatalf("no %s line of kind %s in %q", re, kind, out)
	return nil
}

func msOf(t *testing.T, kv map[string]string, key string) time.Duration {
	t.Helper()
	return time.Duration(intOf(t, kv, key)) * time.Millisecond
}

// TestPreserveWorkload proves a workload's state kept in RAM across a fast
// reboot: generation 1 creates a 256 MiB preserved area for the cgroup
// /work, where frworkload maps it from /dev/pmem0, fills it with
// pseudo-random bytes and stays running; fastreboot reboot freezes the
// cgroup and syncs the device before the jump; in generation 2 the area is
// listed again and frworkload maps it and finds the same bytes (SHA-256).
// The same state read back from a disk file is timed beside it.
func TestPreserveWorkload(t *testing.T) {
	// The host writes the state, as generation 1 will compute it, to a
	// disk of its own: the way a workload without preserved memory gets
	// it back.
	state := make([]byte, preserveAreaSize)
	workload.Fill(state, preserveSeed)
	want := harness.SHA256Hex(state)
	dir := t.TempDir()
	stateFile := filepath.Join(dir, "state.bin")
	if err := os.WriteFile(stateFile, state, 0o644); err != nil {
		t.Fatal(err)
	}
	state = nil
	stateDisk := filepath.Join(dir, "state.img")
	if err := harness.BuildLabeledDisk(stateDisk, "frstate", 0, harness.File{Path: "state.bin", Src: stateFile}); err != nil {
		t.Fatal(err)
	}
	os.Remove(stateFile)

	s := prepare(t, scenario.Options{
		KeptRegion:    preserveRegion,
		Cmdline:       preserveWord,
		ExtraCommands: []string{frworkloadCmd},
	})
	opts := s.VMOptions()
	opts.Disks = append(opts.Disks, harness.Disk{Path: stateDisk, ReadOnly: true}) // /dev/vdb
	vm, boot := harness.StartBootT(t, opts, 3*time.Minute)
	g := &scenario.Guest{VM: vm, Timeout: 5 * time.Minute}
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
	fails := func(cmd, msg string) {
		t.Helper()
		out, err := g.Run(cmd)
		if err == nil || !strings.Contains(out, msg) {
			t.Errorf("%s: %v, output %q; want a failure saying %q", cmd, err, out, msg)
		}
	}
	ls := func(gen int) cli.PreserveLsV1 {
		t.Helper()
		var doc cli.PreserveLsV1
		if err := g.FastrebootJSON("preserve ls", &doc); err != nil {
			t.Fatalf("gen %d: preserve ls: %v", gen, err)
		}
		return doc
	}

	// Generation 1: the area, the workload in its cgroup.
	run("frworkload cgroup " + workCgroup)
	run("fastreboot preserve create state --size 256M --cgroup " + workCgroup)
	fails("fastreboot preserve create more --size 4M", "no room for the preserved area")
	fails("fastreboot preserve create state --size 4K", "preserved area exists")
	doc := ls(1)
	if len(doc.Areas) != 1 || doc.Device != "/dev/pmem0" || doc.Areas[0].Size != preserveAreaSize || doc.Areas[0].Cgroup != "/work" {
		t.Fatalf("gen 1 areas: %+v", doc)
	}
	area := doc.Areas[0]
	t.Logf("gen 1: area %q: %d bytes at offset %#x of %s (areas part %#x, %d bytes)", area.Name, area.Size, area.Offset, doc.Device, doc.AreasOffset, doc.AreasSize)
	// Staged first, so that the reboot follows the fill at once: the same
	// image again (a cold boot knows no manifest of its own
	// until one is staged, so stage --current cannot be used yet).
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	run("fastreboot stage " + scenario.MountPoint + "/" + scenario.ManifestV1)
	fill := frworkloadLine(t, run(fmt.Sprintf("frworkload fill %s %d %d %d %s", doc.Device, area.Offset, area.Size, preserveSeed, workCgroup)), "fill")
	if fill["sha256"] != want {
		t.Fatalf("gen 1: the workload's state hashes to %s, want %s (the host's)", fill["sha256"], want)
	}
	t.Logf("gen 1: frworkload (pid %s) filled 256 MiB in %v, sha256 %s", fill["pid"], msOf(t, fill, "fill_ms"), fill["sha256"])

	// What the page cache still holds unwritten: the sync before the jump
	// writes it to the region.
	t.Logf("gen 1 before the reboot: %s", strings.Join(strings.Fields(run("grep '^(Dirty|Writeback):' /proc/meminfo")), " "))
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// reboot prints what it froze right before the kexec: the line may
	// not reach the console before the jump (as the rebooting line may
	// not: r.LineLost), so it is checked when it is there and its loss is
	// only logged. The preservation itself is proven below, by what
	// generation 2 reads; the freeze's all-or-nothing is unit-tested.
	froze := ""
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "preserved area(s) on") {
			froze = strings.TrimSpace(l.Text)
		}
	}
	switch {
	case froze == "":
		froze = "(the freeze line was lost with the jump)"
	case !strings.Contains(froze, "froze /work in"):
		t.Errorf("gen 1: fastreboot reboot's preserve line %q does not say it froze /work", froze)
	}
	t.Logf("gen 1 -> 2: %s; reboot requested -> userspace %.2fs", froze, r.Downtime().Seconds())

	// Generation 2: the same area, the same bytes.
	if st := guestStatus(t, g); st.Generation != 2 {
		t.Fatalf("generation %d after the reboot, want 2", st.Generation)
	}
	if out := run("cat /proc/cmdline"); !strings.Contains(out, "memmap="+preserveRegion) || !strings.Contains(out, preserveWord) {
		t.Errorf("gen 2 command line %q lacks memmap=%s or %s", out, preserveRegion, preserveWord)
	}
	doc2 := ls(2)
	if len(doc2.Areas) != 1 || doc2.Areas[0] != area {
		t.Fatalf("gen 2 areas: %+v, want %+v", doc2.Areas, area)
	}
	verify := frworkloadLine(t, run(fmt.Sprintf("frworkload verify %s %d %d", doc2.Device, area.Offset, area.Size)), "verify")
	if verify["sha256"] != want {
		t.Errorf("gen 2: the preserved area hashes to %s, want %s (what gen 1 wrote)", verify["sha256"], want)
	}
	run("mkdir -p /state")
	run("mount -t ext4 -o ro /dev/vdb /state")
	file := frworkloadLine(t, run("frworkload file /state/state.bin"), "file")
	if file["sha256"] != want {
		t.Errorf("gen 2: state.bin hashes to %s, want %s", file["sha256"], want)
	}
	t.Logf("gen 2: 256 MiB state back: preserved area mapped and every page touched in %v (+ SHA-256 %v = %v); from the virtio disk file read in %v (+ SHA-256 %v = %v)",
		msOf(t, verify, "ready_ms"), msOf(t, verify, "hash_ms"), msOf(t, verify, "total_ms"),
		msOf(t, file, "ready_ms"), msOf(t, file, "hash_ms"), msOf(t, file, "total_ms"))
}
