package qemutests

import (
	"errors"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/cli"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// keptVM is a guest booted with a kept region its manifests do not name
// (inherited, as a user's boot loader line keeps it), generation 1 on v1
// with its cache filled from the storage disk.
type keptVM struct {
	t *testing.T
	s *scenario.Setup
	g *scenario.Guest
	// modules and total are what a stage of v2 on trial carries (v2's
	// modules and last-known-good v1's).
	modules int
	total   int64
	gen     int
}

func startKeptVM(t *testing.T, region string) *keptVM {
	t.Helper()
	s := prepare(t, scenario.Options{
		KeptRegion:          region,
		KeptRegionInherited: true,
		ExtraCommands:       []string{"github.com/u-root/u-root/cmds/core/dd", frfaultCmd},
		ExtraFiles:          []harness.File{{Path: "etc/kept-junk", Data: []byte("X")}},
	})
	opts := s.VMOptions()
	// A panic (panic=-1) reboots through the firmware: the crash in the
	// middle of a kept write comes back cold.
	opts.AllowReboot = true
	vm, boot := harness.StartBootT(t, opts, 3*time.Minute)
	k := &keptVM{t: t, s: s, g: &scenario.Guest{VM: vm, Timeout: 3 * time.Minute}, gen: 1}
	if boot.Daemon != "started" || boot.Release != "v1" {
		t.Fatalf("gen 1 ready = %+v, want v1, daemon started", boot.Ready)
	}
	if err := k.g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	var sync cli.CacheSyncV1
	if err := k.g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV1, &sync); err != nil {
		t.Fatal(err)
	}
	k.modules, k.total = scenario.Distinct(s.V2, s.V1)
	return k
}

func (k *keptVM) run(cmd string) string {
	k.t.Helper()
	out, err := k.g.Run(cmd)
	if err != nil {
		k.t.Fatal(err)
	}
	return strings.TrimSpace(scenario.StripKernelLines(out))
}

// stageFails runs a stage that must fail, and checks that its message
// has every one of want and that no image was loaded.
func (k *keptVM) stageFails(what, args string, want ...string) {
	k.t.Helper()
	out, err := k.g.Run("fastreboot stage " + args)
	if !errors.Is(err, scenario.ErrCommand) {
		k.t.Fatalf("%s: stage %s: %v; want it refused", what, args, err)
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			k.t.Errorf("%s: stage %s said %q; want it to say %q", what, args, strings.TrimSpace(out), w)
		}
	}
	if l := k.run("cat /sys/kernel/kexec_loaded"); l != "0" {
		k.t.Errorf("%s: kexec_loaded = %s after the refused stage, want 0 (nothing loaded)", what, l)
	}
	k.t.Logf("%s: stage %s refused: %s", what, args, lastLine(out))
}

func (k *keptVM) stage(args string) *cli.StageV1 {
	k.t.Helper()
	var st cli.StageV1
	if err := k.g.FastrebootJSON("stage "+args, &st); err != nil {
		k.t.Fatal(err)
	}
	if !st.Loaded {
		k.t.Fatalf("gen %d stage %s: not loaded", k.gen, args)
	}
	return &st
}

func (k *keptVM) reboot() {
	k.t.Helper()
	r, err := k.g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		k.t.Fatal(err)
	}
	k.gen++
	if r.Boot.Release != "v2" || r.Boot.Daemon != "started" {
		k.t.Fatalf("gen %d ready = %+v, want v2, daemon started", k.gen, r.Boot.Ready)
	}
}

// keptStatus is `kept status --json`.
func (k *keptVM) keptStatus() *cli.KeptStatusV1 {
	k.t.Helper()
	var ks cli.KeptStatusV1
	if err := k.g.FastrebootJSON("kept status", &ks); err != nil {
		k.t.Fatal(err)
	}
	return &ks
}

// refusedRegion checks that the generation now up adopted nothing from the
// region, said why (with every one of want), and reads all of v2 from
// storage.
func (k *keptVM) refusedRegion(what string, want ...string) {
	k.t.Helper()
	st := guestStatus(k.t, k.g)
	s := st.State
	if s == nil || s.Carrier != "kept" || s.Rehydrated.Modules != 0 {
		k.t.Fatalf("%s: gen %d state %+v: want carrier kept and nothing adopted", what, k.gen, s)
	}
	for _, w := range want {
		if !strings.Contains(s.RehydrateError, w) {
			k.t.Errorf("%s: gen %d says %q; want it to say %q", what, k.gen, s.RehydrateError, w)
		}
	}
	k.t.Logf("%s: gen %d adopted nothing: %s", what, k.gen, s.RehydrateError)
	if err := k.g.MountStorage(); err != nil {
		k.t.Fatal(err)
	}
	var sync cli.CacheSyncV1
	if err := k.g.FastrebootJSON("cache sync "+scenario.MountPoint+"/"+scenario.ManifestV2, &sync); err != nil {
		k.t.Fatal(err)
	}
	if want := scenario.TotalSize(k.s.V2); sync.BytesRead != want {
		k.t.Errorf("%s: gen %d cache sync v2 read %d bytes, want all of v2 from storage (%d)", what, k.gen, sync.BytesRead, want)
	}
}

// keptIndexOffset is where keptmem.Write puts the index of the modules
// of ms: after the modules, each at a block-aligned offset from
// keptmem.DataStart (see the format in pkg/keptmem).
func keptIndexOffset(ms ...*bootimage.Manifest) int64 {
	seen := map[string]bool{}
	off := int64(keptmem.DataStart)
	for _, m := range ms {
		for _, mod := range m.Modules {
			if !seen[mod.SHA256] {
				seen[mod.SHA256] = true
				off += (max(mod.Size, 1) + keptmem.BlockSize - 1) / keptmem.BlockSize * keptmem.BlockSize
			}
		}
	}
	return off
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// TestKeptBadInput proves on Debian's kernel that bad kept regions cost a
// clear error or a read from storage, never a boot that trusts bad bytes:
//   - the region's device gone (nd_pmem unbound): `stage --carry kept`
//     refuses naming it, with nothing loaded; the default carrier carries
//     in the initrd and says why;
//   - a byte of the index changed after a kept stage: `kept status` says
//     the index does not match, and the next generation adopts nothing
//     and reads its modules from storage;
//   - a write cut off after the index, before the header (what
//     keptmem.Write's order leaves wherever it stops: the header and the
//     block after it zeroed first, written last): the next generation
//     finds no index and reads storage;
//   - a real crash in the middle of a kept write (frfault midwrite: a
//     panic once the header is zeroed in the region): the firmware reboot
//     finds no index, and the next kept stage puts the region back in use;
//   - a region over memory in use (the kernel's load range, what the
//     firmware reserves): the stage is refused naming the conflict, with
//     nothing loaded;
//   - a region too small for the modules (8 MiB): `stage --carry kept`
//     refuses with the sizes, nothing loaded; the default carrier carries
//     in the initrd, says why, and the next generation adopts every module
//     from it.
func TestKeptBadInput(t *testing.T) {
	t.Run("device gone, index corrupt, write cut off", func(t *testing.T) {
		k := startKeptVM(t, keptRegion)
		v2 := scenario.MountPoint + "/" + scenario.ManifestV2

		// A region over memory in use: v2's files with the running
		// command line, its region moved over the kernel's load range
		// (16 MiB up) or across the end of RAM into what the firmware
		// reserves (q35 with 2 GiB: RAM ends at 0x7ffdcfff).
		running := k.run("cat /proc/cmdline")
		if !strings.Contains(running, "memmap="+keptRegion) {
			t.Fatalf("the running command line %q lacks memmap=%s", running, keptRegion)
		}
		files := fmt.Sprintf("--kernel %[1]s/%[2]s --initrd %[1]s/%[3]s --initrd %[1]s/%[4]s --initrd %[1]s/%[5]s",
			scenario.MountPoint, scenario.KernelFile, scenario.BaseFile, scenario.KmodsFile, scenario.SiteV2File)
		for _, tc := range []struct{ what, region, want string }{
			{"region over the kernel's load range", "64M!0x1000000", "the kernel's load range without KASLR"},
			{"region over firmware-reserved memory", "64M!0x7c000000", "covers Reserved memory"},
		} {
			cmdline := strings.Replace(running, "memmap="+keptRegion, "memmap="+tc.region, 1)
			k.stageFails(tc.what, files+" --cmdline '"+cmdline+"'", "overlaps memory in use", tc.want)
		}

		// The device gone.
		k.run("echo namespace0.0 > /sys/bus/nd/drivers/nd_pmem/unbind")
		if ks := k.keptStatus(); ks.Device != "" || ks.DeviceError == "" {
			t.Fatalf("kept status with nd_pmem unbound: device %q, error %q; want no device and why", ks.Device, ks.DeviceError)
		}
		k.stageFails("device gone", "--carry kept "+v2, "pmem")
		st := k.stage(v2)
		if st.Carrier != "initrd" || st.Kept != nil || !strings.Contains(st.CarrierWarning, "pmem") || st.CarriedModules != k.modules {
			t.Errorf("device gone: default stage carrier %q (%q), kept %+v, %d modules carried; want the initrd carrying %d and a warning naming the device",
				st.Carrier, st.CarrierWarning, st.Kept, st.CarriedModules, k.modules)
		}
		t.Logf("device gone: the default carrier carried in the initrd: %s", st.CarrierWarning)
		k.run("echo namespace0.0 > /sys/bus/nd/drivers/nd_pmem/bind")
		if ks := k.keptStatus(); ks.Device != "/dev/pmem0" {
			t.Fatalf("kept status with nd_pmem bound again: device %q (%s), want /dev/pmem0", ks.Device, ks.DeviceError)
		}

		// A byte of the index changed.
		st = k.stage("--carry kept " + v2)
		if st.Carrier != "kept" || st.Kept == nil || st.Kept.Modules != k.modules {
			t.Fatalf("stage --carry kept: carrier %q, kept %+v; want %d modules in the region", st.Carrier, st.Kept, k.modules)
		}
		off := keptIndexOffset(k.s.V2, k.s.V1)
		k.run(fmt.Sprintf("dd if=/etc/kept-junk of=/dev/pmem0 bs=1 seek=%d count=1 conv=notrunc oflag=sync status=none", off+3))
		if ks := k.keptStatus(); ks.Index != nil || !strings.Contains(ks.IndexError, "does not match") {
			t.Errorf("kept status after the index changed: index %+v, error %q; want no index, saying it does not match", ks.Index, ks.IndexError)
		}
		k.reboot()
		k.refusedRegion("index corrupt", "does not match")

		// A write cut off before its header.
		st = k.stage("--current --carry kept")
		if st.Carrier != "kept" || st.Kept == nil {
			t.Fatalf("gen %d stage --carry kept: carrier %q, kept %+v", k.gen, st.Carrier, st.Kept)
		}
		k.run(fmt.Sprintf("dd if=/dev/zero of=/dev/pmem0 bs=4096 count=%d conv=notrunc oflag=sync status=none", keptmem.DataStart/4096))
		if ks := k.keptStatus(); ks.Index != nil || !strings.Contains(ks.IndexError, "no index") {
			t.Errorf("kept status after the cut-off write: index %+v, error %q; want no index", ks.Index, ks.IndexError)
		}
		k.reboot()
		k.refusedRegion("write cut off", "no index")

	})

	t.Run("crash mid-write", func(t *testing.T) {
		// A crash in the middle of a kept write: a kept stage writes a
		// valid index, and the next one is torn by a panic as soon as
		// its first step (the header zeroed) reached the region. The
		// firmware reboot (panic=-1) comes up cold with the torn region:
		// `kept status` says it holds no index, and a kept stage and a
		// fast reboot put the region back in use.
		k := startKeptVM(t, keptRegion)
		v2 := scenario.MountPoint + "/" + scenario.ManifestV2
		st := k.stage("--carry kept " + v2)
		if st.Carrier != "kept" || st.Kept == nil || !st.Kept.Written {
			t.Fatalf("gen 1 stage --carry kept: carrier %q, kept %+v", st.Carrier, st.Kept)
		}
		r, err := k.g.RebootWith("frfault midwrite /dev/pmem0 fastreboot stage --carry kept "+v2, regexp.MustCompile(`^frfault: /dev/pmem0 header zeroed`), 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		if st := guestStatus(t, k.g); st.Generation != 1 || st.Reason != "cold" || r.Boot.Release != "v1" {
			t.Fatalf("after the crash: generation %d, reason %q, release %q; want the cold boot of v1 (a firmware reboot)", st.Generation, st.Reason, r.Boot.Release)
		}
		if ks := k.keptStatus(); ks.Device != "/dev/pmem0" || ks.Index != nil || !strings.Contains(ks.IndexError, "no index") {
			t.Errorf("kept status after the crash mid-write: device %q, index %+v, error %q; want /dev/pmem0 holding no index", ks.Device, ks.Index, ks.IndexError)
		} else {
			t.Logf("crash mid-write: the cold boot's kept status: %s", ks.IndexError)
		}
		if err := k.g.MountStorage(); err != nil {
			t.Fatal(err)
		}
		st = k.stage("--carry kept " + v2)
		if st.Carrier != "kept" || st.Kept == nil || !st.Kept.Written {
			t.Fatalf("after the crash: stage --carry kept: carrier %q, kept %+v", st.Carrier, st.Kept)
		}
		k.reboot()
		s := guestStatus(t, k.g)
		if s.State == nil || s.State.Carrier != "kept" || s.State.RehydrateError != "" || s.State.Rehydrated.Modules != st.Kept.Modules || s.Agent == nil || s.Agent.Cache.BytesRead != 0 {
			t.Fatalf("gen %d after the crash and a kept stage: state %+v, agent %+v; want the %d modules adopted from the region, nothing read", k.gen, s.State, s.Agent, st.Kept.Modules)
		}
		t.Logf("crash mid-write: the next kept stage and fast reboot adopted %d modules from the region", s.State.Rehydrated.Modules)
	})

	t.Run("region too small", func(t *testing.T) {
		k := startKeptVM(t, "8M!0x40000000")
		v2 := scenario.MountPoint + "/" + scenario.ManifestV2
		k.stageFails("region too small", "--carry kept "+v2, "too small", "the region has 8388608")
		st := k.stage(v2)
		if st.Carrier != "initrd" || st.Kept != nil || !strings.Contains(st.CarrierWarning, "too small") || st.CarriedModules != k.modules {
			t.Errorf("region too small: default stage carrier %q (%q), kept %+v, %d modules carried; want the initrd carrying %d and a warning saying too small",
				st.Carrier, st.CarrierWarning, st.Kept, st.CarriedModules, k.modules)
		}
		t.Logf("region too small: the default carrier carried in the initrd: %s", st.CarrierWarning)
		k.reboot()
		s := guestStatus(t, k.g)
		if s.State == nil || s.State.Carrier != "initrd" || s.State.Rehydrated.Modules != k.modules || s.Agent == nil || s.Agent.Cache.BytesRead != 0 {
			t.Errorf("gen 2 after the initrd carried: state %+v, agent %+v; want %d modules adopted from the initrd, nothing read", s.State, s.Agent, k.modules)
		}
	})
}
