package qemutests

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// TestSegmentsUpdateStory proves the segments load method on Debian's
// kernel: generation 1 stages v2 with --load=segments, which decompresses
// the kernel once and caches it; the kexec_load'ed image boots generation 2
// with v2, every CPU and all the memory; its handoff records the
// decompressed kernel's digest but does not carry it (unpacking it would
// cost downtime), so its daemon derives it again from the rehydrated
// bzImage in the background and checks it against that digest; generation
// 2 then restages from the cache alone, reading nothing and decompressing
// nothing at stage time, and boots generation 3 the same way. A
// decompressed kernel that does not match its recorded digest is refused.
// Last, generation 3 reboots once with --load=file, for a downtime to
// compare with on the same machine.
//
// Every generation reserves memory for a crash kernel and keeps 16 MiB at
// 96 MiB out of the kernel's hands (memmap=$), where the initrd would
// otherwise go: no segment may land in either.
func TestSegmentsUpdateStory(t *testing.T) {
	s := prepare(t, scenario.Options{Cmdline: "crashkernel=256M memmap=16M$" + fmt.Sprintf("%#x", keptStart)})
	vm, boot := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm}

	if boot.Release != "v1" || boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want release v1, cpus 0-3, daemon started", boot.Ready)
	}
	memKB := boot.MemTotalKB
	probeReads, err := g.DiskReadBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	if _, err := g.Run("fastreboot cache sync " + scenario.MountPoint + "/" + scenario.ManifestV1); err != nil {
		t.Fatal(err)
	}

	// Stage v2 with kexec_load: the kernel is decompressed now, before
	// the downtime, and only the changed piece is read from the disk.
	var staged cli.StageV1
	if err := g.FastrebootJSON("stage --load=segments "+scenario.MountPoint+"/"+scenario.ManifestV2, &staged); err != nil {
		t.Fatal(err)
	}
	seg := staged.Segments
	if staged.Load != string(fastreboot.LoadSegments) || !staged.Loaded || seg == nil || !seg.Decompressed {
		t.Fatalf("stage --load=segments: load %q, loaded %v, segments %+v; want segments, loaded, decompressed", staged.Load, staged.Loaded, seg)
	}
	if siteSize := scenario.ModuleSize(s.V2, scenario.SiteV2File); staged.Sync.BytesRead != siteSize {
		t.Errorf("stage v2 read %d bytes, want only %s (%d)", staged.Sync.BytesRead, scenario.SiteV2File, siteSize)
	}
	elf := seg.KernelELF
	t.Logf("stage --load=segments: decompressed the kernel (%d -> %d bytes) in %v, kexec_load %v, stage %v; initrd %d bytes (handoff %d); kernel at %#x..%#x, relocated %v, e820 from %s, avoided %v",
		scenario.ModuleSize(s.V2, scenario.KernelFile), elf.Size, seg.DecompressTime.Round(time.Millisecond), staged.Durations.Load.Round(time.Millisecond),
		staged.Durations.Total.Round(time.Millisecond), staged.InitrdBytes, staged.HandoffBytes, seg.KernelStart, seg.KernelEnd, seg.Relocated, seg.MemoryMap, seg.Avoided)
	checkAvoided(t, seg)
	if st := guestStatus(t, g); st.Agent == nil || st.Agent.Staged == nil || st.Agent.Staged.Load != string(fastreboot.LoadSegments) {
		t.Errorf("status does not report the staged image's load method: %+v", st.Agent)
	}

	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gen 1 -> gen 2 (segments): reboot request -> kernel %.2fs, kernel -> userspace %.2fs, downtime %.2fs",
		r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds())
	checkSegmentsGeneration(t, g, r.Boot, 2, s, memKB, elf, probeReads)

	// Generation 2 restages from its cache: nothing read, nothing
	// decompressed at stage time (the daemon prepared the ELF).
	if err := g.FastrebootJSON("stage --current --load=segments", &staged); err != nil {
		t.Fatal(err)
	}
	if staged.Segments == nil || staged.Segments.Decompressed || staged.Segments.KernelELF != elf || staged.Sync.BytesRead != 0 || staged.Generation != 3 {
		t.Fatalf("gen 2 stage --current --load=segments: %+v, read %d, next generation %d; want the rehydrated ELF, 0 bytes, 3",
			staged.Segments, staged.Sync.BytesRead, staged.Generation)
	}
	checkAvoided(t, staged.Segments)
	r, err = g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gen 2 -> gen 3 (segments): reboot request -> kernel %.2fs, kernel -> userspace %.2fs, downtime %.2fs",
		r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds())
	checkSegmentsGeneration(t, g, r.Boot, 3, s, memKB, elf, probeReads)

	// A decompressed kernel that does not match the digest recorded for
	// its bzImage is refused, and nothing is loaded.
	bogus := strings.Repeat("0", 64)
	index := fmt.Sprintf(`{"version":1,"kernel_elfs":[{"kernel_sha256":"%s","sha256":"%s","size":%d}]}`, elf.Kernel, bogus, elf.Size)
	if _, err := g.Run("echo '" + index + "' > " + fastreboot.DefaultStateDir + "/" + fastreboot.KernelELFIndexFile); err != nil {
		t.Fatal(err)
	}
	_, err = g.Run("fastreboot stage --current --load=segments")
	if !errors.Is(err, scenario.ErrCommand) || !strings.Contains(err.Error(), "does not match its recorded digest") || !strings.Contains(err.Error(), bogus) {
		t.Errorf("staging with a mismatched decompressed kernel: %v; want a refusal naming the recorded digest", err)
	}
	if out, err := g.Run("cat /sys/kernel/kexec_loaded"); err != nil || strings.TrimSpace(out) != "0" {
		t.Errorf("kexec_loaded after the refused stage = %q, %v; want 0", out, err)
	}

	// The same machine with kexec_file_load, for comparison.
	if err := g.FastrebootJSON("stage --current --load=file", &staged); err != nil {
		t.Fatal(err)
	}
	r, err = g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("gen 3 -> gen 4 (file): kexec_file_load %v; reboot request -> kernel %.2fs, kernel -> userspace %.2fs, downtime %.2fs",
		staged.Durations.Load.Round(time.Millisecond), r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds())
	if r.Boot.Release != "v2" || r.Boot.CPUs != "0-3" {
		t.Errorf("gen 4 ready = %+v, want v2 and cpus 0-3", r.Boot.Ready)
	}
}

// checkSegmentsGeneration asserts what a generation booted by kexec_load
// shows: v2, every CPU, the memory of the cold boot (the e820 table came
// from the recorded firmware map), the handoff's generation, and a cache
// rehydrated without the disk that holds the decompressed kernel too.
func checkSegmentsGeneration(t *testing.T, g *scenario.Guest, boot *harness.Boot, gen int, s *scenario.Setup, memKB int64, elf cli.KernelELFV1, probeReads int64) {
	t.Helper()
	if boot.Release != "v2" || boot.CPUs != "0-3" || boot.Daemon != "started" {
		t.Errorf("gen %d ready = %+v, want release v2, cpus 0-3, daemon started", gen, boot.Ready)
	}
	k := waitKernelELF(t, g, gen)
	if k.State != string(agent.KernelELFReady) || k.ELF != elf || !k.Decompressed {
		t.Errorf("gen %d decompressed kernel: %+v; want ready, derived again from the bzImage, matching %+v", gen, k, elf)
	}
	if d := boot.MemTotalKB - memKB; d < -8<<10 || d > 8<<10 {
		t.Errorf("gen %d MemTotal %d kB, gen 1 had %d kB: want all the memory (within 8 MiB)", gen, boot.MemTotalKB, memKB)
	}
	st := guestStatus(t, g)
	if st.Generation != gen || st.Reason != string(fastreboot.ReasonUpdate) || st.Manifest != "v2" {
		t.Errorf("gen %d status: generation %d reason %s image %q", gen, st.Generation, st.Reason, st.Manifest)
	}
	if st.State != nil && st.State.RehydrateError != "" {
		t.Errorf("gen %d rehydration: %s", gen, st.State.RehydrateError)
	}
	if st.Agent == nil {
		t.Fatalf("gen %d status has no daemon", gen)
	}
	// v2 is on trial (never blessed): the cache carries last-known-good
	// v1's modules with its own.
	modules, total := scenario.Distinct(s.V2, s.V1)
	c := st.Agent.Cache
	if c.BytesRead != 0 || c.Modules != modules+1 || c.BytesRehydrated != total || c.BytesAdded != elf.Size {
		t.Errorf("gen %d cache: read %d, %d modules, rehydrated %d, derived %d; want 0, %d (v2's and last-known-good v1's modules) and the decompressed kernel, %d (the modules), %d (the ELF)",
			gen, c.BytesRead, c.Modules, c.BytesRehydrated, c.BytesAdded, modules, total, elf.Size)
	}
	if n, err := g.DiskReadBytes(); err != nil || n != probeReads {
		t.Errorf("gen %d disk read %d bytes (err %v), want the kernel's probe only (%d)", gen, n, err, probeReads)
	}
	t.Logf("gen %d: MemTotal %d kB (gen 1: %d kB), rehydrated %d bytes in %v; decompressed kernel derived again in %v, in the background",
		gen, boot.MemTotalKB, memKB, c.BytesRehydrated, stateRehydrateTime(st), k.Took.Round(time.Millisecond))
}

// waitKernelELF waits for the daemon's background preparation of the
// decompressed kernel to end (it takes ~15 s under TCG).
func waitKernelELF(t *testing.T, g *scenario.Guest, gen int) cli.KernelELFStatusV1 {
	t.Helper()
	deadline := time.Now().Add(3 * time.Minute)
	for {
		st := guestStatus(t, g)
		if st.Agent == nil || st.Agent.KernelELF == nil {
			t.Fatalf("gen %d status reports no decompressed kernel preparation: %+v", gen, st.Agent)
		}
		if k := st.Agent.KernelELF; k.State != string(agent.KernelELFPreparing) || time.Now().After(deadline) {
			return *k
		}
		time.Sleep(2 * time.Second)
	}
}

// The region memmap= keeps in every generation of TestSegmentsUpdateStory.
const keptStart, keptEnd = 0x6000000, 0x7000000

// checkAvoided asserts that the crash kernel reservation and the kept
// region were avoided, and that no segment overlaps them.
func checkAvoided(t *testing.T, seg *cli.SegmentsReportV1) {
	t.Helper()
	var crash, kept []cli.AvoidedRangeV1
	for _, a := range seg.Avoided {
		switch {
		case strings.Contains(a.Why, "crash kernel"):
			crash = append(crash, a)
		case a.Start == keptStart && a.End == keptEnd:
			kept = append(kept, a)
		}
	}
	if len(crash) == 0 || len(kept) == 0 {
		t.Errorf("avoided %+v: want the crash kernel reservation and the memmap= region %#x-%#x", seg.Avoided, keptStart, keptEnd)
	}
	for _, s := range seg.Segments {
		for _, a := range append(crash, kept...) {
			if s.Phys < a.End && a.Start < s.Phys+s.Size {
				t.Errorf("%s segment %#x+%#x overlaps %#x-%#x (%s)", s.Name, s.Phys, s.Size, a.Start, a.End, a.Why)
			}
		}
	}
}

func stateRehydrateTime(st *status) time.Duration {
	if st.State == nil {
		return 0
	}
	return st.State.RehydrateTime.Round(time.Millisecond)
}
