package qemutests

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// TestKeptUpdateStory proves the kept carrier as a user meets it: the boot
// loader's command line keeps a region (memmap=64M!0x40000000) that the
// manifests do not name, and the default carrier (auto) writes the cache
// there at stage time. The update v1 -> v2 carries no module in its
// initrd; generation 2 keeps the region (inherited), adopts every module
// from /dev/pmem0 reading no storage, and its cache verifies. Reboots
// with --carry initrd and kept alternate for comparison (the medians of
// three downtimes each logged; each kept stage writes the region again:
// its sequence counts up), and last a stage whose region is spoiled after
// it (its header's magic overwritten): the next generation refuses the
// index, says why, and reads storage.
func TestKeptUpdateStory(t *testing.T) {
	s := prepare(t, scenario.Options{
		KeptRegion:          keptRegion,
		KeptRegionInherited: true,
		ExtraCommands:       []string{"github.com/u-root/u-root/cmds/core/dd", "github.com/u-root/u-root/cmds/core/kill"},
		ExtraFiles:          []harness.File{{Path: "etc/kept-junk", Data: []byte("X")}},
	})
	if strings.Contains(s.V2.Cmdline, "memmap=") {
		t.Fatalf("manifest v2's command line %q names a region: the story needs one that does not", s.V2.Cmdline)
	}
	vm, boot := harness.StartBootT(t, s.VMOptions(), 3*time.Minute)
	g := &scenario.Guest{VM: vm, Timeout: 3 * time.Minute}
	if boot.Daemon != "started" || boot.Release != "v1" {
		t.Fatalf("gen 1 ready = %+v, want v1, daemon started", boot.Ready)
	}
	run := func(cmd string) string {
		t.Helper()
		out, err := g.Run(cmd)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(scenario.StripKernelLines(out))
	}
	// The user's first step: kept plan says which words to add. Its
	// answer must parse as a region (this guest was booted with one
	// already, which the plan avoids and reports).
	var plan cli.KeptPlanV1
	if err := g.FastrebootJSON("kept plan --size 64M", &plan); err != nil {
		t.Fatal(err)
	}
	if l, ok, err := keptmem.ParseLayout(strings.Join(plan.Words, " ")); err != nil || !ok || l.Region.Size != 64<<20 ||
		plan.Running == nil || plan.Running.Start != 0x40000000 || (l.Region.Start < 0x44000000 && l.Region.Start+l.Region.Size > 0x40000000) {
		t.Errorf("kept plan %+v: want a 64 MiB region outside the running one (%v)", plan, err)
	}
	t.Logf("kept plan --size 64M: %s (memory map from %s)", strings.Join(plan.Words, " "), plan.MemoryMapFrom)
	probeReads, err := g.DiskReadBytes()
	if err != nil {
		t.Fatal(err)
	}
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	var sync cli.CacheSyncV1
	if err := g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV1, &sync); err != nil {
		t.Fatal(err)
	}
	// v2 on trial carries last-known-good v1's site piece too.
	modules, total := scenario.Distinct(s.V2, s.V1)

	stage := func(gen int, args string) *cli.StageV1 {
		t.Helper()
		var st cli.StageV1
		if err := g.FastrebootJSON("stage "+args, &st); err != nil {
			t.Fatal(err)
		}
		t.Logf("gen %d stage %s: carrier %s, initrd %d bytes (handoff piece %d), %d modules of %d bytes carried; stage took %v",
			gen, args, st.Carrier, st.InitrdBytes, st.HandoffBytes, st.CarriedModules, st.CarriedBytes, st.Durations.Total)
		if st.Kept != nil {
			t.Logf("gen %d kept write: %d modules, %d bytes to %s, sequence %d, in %v", gen, st.Kept.Modules, st.Kept.Bytes, st.Kept.Device, st.Kept.Sequence, st.Kept.Took)
		}
		if !st.Loaded {
			t.Fatalf("gen %d stage %s: not loaded", gen, args)
		}
		return &st
	}
	checkKeptStage := func(gen int, st *cli.StageV1, seq uint64) {
		t.Helper()
		if st.Carrier != "kept" || st.Kept == nil || !st.Kept.Written || st.Kept.Device != "/dev/pmem0" || st.Kept.Sequence != seq ||
			st.Kept.Modules != modules || st.Kept.Bytes != total || st.CarrierWarning != "" {
			t.Errorf("gen %d stage: carrier %q (%q), kept %+v; want kept on /dev/pmem0, sequence %d, %d modules of %d bytes",
				gen, st.Carrier, st.CarrierWarning, st.Kept, seq, modules, total)
		}
		if st.HandoffBytes >= 64<<10 || st.CopiedInUser != 0 {
			t.Errorf("gen %d stage: handoff piece %d bytes, %d copied in user space; want no module in the initrd (< 64 KiB)", gen, st.HandoffBytes, st.CopiedInUser)
		}
	}
	reboot := func(from int) *scenario.Reboot {
		t.Helper()
		r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("gen %d -> gen %d: request -> kernel %.2fs, kernel -> userspace %.2fs, downtime %.2fs",
			from, from+1, r.ToKernel().Seconds(), r.KernelToUser().Seconds(), r.Downtime().Seconds())
		if r.Boot.Release != "v2" || r.Boot.Daemon != "started" {
			t.Fatalf("gen %d ready = %+v, want v2, daemon started", from+1, r.Boot.Ready)
		}
		if out := run("cat /proc/cmdline"); !strings.Contains(out, "memmap="+keptRegion) {
			t.Errorf("gen %d command line %q lacks the inherited memmap=%s", from+1, out, keptRegion)
		}
		return r
	}
	checkAdopted := func(gen int, carrier string, seq uint64) {
		t.Helper()
		st := guestStatus(t, g)
		if st.Generation != gen || st.State == nil || st.Agent == nil {
			t.Fatalf("gen %d status: generation %d, state %v, agent %v", gen, st.Generation, st.State != nil, st.Agent != nil)
		}
		s := st.State
		t.Logf("gen %d: carrier %s, adopted %d modules (%d bytes) in %v", gen, s.Carrier, s.Rehydrated.Modules, s.Rehydrated.Bytes, s.RehydrateTime)
		if s.Carrier != carrier || s.RehydrateError != "" || s.Rehydrated.Modules != modules || s.Rehydrated.Bytes != total {
			t.Errorf("gen %d state: carrier %q, error %q, adopted %d modules of %d bytes; want %s, %d of %d",
				gen, s.Carrier, s.RehydrateError, s.Rehydrated.Modules, s.Rehydrated.Bytes, carrier, modules, total)
		}
		if carrier == "kept" && (s.Kept == nil || s.Kept.Device != "/dev/pmem0" || s.Kept.Sequence != seq) {
			t.Errorf("gen %d state kept %+v, want /dev/pmem0, sequence %d", gen, s.Kept, seq)
		}
		if c := st.Agent.Cache; c.BytesRead != 0 || c.Modules != modules {
			t.Errorf("gen %d cache: read %d bytes from storage, %d modules; want 0, %d", gen, c.BytesRead, c.Modules, modules)
		}
		var vr cli.CacheVerifyV1
		if err := g.FastrebootJSON("cache verify", &vr); err != nil || len(vr.Bad) != 0 || vr.Modules != modules {
			t.Errorf("gen %d cache verify: %+v, %v; want %d good modules", gen, vr, err, modules)
		}
		if n, err := g.DiskReadBytes(); err != nil || n != probeReads {
			t.Errorf("gen %d disk read %d bytes (err %v), want the kernel's probe only (%d)", gen, n, err, probeReads)
		}
	}

	// Gen 1 -> 2: the update, with the default carrier.
	st := stage(1, scenario.MountPoint+"/"+scenario.ManifestV2)
	checkKeptStage(1, st, 1)
	if !strings.Contains(st.Cmdline, "memmap="+keptRegion) {
		t.Errorf("staged command line %q lacks the inherited memmap=%s", st.Cmdline, keptRegion)
	}
	keptInitrd := st.InitrdBytes
	r := reboot(1)
	keptDown := r.Downtime()
	checkAdopted(2, "kept", 1)
	var ks cli.KeptStatusV1
	if err := g.FastrebootJSON("kept status", &ks); err != nil {
		t.Fatal(err)
	}
	if ks.Device != "/dev/pmem0" || ks.Index == nil || ks.Index.Sequence != 1 || ks.Index.Generation != 1 || ks.Index.Modules != modules || ks.Index.Bytes != total {
		t.Errorf("gen 2 kept status %+v (index %+v): want /dev/pmem0 holding gen 1's write, sequence 1, %d modules of %d bytes", ks, ks.Index, modules, total)
	}
	restartDaemon(t, g)
	if st := guestStatus(t, g); st.State == nil || st.State.Restarted.IsZero() || st.State.CarriedLost != 0 ||
		st.State.Rehydrated.Modules != modules || st.Agent == nil || st.Agent.Cache.Modules != modules || st.Agent.Cache.BytesRead != 0 {
		t.Errorf("gen 2 after a daemon restart: state %+v, agent %+v; want the %d modules adopted again from the region, none lost, no storage read", st.State, st.Agent, modules)
	} else {
		t.Logf("gen 2 daemon restarted: adopted %d modules again from the region in %v", st.State.Rehydrated.Modules, st.State.RehydrateTime)
	}

	// Then the same image, from the same cache, carried alternately in
	// the initrd and in the kept region (written again each time: its
	// sequence counts the writes), for comparison: downtimes under TCG on
	// a shared machine spread, so the medians of three of each.
	downtimes := map[string][]float64{"kept": {keptDown.Seconds()}}
	initrdBytes := map[string]int64{"kept": keptInitrd}
	gen, seq := 2, uint64(1)
	for round := 0; round < 3; round++ {
		for _, carrier := range []string{"initrd", "kept"} {
			if round == 2 && carrier == "kept" {
				break // the last kept jump is the spoiled one below
			}
			st = stage(gen, "--current --carry "+carrier)
			switch carrier {
			case "initrd":
				if st.Carrier != "initrd" || st.Kept != nil || st.HandoffBytes < total {
					t.Errorf("gen %d stage --carry initrd: carrier %q, kept %+v, handoff piece %d bytes; want initrd holding %d bytes", gen, st.Carrier, st.Kept, st.HandoffBytes, total)
				}
			case "kept":
				seq++
				checkKeptStage(gen, st, seq)
			}
			initrdBytes[carrier] = st.InitrdBytes
			r = reboot(gen)
			downtimes[carrier] = append(downtimes[carrier], r.Downtime().Seconds())
			gen++
			checkAdopted(gen, carrier, seq)
		}
	}
	t.Logf("downtime (request -> next userspace), median [runs]: kept %.2fs %.2f (initrd %d bytes), initrd %.2fs %.2f (initrd %d bytes)",
		median(downtimes["kept"]), downtimes["kept"], initrdBytes["kept"], median(downtimes["initrd"]), downtimes["initrd"], initrdBytes["initrd"])

	// Last: the region spoiled after a kept stage (its header's magic).
	st = stage(gen, "--current")
	seq++
	checkKeptStage(gen, st, seq)
	run("dd if=/etc/kept-junk of=/dev/pmem0 bs=1 count=1 conv=notrunc oflag=sync status=none")
	reboot(gen)
	gen++
	st5 := guestStatus(t, g)
	if s := st5.State; s == nil || s.Carrier != "kept" || s.Rehydrated.Modules != 0 || !strings.Contains(s.RehydrateError, "no index") {
		t.Fatalf("gen %d state %+v: want carrier kept, nothing adopted, an error saying the region holds no index", gen, s)
	}
	t.Logf("gen %d refused the spoiled region: %s", gen, st5.State.RehydrateError)
	if out := run("fastreboot status"); !strings.Contains(out, "no index") {
		t.Errorf("gen %d status text does not say why nothing was adopted:\n%s", gen, out)
	}
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	if err := g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV2, &sync); err != nil {
		t.Fatal(err)
	}
	if want := scenario.TotalSize(s.V2); sync.BytesRead != want {
		t.Errorf("gen %d cache sync v2 read %d bytes, want all of v2 from storage (%d)", gen, sync.BytesRead, want)
	}
}

// median is the middle of xs (the mean of the middle two for an even
// count).
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// restartDaemon stops the guest's fastreboot daemon (SIGTERM, the pid
// status reports) and starts it again as frguest does, then waits until
// it answers: what an admin or a service manager restarting it does.
func restartDaemon(t *testing.T, g *scenario.Guest) {
	t.Helper()
	st := guestStatus(t, g)
	if st.Agent == nil || !st.Agent.Daemon || st.Agent.PID <= 0 {
		t.Fatalf("restart: no daemon answers status (agent %+v)", st.Agent)
	}
	pid := st.Agent.PID
	if _, err := g.Run(fmt.Sprintf("kill %d", pid)); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(time.Minute)
	for {
		// Gone, or a zombie its parent (frguest) has not reaped.
		out, _ := g.Run(fmt.Sprintf("cat /proc/%d/stat", pid))
		if f := strings.Fields(out[strings.LastIndex(out, ")")+1:]); len(f) == 0 || f[0] == "Z" || strings.Contains(out, "No such file") || strings.Contains(out, "no such file") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart: daemon %d still alive a minute after SIGTERM", pid)
		}
		time.Sleep(500 * time.Millisecond)
	}
	if _, err := g.Run("fastreboot daemon >> /var/log/fastreboot-daemon.log 2>&1 &"); err != nil {
		t.Fatal(err)
	}
	for {
		var st cli.StatusV1
		if err := g.FastrebootJSON("status", &st); err == nil && st.Agent != nil && st.Agent.Daemon && st.Agent.PID != pid {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("restart: no new daemon answered status within a minute")
		}
		time.Sleep(time.Second)
	}
}
