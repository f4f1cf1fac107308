package qemutests

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// status is `fastreboot status --json`: the versioned document, decoded as
// a program reading the CLI's output would (docs/json.md).
type status = cli.StatusV1

// prepare builds the story's files once per test.
func prepare(t *testing.T, o scenario.Options) *scenario.Setup {
	t.Helper()
	harness.RequireQEMU(t)
	k := harness.RequireKernel(t)
	o.Dir = t.TempDir()
	o.Logger = slog.New(slog.NewTextHandler(testLogWriter{}, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	s, err := scenario.Prepare(ctx, k, o)
	if err != nil {
		t.Fatalf("prepare: %v", err)
	}
	return s
}

func guestStatus(t *testing.T, g *scenario.Guest) *status {
	t.Helper()
	var st status
	if err := g.FastrebootJSON("status", &st); err != nil {
		t.Fatalf("fastreboot status: %v", err)
	}
	return &st
}

// TestUpdateStory proves the update path on Debian's kernel: generation 1
// fills its cache from the disk, stages an update that changes one of three
// initrd pieces reading only that piece, refuses a corrupt update while the
// staged image stays loaded, and fast-reboots; generation 2 rehydrates its
// cache from the handoff with no disk read, stages again from the cache
// alone and reboots into generation 3.
func TestUpdateStory(t *testing.T) {
	s := prepare(t, scenario.Options{})
	vm, boot := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm}

	// Generation 1: a cold boot.
	t.Logf("gen 1: QEMU start -> userspace %.2fs", boot.StartAt.Seconds())
	if boot.Release != "v1" || boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want release v1, cpus 0-3, daemon started", boot.Ready)
	}
	probeReads, err := g.DiskReadBytes()
	if err != nil {
		t.Fatal(err)
	}
	st := guestStatus(t, g)
	if st.Generation != 1 || st.Reason != string(fastreboot.ReasonCold) {
		t.Errorf("gen 1 status: generation %d reason %s, want 1 cold", st.Generation, st.Reason)
	}

	// It fills its cache from the storage disk.
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	var sync cli.CacheSyncV1
	if err := g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV1, &sync); err != nil {
		t.Fatal(err)
	}
	if want := scenario.TotalSize(s.V1); sync.BytesRead != want || sync.Misses != 4 {
		t.Errorf("gen 1 cache sync: read %d bytes in %d modules, want %d in 4", sync.BytesRead, sync.Misses, want)
	}

	// The update changes one piece of three: staging reads only that one,
	// by the tool's count and by the disk's.
	before, err := g.DiskReadBytes()
	if err != nil {
		t.Fatal(err)
	}
	var staged cli.StageV1
	if err := g.FastrebootJSON("stage "+scenario.MountPoint+"/"+scenario.ManifestV2, &staged); err != nil {
		t.Fatal(err)
	}
	after, err := g.DiskReadBytes()
	if err != nil {
		t.Fatal(err)
	}
	siteSize := scenario.ModuleSize(s.V2, scenario.SiteV2File)
	if staged.Sync.BytesRead != siteSize || strings.Join(staged.Sync.Read, ",") != scenario.SiteV2File || staged.Sync.Hits != 3 {
		t.Errorf("stage v2 read %d bytes of %v (hits %d), want exactly %s (%d bytes) and 3 hits",
			staged.Sync.BytesRead, staged.Sync.Read, staged.Sync.Hits, scenario.SiteV2File, siteSize)
	}
	// The disk also read the manifest and file system metadata; a read of
	// any other module would add at least a megabyte.
	if disk := after - before; disk < siteSize || disk > siteSize+256<<10 {
		t.Errorf("disk read %d bytes while staging, want the %d-byte piece plus at most 256 KiB of metadata", disk, siteSize)
	}
	t.Logf("stage v2: tool read %d bytes, disk read %d bytes, stage took %v (kexec_file_load %v)",
		staged.Sync.BytesRead, after-before, staged.Durations.Total, staged.Durations.Load)
	if !staged.Loaded || staged.Generation != 2 || staged.Reason != string(fastreboot.ReasonUpdate) {
		t.Errorf("stage report: loaded %v generation %d reason %s, want loaded, 2, update", staged.Loaded, staged.Generation, staged.Reason)
	}

	// A corrupt update is refused, and the staged v2 image stays loaded:
	// generation 2 below must boot v2.
	_, err = g.Run("fastreboot stage " + scenario.MountPoint + "/" + scenario.ManifestCorrupt)
	if !errors.Is(err, scenario.ErrCommand) || !strings.Contains(err.Error(), scenario.SiteV3Module) || !strings.Contains(err.Error(), "sha256") {
		t.Errorf("staging the corrupt manifest: %v; want a failure naming %s and its sha256", err, scenario.SiteV3Module)
	}
	if out, err := g.Run("cat /sys/kernel/kexec_loaded"); err != nil || strings.TrimSpace(out) != "1" {
		t.Errorf("kexec_loaded after the refused stage = %q, %v; want 1", out, err)
	}

	// Fast reboot into generation 2.
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gen 1 -> gen 2: reboot request -> kernel %.2fs, kernel -> userspace %.2fs, downtime %.2fs",
		r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds())
	checkGeneration(t, g, r.Boot, 2, s, probeReads)

	// Generation 2 stages the image it runs from its cache alone.
	if err := g.FastrebootJSON("stage --current", &staged); err != nil {
		t.Fatal(err)
	}
	if staged.Sync.BytesRead != 0 || staged.Sync.Hits != 4 || staged.Generation != 3 {
		t.Errorf("gen 2 stage --current: read %d bytes, hits %d, next generation %d; want 0, 4, 3", staged.Sync.BytesRead, staged.Sync.Hits, staged.Generation)
	}
	if n, err := g.DiskReadBytes(); err != nil || n != probeReads {
		t.Errorf("gen 2 disk read %d bytes after staging (err %v), want the kernel's probe only (%d)", n, err, probeReads)
	}
	r, err = g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gen 2 -> gen 3: downtime %.2fs", r.Downtime().Seconds())
	checkGeneration(t, g, r.Boot, 3, s, probeReads)
}

// checkGeneration asserts what a generation reached by an update reboot
// prints: the v2 image, every CPU, the handoff's generation and reason, a
// cache rehydrated without reading the disk.
func checkGeneration(t *testing.T, g *scenario.Guest, boot *harness.Boot, gen int, s *scenario.Setup, probeReads int64) {
	t.Helper()
	if boot.Release != "v2" || boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Errorf("gen %d ready = %+v, want release v2, cpus 0-3, daemon started", gen, boot.Ready)
	}
	st := guestStatus(t, g)
	if st.Generation != gen || st.Reason != string(fastreboot.ReasonUpdate) || st.Manifest != "v2" {
		t.Errorf("gen %d status: generation %d reason %s image %q, want %d update v2", gen, st.Generation, st.Reason, st.Manifest, gen)
	}
	if st.Timeline.StageStart.IsZero() || st.Timeline.StageEnd.Before(st.Timeline.StageStart) || st.Timeline.Resumed.IsZero() {
		t.Errorf("gen %d timeline incomplete: %+v", gen, st.Timeline)
	}
	// v2 was never blessed: it is on trial, and its cache carries
	// last-known-good v1's modules too (its site piece), so that a crash or
	// a rollback boots v1 without storage.
	if r := st.Rollback; r == nil || !r.OnTrial || r.Good == nil || r.Good.Name != s.V1.Name || r.NextCrash.Action != "rollback" {
		t.Errorf("gen %d boot assessment %+v, want v2 on trial, last-known-good v1, a crash rolls back", gen, r)
	}
	modules, total := scenario.Distinct(s.V2, s.V1)
	if st.Agent == nil {
		t.Fatalf("gen %d status has no daemon", gen)
	}
	c := st.Agent.Cache
	if c.BytesRead != 0 || c.BytesRehydrated != total || c.Modules != modules || c.BytesHeld != total {
		t.Errorf("gen %d cache: read %d, rehydrated %d, %d modules holding %d; want 0, %d, %d (v2's and last-known-good v1's), %d",
			gen, c.BytesRead, c.BytesRehydrated, c.Modules, c.BytesHeld, total, modules, total)
	}
	if c.OverheadBytes <= 0 || c.OverheadBytes > total/100 {
		t.Errorf("gen %d cache overhead %d bytes, want a small positive number (< 1%% of %d)", gen, c.OverheadBytes, total)
	}
	// The carried files were released from the rootfs once cached.
	if out, err := g.Run("ls /fastreboot/modules"); err != nil || strings.TrimSpace(out) != "" {
		t.Errorf("gen %d: /fastreboot/modules still holds %q (%v), want it emptied by rehydration", gen, out, err)
	}
	if n, err := g.DiskReadBytes(); err != nil || n != probeReads {
		t.Errorf("gen %d disk read %d bytes (err %v), want the kernel's probe only (%d, as in gen 1)", gen, n, err, probeReads)
	}
}

// sizingText says what a crash reservation is made of, in MiB.
func sizingText(s cli.CrashSizingV1) string {
	t := fmt.Sprintf("load %d MiB", s.Load>>20)
	if s.Runtime != 0 || s.Reload != 0 {
		t += fmt.Sprintf(" + crash kernel runtime %d MiB + reload %d MiB", s.Runtime>>20, s.Reload>>20)
	}
	if s.Minimal {
		t += " (minimal initrd: the larger of the load and runtime+reload)"
	}
	return t
}
