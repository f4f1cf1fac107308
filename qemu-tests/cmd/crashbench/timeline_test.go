package main

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// consoleLines parses "SECONDS TEXT" lines into harness lines.
func consoleLines(t *testing.T, text string) []harness.Line {
	t.Helper()
	var out []harness.Line
	for _, l := range strings.Split(strings.TrimSpace(text), "\n") {
		l = strings.TrimSpace(l)
		at, rest, _ := strings.Cut(l, " ")
		f, err := strconv.ParseFloat(at, 64)
		if err != nil {
			t.Fatalf("bad test line %q: %v", l, err)
		}
		out = append(out, harness.Line{T: time.Duration(f * float64(time.Second)), Text: strings.TrimLeft(rest, " ")})
	}
	return out
}

func s(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

const (
	banner  = "[    0.000000] Linux version 6.1.0-48-amd64 (debian-kernel@lists.debian.org) #1 SMP"
	readyOK = "FRGUEST_READY uptime=6.41 release=v1 cpus=0-3 memtotal_kb=1583656 modules=13/14 daemon=started"
)

// Consoles as the harness records them (times: host seconds). Lines before
// the trigger at 10 s belong to the crashed generation.
var (
	twoStageConsole = `
		6.7   FRGUEST_READY uptime=3.52 release=v1 cpus=0-3 memtotal_kb=1583656 modules=13/14 daemon=started
		9.0   [    6.000000] Kernel panic - not syncing: an earlier panic, before the trigger
		10.0  echo c > /proc/sysrq-trigger
		10.1  [    6.615266] Kernel panic - not syncing: sysrq triggered crash
		13.4  ` + banner + `
		13.5  [    0.098301] Kernel command line: elfcorehdr=0x65000000 console=ttyS0 fastreboot.crash=two-stage
		16.5  FRGUEST_START uptime=2.94
		16.6  FRGUEST_RECOVER mode=two-stage uptime=2.94
		18.9  fastreboot: rebooting through kexec at 2026-12-04T16:26:37.90937533Z
		22.8  ` + banner + `
		23.0  [    0.134575] Kernel command line: console=ttyS0 panic=-1 crashkernel=416M
		26.7  FRGUEST_START uptime=3.59
		28.0  frguest: daemon=started pid=112 socket=/run/fastreboot/fastreboot.sock took=0.90s
		29.3  frguest: <6>[    0.000000] Linux version 6.1.0-48-amd64 echoed from dmesg
		29.4  FRGUEST_CRASH_ARM ok took=1.45s: crash path armed: mode two-stage, image v1 (34 MiB), reservation 416 MiB (needs 384 MiB), memory map from handoff, took 1.4s loaded with the segments method
		29.5  ` + readyOK + `
		29.6  "[    0.000000] Linux version 6.1.0-48-amd64 quoted in JSON output",`

	// twoStageMinimalConsole: the minimal crash initramfs (fastreboot as
	// PID 1, two-stage mode's default) prints its own crash stage line and
	// no FRGUEST_START.
	twoStageMinimalConsole = `
		6.7   FRGUEST_READY uptime=3.52 release=v1 cpus=0-3 memtotal_kb=1583656 modules=13/14 daemon=started
		10.0  echo c > /proc/sysrq-trigger
		10.1  [    6.615266] Kernel panic - not syncing: sysrq triggered crash
		10.3  ` + banner + `
		10.4  [    0.098301] Kernel command line: elfcorehdr=0x65000000 console=ttyS0 fastreboot.crash=two-stage
		12.5  fastreboot: crash stage mode=two-stage uptime=2.01 memtotal_kb=215000 memfree_kb=170000 memavailable_kb=160000
		14.0  fastreboot: rebooting through kexec at 2026-12-04T16:26:37.90937533Z (crash stage took 1.50s)
		15.0  ` + banner + `
		15.1  [    0.134575] Kernel command line: console=ttyS0 panic=-1 crashkernel=416M
		18.1  FRGUEST_START uptime=3.59
		19.1  frguest: daemon=started pid=112 socket=/run/fastreboot/fastreboot.sock took=0.90s
		20.1  FRGUEST_CRASH_ARM ok took=1.00s: crash path armed: mode two-stage, image v1 (34 MiB), reservation 416 MiB (needs 272 MiB), memory map from handoff, took 1s crash initrd: minimal (fastreboot as /init and the carried modules) loaded with the segments method
		20.2  ` + readyOK

	directConsole = `
		10.0  echo c > /proc/sysrq-trigger
		10.2  [    6.615266] Kernel panic - not syncing: sysrq triggered crash
		12.2  $ ` + banner + `
		12.3  [    0.098301] Kernel command line: elfcorehdr=0x65000000 console=ttyS0 fastreboot.crash=direct
		15.0  FRGUEST_START uptime=2.94
		15.5  FRGUEST_RECOVER mode=direct uptime=3.40
		17.0  frguest: daemon=started pid=112 socket=/run/fastreboot/fastreboot.sock took=0.90s
		17.8  FRGUEST_CRASH_ARM ok took=0.80s: warning: no pstore crash path armed: mode direct, image v1 (34 MiB), reservation 416 MiB (needs 200 MiB), memory map from handoff, took 800ms loaded with kexec_file_load instead of kexec_load: lockdown
		18.0  ` + readyOK

	kdumpConsole = `
		10.0  echo c > /proc/sysrq-trigger
		10.1  [    6.615266] Kernel panic - not syncing: sysrq triggered crash
		16.1  ` + banner + `
		16.2  [    0.000000] Kernel command line: console=ttyS0 nr_cpus=1 reset_devices irqpoll crashbench.kdump
		20.0  FRGUEST_START uptime=3.10
		20.5  FRGUEST_READY uptime=3.60 release=v1 cpus=0 memtotal_kb=300000 modules=13/14 daemon=off
		21.0  [   4.500000] sysrq: Resetting
		24.0  ` + banner + `
		24.1  [    0.000000] Kernel command line: console=ttyS0 panic=-1 crashkernel=416M
		30.0  FRGUEST_START uptime=3.00
		31.0  frguest: daemon=started pid=100 socket=/run/fastreboot/fastreboot.sock took=0.30s
		31.1  FRGUEST_READY uptime=4.00 release=v1 cpus=0-3 memtotal_kb=1583656 modules=13/14 daemon=started`

	updateConsole = `
		10.0  fastreboot reboot
		10.4  fastreboot: rebooting through kexec at 2026-12-04T16:26:49.94843671Z
		14.4  ` + banner + `
		18.4  FRGUEST_START uptime=3.25
		19.4  frguest: daemon=started pid=113 socket=/run/fastreboot/fastreboot.sock took=0.86s
		21.4  ` + readyOK
)

func TestMeasure(t *testing.T) {
	tests := []struct {
		name    string
		console string
		shape   shape
		want    timing
		wantErr bool
	}{
		{"two-stage", twoStageConsole, shapeTwoStage, timing{From: fromPanic, ToCrashKernel: s(3.3), CrashStage: s(9.4),
			SecondJump: s(3.9), ToUser: s(16.6), ToDaemon: s(17.9), ToReady: s(19.4), ToArmed: s(19.3), RearmLoad: "segments"}, false},
		{"two-stage without the panic line or the rebooting line", dropLines(twoStageConsole, "sysrq triggered crash", "rebooting through"),
			shapeTwoStage, timing{From: fromTrigger, ToCrashKernel: s(3.4), CrashStage: s(9.4), ToUser: s(16.7), ToDaemon: s(18), ToReady: s(19.5),
				ToArmed: s(19.4), RearmLoad: "segments"}, false},
		{"two-stage, minimal crash initramfs", twoStageMinimalConsole, shapeTwoStage, timing{From: fromPanic, ToCrashKernel: s(0.2), CrashStage: s(4.7),
			SecondJump: s(1), ToUser: s(8), ToDaemon: s(9), ToReady: s(10.1), ToArmed: s(10), RearmLoad: "segments"}, false},
		{"two-stage, minimal: the crash stage never began", dropLines(twoStageMinimalConsole, "crash stage mode="), shapeTwoStage, timing{}, true},
		{"direct", directConsole, shapeDirect, timing{From: fromPanic, ToCrashKernel: s(2), ToUser: s(4.8), ToDaemon: s(6.8), ToReady: s(7.8),
			ToArmed: s(7.6), RearmLoad: "file (fallback)"}, false},
		{"kdump", kdumpConsole, shapeKdump, timing{From: fromPanic, ToCrashKernel: s(6), CrashStage: s(7.9), ToUser: s(19.9), ToDaemon: s(20.9), ToReady: s(21)}, false},
		{"update from the rebooting line", updateConsole, shapeUpdate, timing{From: fromRequest, ToCrashKernel: s(4), ToUser: s(8), ToDaemon: s(9), ToReady: s(11)}, false},
		{"update from the request when the line was lost", dropLines(updateConsole, "rebooting through"), shapeUpdate,
			timing{From: fromTrigger, ToCrashKernel: s(4.4), ToUser: s(8.4), ToDaemon: s(9.4), ToReady: s(11.4)}, false},

		{"direct: a cold boot, not the crash kernel", dropLines(directConsole, "FRGUEST_RECOVER"), shapeDirect, timing{}, true},
		{"direct: a two-stage crash kernel", twoStageConsole, shapeDirect, timing{}, true},
		{"two-stage: the crash stage did not kexec", directConsole, shapeTwoStage, timing{}, true},
		{"two-stage: production never answered", dropLines(twoStageConsole, "daemon=started"), shapeTwoStage, timing{}, true},
		{"two-stage: a third kernel", twoStageConsole + "\n30.0 " + banner, shapeTwoStage, timing{}, true},
		{"kdump: the first kernel is not the kdump kernel", strings.ReplaceAll(kdumpConsole, "crashbench.kdump", ""), shapeKdump, timing{}, true},
		{"kdump: the kdump kernel reached no userspace", dropLines(kdumpConsole, "uptime=3.10"), shapeKdump, timing{}, true},
		{"kdump: the second kernel is a kdump kernel too", strings.ReplaceAll(kdumpConsole, "crashkernel=416M", "crashbench.kdump"), shapeKdump, timing{}, true},
		{"update into a crash kernel", directConsole, shapeUpdate, timing{}, true},
		{"direct: production did not re-arm", dropLines(directConsole, "FRGUEST_CRASH_ARM"), shapeDirect, timing{}, true},
		{"two-stage: the re-arm failed", strings.ReplaceAll(twoStageConsole, "FRGUEST_CRASH_ARM ok", "FRGUEST_CRASH_ARM failed"), shapeTwoStage, timing{}, true},
		{"direct: the re-arm found nothing to arm", strings.ReplaceAll(directConsole, "crash path armed", "crash path not armed"), shapeDirect, timing{}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := measure(readTimeline(consoleLines(t, tt.console), s(10)), tt.shape)
			if tt.wantErr {
				if !errors.Is(err, errTimeline) {
					t.Fatalf("measure = %+v, %v; want errTimeline", got, err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(near)); diff != "" {
				t.Errorf("measure (-want +got):\n%s", diff)
			}
		})
	}
}

// near compares durations to the millisecond (the test consoles are in
// float seconds).
func near(a, b time.Duration) bool { d := a - b; return d > -time.Millisecond && d < time.Millisecond }

func dropLines(console string, subs ...string) string {
	var keep []string
	for _, l := range strings.Split(console, "\n") {
		drop := false
		for _, sub := range subs {
			drop = drop || strings.Contains(l, sub)
		}
		if !drop {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestReadTimeline(t *testing.T) {
	tl := readTimeline(consoleLines(t, twoStageConsole), s(10))
	want := timeline{PanicAt: s(10.1), PanicSeen: true, Boots: []bootSeen{
		{KernelAt: s(13.4), Cmdline: "elfcorehdr=0x65000000 console=ttyS0 fastreboot.crash=two-stage", StartAt: s(16.5), Recover: "two-stage", RebootingAt: s(18.9)},
		{KernelAt: s(22.8), Cmdline: "console=ttyS0 panic=-1 crashkernel=416M", StartAt: s(26.7), DaemonAt: s(28), ReadyAt: s(29.5),
			ArmedAt: s(29.4), ArmLoad: "segments"},
	}}
	if diff := cmp.Diff(want, tl, cmp.Comparer(near)); diff != "" {
		t.Errorf("readTimeline (-want +got):\n%s", diff)
	}
}

func TestKdumpCmdline(t *testing.T) {
	prod := "console=ttyS0 panic=-1 crashkernel=416M earlyprintk=ttyS0,115200 memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 crash_kexec_post_notifiers quiet"
	want := "console=ttyS0 panic=-1 earlyprintk=ttyS0,115200 quiet nr_cpus=1 reset_devices irqpoll uroot.uinitargs=-daemon=off crashbench.kdump"
	if got := kdumpCmdline(prod); got != want {
		t.Errorf("kdumpCmdline =\n%q\nwant\n%q", got, want)
	}
}

func TestSummarizeAndGoals(t *testing.T) {
	samples := []sample{
		{Method: methodUpdate, Round: 1, timing: timing{From: fromRequest, ToCrashKernel: s(4), ToUser: s(8), ToDaemon: s(9), ToReady: s(11)}},
		{Method: methodDirect, Round: 1, timing: timing{From: fromPanic, ToCrashKernel: s(2), ToUser: s(6), ToDaemon: s(7), ToReady: s(8), ToArmed: s(7.5), RearmLoad: "segments"}},
		{Method: methodDirect, Round: 2, timing: timing{From: fromTrigger, ToCrashKernel: s(4), ToUser: s(10), ToDaemon: s(11), ToReady: s(12), ToArmed: s(11.5), RearmLoad: "segments"}},
		{Method: methodDirect, Round: 3, timing: timing{From: fromPanic, ToCrashKernel: s(3), ToUser: s(7), ToDaemon: s(8), ToReady: s(9), ToArmed: s(8.5), RearmLoad: "file (fallback)"}},
		{Method: "two-stage-seg", Round: 1, timing: timing{From: fromPanic, ToCrashKernel: s(0.5), CrashStage: s(5), SecondJump: s(1.5), ToUser: s(15), ToDaemon: s(16), ToReady: s(18), ToArmed: s(17.5), RearmLoad: "segments"}},
		{Method: "direct-seg", Round: 1, timing: timing{From: fromPanic, ToCrashKernel: s(0.7), ToUser: s(9), ToDaemon: s(10), ToReady: s(12), ToArmed: s(11.5), RearmLoad: "segments"}},
		{Method: methodKdump, Round: 1, timing: timing{From: fromPanic, ToCrashKernel: s(6), CrashStage: s(8), ToUser: s(20), ToDaemon: s(20), ToReady: s(21)}, Capture: s(1)},
	}
	names := []string{methodUpdate, methodDirect, "two-stage-seg", methodKdump, "direct-seg", methodTwoStage}
	sum := summarize(names, samples)
	var got []string
	for _, sm := range sum {
		got = append(got, sm.Method)
	}
	if diff := cmp.Diff([]string{methodUpdate, methodDirect, "two-stage-seg", methodKdump, "direct-seg"}, got); diff != "" {
		t.Errorf("methods summarized (-want +got):\n%s", diff)
	}
	d := sum[1]
	if d.N != 3 || d.ToUser.Median != s(7) || d.ToUser.Min != s(6) || d.ToUser.Max != s(10) || d.FromTrigger != 1 || d.CrashStage != nil {
		t.Errorf("direct summary %+v", d)
	}
	if d.ToArmed == nil || d.ToArmed.Median != s(8.5) || !cmp.Equal(d.RearmLoads, []string{"file (fallback)", "segments"}) {
		t.Errorf("direct armed again %+v with %q, want 8.5 s with both loads", d.ToArmed, d.RearmLoads)
	}
	if sum[0].ToArmed != nil || sum[3].ToArmed != nil {
		t.Errorf("update and kdump armed again %+v %+v, want none (no re-arm seen)", sum[0].ToArmed, sum[3].ToArmed)
	}
	if r := sum[2].UserVsKdump; r < 0.749 || r > 0.751 {
		t.Errorf("two-stage-seg userspace vs kdump %.3f, want 0.75", r)
	}
	if r := sum[3].DaemonVsKdump; r != 1 {
		t.Errorf("kdump vs itself %.3f, want 1", r)
	}
	if sum[2].CrashStage == nil || sum[2].CrashStage.Median != s(5) {
		t.Errorf("two-stage-seg crash stage %+v, want 5 s", sum[2].CrashStage)
	}

	type g struct {
		What string
		Met  string
	}
	var gs []g
	for _, x := range goals(sum) {
		met := "n/a"
		if x.Met != nil {
			met = strconv.FormatBool(*x.Met)
		}
		gs = append(gs, g{x.What, met})
	}
	// The file methods get no jump goal: the 1 s is asked of segments.
	want := []g{
		{"direct: panic -> production userspace <= the update's request -> userspace", "true"},
		{"two-stage-seg: panic -> production userspace <= 0.8x kdump's", "true"},
		{"direct-seg: panic -> production userspace <= the update's request -> userspace", "false"},
		{"two-stage-seg: panic -> the crash kernel's first line <= 1 s", "true"},
		{"two-stage-seg: crash stage's kexec -> production's first line <= 1 s", "false"},
		{"direct-seg: panic -> the crash kernel's first line <= 1 s", "true"},
	}
	if diff := cmp.Diff(want, gs); diff != "" {
		t.Errorf("goals (-want +got):\n%s", diff)
	}
	// Without the anchor: no ratios, the two-stage goal cannot be judged.
	noAnchor := summarize([]string{"two-stage-seg"}, samples)
	if noAnchor[0].UserVsKdump != 0 || goals(noAnchor)[0].Met != nil {
		t.Errorf("without kdump: ratio %v, goal %+v; want none", noAnchor[0].UserVsKdump, goals(noAnchor)[0])
	}

	var b strings.Builder
	printSummary(&b, "6.1.0-48-amd64", 3, "vmcore-dmesg", sum)
	for _, want := range []string{
		"two-stage-seg  segments  0.50 [0.50-0.50]",
		"5.00 [5.00-5.00]                   1.50 [1.50-1.50]",
		"8.50 [7.50-11.50] (file (fallback),segments)",
		"0.75x",
		"direct: 1 of 3 samples timed from the trigger",
		"NOT met: 9.00s vs 8.00s",
		"NOT met: 1.50s",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("summary lacks %q:\n%s", want, b.String())
		}
	}
}

func TestMethodsKnown(t *testing.T) {
	for _, n := range strings.Split(defaultMethods, ",") {
		if _, ok := crashMethods[n]; !ok {
			t.Errorf("default method %q unknown", n)
		}
	}
	// Every crash method names the load `crash arm` gets: the default
	// would leave a table row ambiguous.
	for n, m := range crashMethods {
		crash := m.shape == shapeDirect || m.shape == shapeTwoStage
		if crash != (m.load == loadSegments || m.load == loadFile) {
			t.Errorf("method %q: shape %v, load %q; want an explicit load exactly for the crash methods", n, m.shape, m.load)
		}
		if crash && strings.HasSuffix(n, "-seg") != (m.load == loadSegments) {
			t.Errorf("method %q: load %q does not match its name", n, m.load)
		}
	}
}
