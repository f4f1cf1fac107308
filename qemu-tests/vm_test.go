package qemutests

import (
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
	"github.com/fastreboot/fastreboot/qemu-tests/scenario"
)

// TestVMPreserved's layout: a 134 MiB kept region at 1 GiB whose last
// 70 MiB are the areas part: the nested guest's 64 MiB of RAM, a 4 MiB
// area for its migration stream, and the 64 KiB table (2 MiB multiples).
const (
	vmRegion       = "134M!0x40000000"
	vmPreserveWord = "fastreboot.preserve=70M"
	frvmCmd        = harness.ModulePath + "/qemu-tests/cmd/frvm"
	// vmQEMUDir is where the guest mounts the disk of the nested QEMU.
	vmQEMUDir = "/q"
)

var (
	frvmRE = reportLineRE("FRVM")
	loopRE = regexp.MustCompile(`(?m)^/dev/loop[0-9]+$`)
)

// frvmLine returns the key=value pairs of frvm's line of kind in out.
func frvmLine(t *testing.T, out, kind string) map[string]string {
	t.Helper()
	return reportLine(t, frvmRE, out, kind)
}

func intOf(t *testing.T, kv map[string]string, key string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(kv[key], 10, 64)
	if err != nil {
		t.Fatalf("%s=%q: %v", key, kv[key], err)
	}
	return n
}

// TestVMPreserved proves the seed's case, a virtual machine suspended in
// RAM across a fast reboot: generation 1 runs a QEMU guest (nested TCG,
// frvm's firmware counting in RAM) whose RAM is the preserved area "vm",
// mapped through a loop device (fastreboot preserve attach) as QEMU's
// memory-backend-file,share=on; frvm suspends it with QEMU's migration and
// x-ignore-shared (the RAM is not copied) into the area "vmstate", and
// fastreboot reboot syncs the loop device and the region before the jump.
// Generation 2 attaches the area again, finds the counter where the guest
// stopped, and QEMU resumes the guest (-incoming) with its RAM in place:
// the counter goes on from there. The pause (guest stopped -> running
// again) is measured from the console lines' times.
func TestVMPreserved(t *testing.T) {
	harness.RequireQEMU(t)
	qfiles := harness.RequireNestedQEMU(t)
	qdisk := filepath.Join(t.TempDir(), "qemu.img")
	if err := harness.BuildLabeledDisk(qdisk, "frqemu", 0, qfiles...); err != nil {
		t.Fatal(err)
	}
	s := prepare(t, scenario.Options{
		KeptRegion:    vmRegion,
		Cmdline:       vmPreserveWord,
		Modules:       []string{"loop"},
		ExtraCommands: []string{frvmCmd},
	})
	opts := s.VMOptions()
	opts.Disks = append(opts.Disks, harness.Disk{Path: qdisk, ReadOnly: true}) // /dev/vdb
	vm, boot := harness.StartBootT(t, opts, 3*time.Minute)
	g := &scenario.Guest{VM: vm, Timeout: 5 * time.Minute}
	if boot.Daemon != "started" {
		t.Fatalf("gen 1 ready = %+v, want daemon started", boot.Ready)
	}
	run := func(cmd string) string {
		t.Helper()
		out, err := g.Run(cmd)
		if err != nil {
			if log, lerr := g.Run("cat /tmp/frvm/qemu.log"); lerr == nil {
				t.Logf("nested QEMU's log: %s", log)
			}
			t.Fatal(err)
		}
		return strings.TrimSpace(scenario.StripKernelLines(out))
	}
	attach := func(gen int) string {
		t.Helper()
		loop := loopRE.FindString(run("fastreboot preserve attach vm"))
		if loop == "" {
			t.Fatalf("gen %d: preserve attach vm printed no /dev/loopN", gen)
		}
		return loop
	}
	mountQEMU := func() {
		t.Helper()
		run("mkdir -p " + vmQEMUDir)
		run("mount -t ext4 -o ro /dev/vdb " + vmQEMUDir)
	}
	lineTime := func(kind string) time.Duration {
		t.Helper()
		d, ok := vm.LineTime(regexp.MustCompile(`FRVM ` + kind + ` `))
		if !ok {
			t.Fatalf("no console time for the FRVM %s line", kind)
		}
		return d
	}

	// Generation 1: the areas, the guest running in one of them.
	run("fastreboot preserve create vm --size 64M")
	run("fastreboot preserve create vmstate --size 4M")
	loop := attach(1)
	if again := attach(1); again != loop {
		t.Errorf("gen 1: a second attach gave %s, want %s again", again, loop)
	}
	mountQEMU()
	started := frvmLine(t, run("frvm start "+vmQEMUDir+" "+loop), "start")
	t.Logf("gen 1: the nested guest runs on %s: QEMU ready in %s ms, counter %s then %s a second later; %s reads %s at its offset",
		loop, started["ready_ms"], started["counter"], started["counter_later"], loop, started["loop_counter"])
	// Staged before the suspend, so that the reboot follows it at once.
	if err := g.MountStorage(); err != nil {
		t.Fatal(err)
	}
	run("fastreboot stage " + scenario.MountPoint + "/" + scenario.ManifestV1)
	sus := frvmLine(t, run("frvm suspend vmstate"), "suspend")
	stopped := lineTime("suspend") - time.Duration(intOf(t, sus, "since_stop_ms"))*time.Millisecond
	t.Logf("gen 1: suspended at counter %s (status %s): %s-byte migration stream in %s ms, QEMU gone and the stream in vmstate %s ms after the suspend began",
		sus["counter"], sus["status"], sus["state_bytes"], sus["migrate_ms"], sus["total_ms"])
	t.Logf("gen 1 before the reboot: %s", strings.Join(strings.Fields(run("grep '^(Dirty|Writeback):' /proc/meminfo")), " "))
	r, err := g.RebootWith("fastreboot reboot", scenario.RebootingRE, 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	// reboot says what it synced right before the kexec: the line may be
	// lost with the jump, so it is only logged. What generation 2 reads
	// proves the sync.
	synced := "(the preserve line was lost with the jump)"
	for _, l := range vm.Lines() {
		if strings.Contains(l.Text, "preserved area(s) on") {
			synced = strings.TrimSpace(l.Text)
		}
	}
	t.Logf("gen 1 -> 2: %s", synced)

	// Generation 2: the same RAM, the guest resumed from its stream.
	if st := guestStatus(t, g); st.Generation != 2 {
		t.Fatalf("generation %d after the reboot, want 2", st.Generation)
	}
	loop2 := attach(2)
	mountQEMU()
	res := frvmLine(t, run("frvm resume "+vmQEMUDir+" "+loop2+" vmstate"), "resume")
	running := lineTime("resume") - time.Duration(intOf(t, res, "since_run_ms"))*time.Millisecond
	suspended := intOf(t, sus, "counter")
	if kept := intOf(t, res, "loop_counter"); kept != suspended {
		t.Errorf("gen 2: the area holds the counter %d before QEMU starts, want %d (where the guest stopped)", kept, suspended)
	}
	if c := intOf(t, res, "counter"); c < suspended {
		t.Errorf("gen 2: the resumed guest's counter is %d, below %d (where it stopped)", c, suspended)
	}
	if c, later := intOf(t, res, "counter"), intOf(t, res, "counter_later"); later <= c {
		t.Errorf("gen 2: the resumed guest's counter does not run: %d then %d a second later", c, later)
	}
	if res["state_bytes"] != sus["state_bytes"] {
		t.Errorf("gen 2: the stream read back is %s bytes, want %s", res["state_bytes"], sus["state_bytes"])
	}
	t.Logf("gen 2: %s holds the counter %s; resumed (stream checked and QEMU running) in %s ms at counter %s, %s a second later",
		loop2, res["loop_counter"], res["resume_ms"], res["counter"], res["counter_later"])
	// Suspended again, the guest's RAM is released: detach syncs and
	// clears the loop device, which sysfs then no longer lists.
	again := frvmLine(t, run("frvm suspend vmstate"), "suspend")
	if c := intOf(t, again, "counter"); c <= intOf(t, res, "counter_later") {
		t.Errorf("gen 2: suspended again at counter %d, not past %s", c, res["counter_later"])
	}
	if out, err := g.Run("fastreboot preserve rm vm"); err == nil || !strings.Contains(out, loop2+" maps it") {
		t.Errorf("gen 2: preserve rm vm with %s over it: %v, %q; want a refusal naming it", loop2, err, out)
	}
	if out := run("fastreboot preserve detach vm"); !strings.Contains(out, "detached vm: "+loop2+" synced and released") {
		t.Errorf("gen 2: preserve detach vm said %q", out)
	}
	if out := run("fastreboot preserve detach vm"); !strings.Contains(out, "vm: no loop device maps it") {
		t.Errorf("gen 2: a second preserve detach vm said %q, want no loop device", out)
	}
	run("fastreboot preserve rm vm")
	began := running - time.Duration(intOf(t, res, "resume_ms"))*time.Millisecond
	sec := func(d time.Duration) string { return strconv.FormatFloat(d.Seconds(), 'f', 2, 64) }
	t.Logf("pause: the guest stopped -> running again %ss: stopped -> reboot command sent %ss (QEMU quit, the stream written, meminfo read), sent -> reboot requested %ss (line lost: %v), the host's reboot (request -> userspace, with the sync of the loop device and the region) %ss, userspace -> frvm resume began %ss (status, attach, mount over the console), resume %ss",
		sec(running-stopped), sec(r.Sent-stopped), sec(r.Requested-r.Sent), r.LineLost, sec(r.Downtime()), sec(began-r.Boot.StartAt), sec(running-began))
}
