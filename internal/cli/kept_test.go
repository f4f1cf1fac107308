package cli

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// keptFiles is a 2 GiB guest's memory: the firmware map, /proc/iomem with
// a crash reservation and a ramoops region (memmap=1M$0x7f000000), which
// the running kernel does not use as RAM.
func keptFiles(cmdline string) map[string]string {
	return map[string]string{
		"proc/cmdline":                cmdline + "\n",
		"sys/firmware/memmap/0/start": "0x0\n", "sys/firmware/memmap/0/end": "0x9fbff\n", "sys/firmware/memmap/0/type": "System RAM\n",
		"sys/firmware/memmap/1/start": "0x100000\n", "sys/firmware/memmap/1/end": "0x7ffdefff\n", "sys/firmware/memmap/1/type": "System RAM\n",
		"proc/iomem": `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
00100000-7effffff : System RAM
  5e000000-75ffffff : Crash kernel
7f000000-7f0fffff : Reserved
7f100000-7ffdefff : System RAM
`,
	}
}

// TestKeptPlan: the region goes in the recorded map's RAM, 2 MiB aligned,
// out of the crash reservation and the ramoops region; the words parse
// back to the same layout.
func TestKeptPlan(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(keptFiles("console=ttyS0 crashkernel=384M"))
	r := h.run("kept", "plan", "--size", "64M", "--preserve", "16M", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	var doc KeptPlanV1
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatal(err)
	}
	l, ok, err := keptmem.ParseLayout(strings.Join(doc.Words, " "))
	if err != nil || !ok || l.Region.Size != 64<<20 || l.AreasSize != 16<<20 || doc.CacheSize != 48<<20 || doc.Schema != schemaKeptPlan {
		t.Fatalf("plan %+v: layout %+v, %v", doc, l, err)
	}
	end := l.Region.Start + l.Region.Size
	if l.Region.Start%keptmem.Align != 0 || end > 0x7f000000 || (l.Region.Start < 0x76000000 && end > 0x5e000000) {
		t.Errorf("region %s overlaps the crash reservation or the ramoops region, or is not aligned", l.Region)
	}
	ramoops := false
	for _, a := range doc.Avoided {
		ramoops = ramoops || (a.Start == 0x7f000000 && a.End == 0x7f100000)
	}
	if !ramoops || doc.Avoided[0].Start != 0x5e000000 || doc.MemoryMapFrom != "firmware" || doc.Running != nil {
		t.Errorf("avoided %+v, map from %q, running %+v", doc.Avoided, doc.MemoryMapFrom, doc.Running)
	}
	text := h.run("kept", "plan", "--size", "64M")
	if text.code != 0 || !strings.Contains(text.stdout, "memmap=64M!") || !strings.Contains(text.stdout, "boot loader") {
		t.Errorf("text plan: %q", text.stdout)
	}
	for _, args := range [][]string{{"kept", "plan"}, {"kept", "plan", "--size", "3M"}, {"kept", "plan", "--size", "4G"}} {
		if r := h.run(args...); r.code == 0 {
			t.Errorf("%q: exit 0", args)
		}
	}
}

// TestKeptStatus: no region; a region without its device; a region with
// an index, whose header is shown.
func TestKeptStatus(t *testing.T) {
	h := newHarness(t)
	h.writeRoot(keptFiles("console=ttyS0"))
	if r := h.run("kept", "status"); r.code != 0 || !strings.Contains(r.stdout, "kept region: none") {
		t.Errorf("no region: %d %q", r.code, r.stdout)
	}
	h.writeRoot(map[string]string{"proc/cmdline": "console=ttyS0 memmap=4M!0x40000000\n"})
	var doc KeptStatusV1
	r := h.run("kept", "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Region == nil || doc.Device != "" || !strings.Contains(doc.DeviceError, keptmem.ErrNoDevice.Error()) {
		t.Errorf("no device: %+v, %v", doc, err)
	}
	h.writeRoot(map[string]string{
		"sys/block/pmem0/size":            "8192\n",
		"sys/block/pmem0/device/resource": "0x40000000\n",
		"dev/pmem0":                       "",
	})
	dev := filepath.Join(h.root, "dev/pmem0")
	if err := os.Truncate(dev, 4<<20); err != nil {
		t.Fatal(err)
	}
	r = h.run("kept", "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Index != nil || !strings.Contains(doc.IndexError, "no index") {
		t.Errorf("blank region: %+v, %v", doc, err)
	}
	f, err := keptmem.OpenFileDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := keptmem.Write(f, nil, keptmem.WriteOptions{Generation: 7}); err != nil {
		t.Fatal(err)
	}
	f.Close()
	r = h.run("kept", "status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.Index == nil || doc.Index.Sequence != 1 || doc.Index.Generation != 7 || doc.Device != dev {
		t.Errorf("written region: %+v, %v", doc, err)
	}
	if r := h.run("kept", "status"); !strings.Contains(r.stdout, "sequence 1, written by generation 7") {
		t.Errorf("text: %q", r.stdout)
	}
}

// TestStatusKeptCarrier: status says the generation was adopted from the
// kept region, which device and write, and how long it took; a refused
// region is a problem naming why.
func TestStatusKeptCarrier(t *testing.T) {
	h := newHarness(t)
	st := &fastreboot.State{
		Generation: 2, Reason: fastreboot.ReasonUpdate, Carried: 5, Carrier: "kept",
		Kept:          &fastreboot.KeptState{Device: "/dev/pmem0", Region: keptmem.Region{Start: 0x40000000, Size: 64 << 20}, Sequence: 3},
		Rehydrated:    modcache.RehydrateReport{Modules: 5, Bytes: 19 << 20, Unverified: 5},
		RehydrateTime: 230 * time.Millisecond,
	}
	if err := fastreboot.SaveState(h.stateDir, st); err != nil {
		t.Fatal(err)
	}
	r := h.run("status")
	if want := "carrier kept: 5 modules carried in the kept region 64M at 0x40000000 (/dev/pmem0, sequence 3); adopted 5 (19.0 MiB) in 230ms"; !strings.Contains(r.stdout, want) {
		t.Errorf("status has no %q:\n%s", want, r.stdout)
	}
	var doc StatusV1
	r = h.run("status", "--json")
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil || doc.State == nil || doc.State.Carrier != "kept" || doc.State.Kept == nil ||
		doc.State.Kept.Sequence != 3 || doc.State.RehydrateTime != 230*time.Millisecond {
		t.Errorf("status --json state %+v, %v", doc.State, err)
	}
	st.Rehydrated, st.RehydrateError = modcache.RehydrateReport{}, "kept region: /dev/pmem0[0:67108864]: kept region holds no index"
	if err := fastreboot.SaveState(h.stateDir, st); err != nil {
		t.Fatal(err)
	}
	if r := h.run("status"); !strings.Contains(r.stdout, "rehydration: kept region: /dev/pmem0[0:67108864]: kept region holds no index") {
		t.Errorf("status does not say why nothing was adopted:\n%s", r.stdout)
	}
}
