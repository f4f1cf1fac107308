package fastreboot

import (
	"context"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// testRegion is the kept region of these tests: 4 MiB at 1 GiB.
var testRegion = keptmem.Region{Start: 0x40000000, Size: 4 << 20}

// newPmemFile makes the region's "device": a regular file of its size.
func newPmemFile(t *testing.T, r keptmem.Region) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "pmem0")
	if err := os.WriteFile(p, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(p, int64(r.Size)); err != nil {
		t.Fatal(err)
	}
	return p
}

// addPmem gives root the sysfs files of /dev/pmem0 for r, and root/dev/pmem0
// a link to dev (the same bytes across generations, as the region is).
func addPmem(t *testing.T, root, dev string, r keptmem.Region) {
	t.Helper()
	files := map[string]string{
		"sys/block/pmem0/size":            strconv.FormatUint(r.Size/512, 10) + "\n",
		"sys/block/pmem0/device/resource": "0x" + strconv.FormatUint(r.Start, 16) + "\n",
	}
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(root, "dev"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(dev, filepath.Join(root, "dev/pmem0")); err != nil {
		t.Fatal(err)
	}
}

// keptRoot is a running system whose command line is cmdline and that has
// /dev/pmem0 for testRegion (when dev is not "").
func keptRoot(t *testing.T, cmdline, dev string) string {
	t.Helper()
	files := tree(map[string]string{"proc/cmdline": cmdline + "\n", pathIomem: keptIomem})
	maps.Copy(files, keptFirmwareMap)
	root := fakeTree(t, files)
	if dev != "" {
		addPmem(t, root, dev, testRegion)
	}
	return root
}

const keptCmdline = "console=ttyS0 memmap=4M!0x40000000"

// keptFirmwareMap is keptRoot's firmware memory map: RAM below 640 KiB,
// from 1 MiB to the 2 GiB PCI hole (the last 128 KiB reserved) and from
// 4 GiB to 6 GiB.
var keptFirmwareMap = map[string]string{
	"sys/firmware/memmap/0/start": "0x0\n", "sys/firmware/memmap/0/end": "0x9fbff\n", "sys/firmware/memmap/0/type": "System RAM\n",
	"sys/firmware/memmap/1/start": "0x9fc00\n", "sys/firmware/memmap/1/end": "0x9ffff\n", "sys/firmware/memmap/1/type": "Reserved\n",
	"sys/firmware/memmap/2/start": "0x100000\n", "sys/firmware/memmap/2/end": "0x7ffdffff\n", "sys/firmware/memmap/2/type": "System RAM\n",
	"sys/firmware/memmap/3/start": "0x7ffe0000\n", "sys/firmware/memmap/3/end": "0x7fffffff\n", "sys/firmware/memmap/3/type": "Reserved\n",
	"sys/firmware/memmap/4/start": "0x100000000\n", "sys/firmware/memmap/4/end": "0x17fffffff\n", "sys/firmware/memmap/4/type": "System RAM\n",
}

// keptIomem is keptRoot's /proc/iomem: the running kernel keeps testRegion,
// a 1 MiB ramoops region at 512 MiB and a crash kernel reservation.
const keptIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
00100000-1fffffff : System RAM
  02000000-02e00fff : Kernel code
20000000-200fffff : Reserved
20100000-3fffffff : System RAM
  30000000-3fffffff : Crash kernel
40000000-403fffff : Persistent Memory (legacy)
40400000-7ffdffff : System RAM
7ffe0000-7fffffff : Reserved
100000000-17fffffff : System RAM
`

// TestStageRegionPlacement: an image whose command line keeps a region
// the running system does not is refused, naming the conflict and loading
// nothing, when the region is not System RAM of the firmware map, covers
// what the running kernel holds back, or the kernel's load range; a region
// in free RAM, or over the running region (moved or grown), is staged.
func TestStageRegionPlacement(t *testing.T) {
	for _, tc := range []struct {
		name, region string
		want         string // "" staged
	}{
		{"firmware reserved", "4M!0x7fe00000", "covers Reserved memory 0x7ffe0000-0x80000000 of the firmware memory map"},
		{"PCI hole", "4M!0x80000000", "0x80000000-0x80400000 is not RAM in the firmware memory map"},
		{"crash kernel", "4M!0x3fe00000", "overlaps 0x30000000-0x40000000: crash kernel reservation"},
		{"ramoops", "4M!0x20000000", "overlaps 0x20000000-0x20100000: kept by the running kernel: Reserved"},
		{"kernel load range", "4M!0x1000000", "the kernel's load range without KASLR"},
		{"low memory", "2M!0x200000", "low memory"},
		{"free RAM", "4M!0x50000000", ""},
		{"above 4 GiB", "64M!0x140000000", ""},
		{"over the running region", "8M!0x40000000", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			im := testimage.Default()
			im.Cmdline += " memmap=" + tc.region
			dev := newPmemFile(t, testRegion)
			loader := &fakeLoader{}
			m, dir := im.WriteTempDir(t)
			mc := New(newCache(t), Options{Root: keptRoot(t, keptCmdline, dev), Loader: loader, Logger: testLogger(t)})
			rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate})
			if tc.want == "" {
				if err != nil || rep.Carrier != CarryInitrd {
					t.Fatalf("stage: carrier %v, %v; want it staged (carried in the initrd: the region is not the running one)", rep.Carrier, err)
				}
				return
			}
			r, _, _ := keptmem.ParseCmdline("memmap=" + tc.region)
			if !errors.Is(err, keptmem.ErrOverlap) || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), r.String()) {
				t.Fatalf("stage: %v; want ErrOverlap naming %s and saying %q", err, r, tc.want)
			}
			if n, _ := loader.state(); n != 0 {
				t.Errorf("stage refused, yet %d image(s) loaded", n)
			}
			t.Logf("refused: %v", err)
		})
	}
}

// stageKept stages im from a fresh cache with carry on a system keeping
// testRegion on dev, and returns the loaded initrd and the report.
//
// The image's command line inherits the running region, as the daemon's
// images do (crashpath.Path.ProductionManifest).
func stageKept(t *testing.T, im testimage.Image, cmdline, dev string, carry Carry) (StageReport, []byte, error) {
	t.Helper()
	var err error
	if im.Cmdline, err = keptmem.InheritCmdline(im.Cmdline, cmdline); err != nil {
		t.Fatal(err)
	}
	return stageImage(t, im, cmdline, dev, carry)
}

// stageImage is stageKept without the inheritance.
func stageImage(t *testing.T, im testimage.Image, cmdline, dev string, carry Carry) (StageReport, []byte, error) {
	t.Helper()
	m, dir := im.WriteTempDir(t)
	loader := &fakeLoader{}
	mc := New(newCache(t), Options{Root: keptRoot(t, cmdline, dev), Loader: loader, Logger: testLogger(t)})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Reason: ReasonUpdate, Carry: carry})
	if err != nil {
		return rep, nil, err
	}
	_, img := loader.state()
	return rep, img.initrd, nil
}

// TestStageKept: the kept carrier writes the modules to the region, the
// handoff piece holds handoff.json alone with Kept naming the index, and
// the next generation adopts them from the region, reading no storage.
func TestStageKept(t *testing.T) {
	im := testimage.Default()
	dev := newPmemFile(t, testRegion)
	rep, initrd, err := stageKept(t, im, keptCmdline, dev, CarryAuto)
	if err != nil {
		t.Fatal(err)
	}
	total := testimage.TotalSize(im.Manifest())
	if rep.Carrier != CarryKept || rep.CarrierWarning != "" || rep.Kept == nil || !rep.Kept.Written ||
		rep.Kept.Modules != 4 || rep.Kept.Bytes != total || rep.Kept.Sequence != 1 || rep.Kept.Device == "" {
		t.Fatalf("report: carrier %v (%q), kept %+v; want kept, 4 modules of %d bytes, sequence 1", rep.Carrier, rep.CarrierWarning, rep.Kept, total)
	}
	h, mods := handoffFromPiece(t, initrd[len(padded(im)):])
	if len(mods) != 0 || len(h.Carried) != 0 || h.Kept == nil || h.Kept.Sequence != 1 || h.Kept.Modules != 4 || h.Kept.Region != testRegion {
		t.Fatalf("handoff: %d module files, carried %v, kept %+v", len(mods), h.Carried, h.Kept)
	}
	if rep.HandoffBytes > 16<<10 || rep.CopiedInUser != 0 {
		t.Errorf("handoff piece %d bytes, %d copied in user space; want a small piece and no carried copy", rep.HandoffBytes, rep.CopiedInUser)
	}

	root := unpackHandoff(t, initrd, rep.HandoffBytes)
	addPmem(t, root, dev, testRegion)
	cache := newCache(t)
	st, err := Resume(context.Background(), cache, ResumeOptions{Root: root, StateDir: t.TempDir(), Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	if st.Carrier != "kept" || st.RehydrateError != "" || st.Carried != 4 ||
		st.Rehydrated != (modcache.RehydrateReport{Modules: 4, Bytes: total, Unverified: 4}) || st.Kept == nil || st.Kept.Sequence != 1 {
		t.Fatalf("state: carrier %q, error %q, carried %d, rehydrated %+v, kept %+v", st.Carrier, st.RehydrateError, st.Carried, st.Rehydrated, st.Kept)
	}
	vr, err := cache.VerifyPending(context.Background())
	if err != nil || vr.Modules != 4 || len(vr.Bad) != 0 {
		t.Errorf("VerifyPending = %+v, %v; want 4 good modules", vr, err)
	}
	if s := cache.Stats(); s.BytesRead != 0 || s.Modules != 4 {
		t.Errorf("cache stats %+v: want 4 modules and no storage read", s)
	}
}

// TestResumeKeptRefused: an index that is not the one the handoff names
// (written again since, torn, or gone with its device) is not adopted, and
// the state says why; a module byte flipped in the region is adopted but
// fails its check and is dropped.
func TestResumeKeptRefused(t *testing.T) {
	im := testimage.Default()
	for _, tc := range []struct {
		name   string
		spoil  func(t *testing.T, dev string)
		noDev  bool
		want   error
		substr string
	}{
		{name: "stale", spoil: func(t *testing.T, dev string) {
			// Another stage wrote the region since: sequence 2.
			f, err := keptmem.OpenFileDevice(dev)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			w, _ := keptmem.Window(f, 0, f.Size())
			if _, err := keptmem.Write(w, nil, keptmem.WriteOptions{}); err != nil {
				t.Fatal(err)
			}
		}, want: keptmem.ErrCorrupt, substr: "written again since"},
		{name: "torn", spoil: func(t *testing.T, dev string) { writeAt(t, dev, 0, []byte{0}) }, want: keptmem.ErrNoIndex},
		{name: "header checksum", spoil: func(t *testing.T, dev string) { writeAt(t, dev, 20, []byte{0xff}) }, want: keptmem.ErrCorrupt},
		{name: "no device", noDev: true, want: keptmem.ErrNoDevice},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := newPmemFile(t, testRegion)
			rep, initrd, err := stageKept(t, im, keptCmdline, dev, CarryKept)
			if err != nil {
				t.Fatal(err)
			}
			if tc.spoil != nil {
				tc.spoil(t, dev)
			}
			root := unpackHandoff(t, initrd, rep.HandoffBytes)
			if !tc.noDev {
				addPmem(t, root, dev, testRegion)
			}
			cache := newCache(t)
			st, err := Resume(context.Background(), cache, ResumeOptions{Root: root, StateDir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			if st.Carrier != "kept" || st.Rehydrated.Modules != 0 || cache.Stats().Modules != 0 ||
				!strings.Contains(st.RehydrateError, tc.want.Error()) || !strings.Contains(st.RehydrateError, tc.substr) {
				t.Errorf("state: carrier %q, rehydrated %+v, error %q; want nothing adopted and an error with %q", st.Carrier, st.Rehydrated, st.RehydrateError, tc.want)
			}
		})
	}

	t.Run("flipped module byte", func(t *testing.T) {
		dev := newPmemFile(t, testRegion)
		rep, initrd, err := stageKept(t, im, keptCmdline, dev, CarryKept)
		if err != nil {
			t.Fatal(err)
		}
		writeAt(t, dev, keptmem.DataStart+100, []byte{0x5a}) // inside the first module
		root := unpackHandoff(t, initrd, rep.HandoffBytes)
		addPmem(t, root, dev, testRegion)
		cache := newCache(t)
		st, err := Resume(context.Background(), cache, ResumeOptions{Root: root, StateDir: t.TempDir()})
		if err != nil || st.Rehydrated.Modules != 4 {
			t.Fatalf("Resume: %+v, %v; want 4 adopted unverified", st.Rehydrated, err)
		}
		vr, err := cache.VerifyPending(context.Background())
		if err == nil || len(vr.Bad) != 1 || cache.Stats().Modules != 3 || len(cache.Stats().Adoption.Failures) != 1 {
			t.Fatalf("VerifyPending = %+v, %v; stats %+v: want the flipped module dropped", vr, err, cache.Stats())
		}
		// It is read again from storage.
		m, dir := im.WriteTempDir(t)
		sr, err := cache.Sync(context.Background(), m, modcache.DirSource(dir))
		if err != nil || sr.Misses != 1 || sr.Hits != 3 {
			t.Errorf("Sync = %+v, %v; want the dropped module read again", sr, err)
		}
	})
}

func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

// TestStageKeptFallback: auto falls back to the initrd, saying why, when
// the region's device is missing or the modules do not fit, and silently
// when the command line keeps no region; kept fails then, loading nothing.
func TestStageKeptFallback(t *testing.T) {
	big := testimage.Default()
	big.Initrds[2].Data = testimage.Cpio(testimage.File{Name: "big", Data: testimage.Bytes(3<<20, 3)})
	for _, tc := range []struct {
		name    string
		im      testimage.Image
		cmdline string
		dev     bool
		why     string
	}{
		{"no region", testimage.Default(), "console=ttyS0", true, "keeps no region"},
		{"no device", testimage.Default(), keptCmdline, false, keptmem.ErrNoDevice.Error()},
		{"too small", big, keptCmdline + " fastreboot.preserve=2M", true, keptmem.ErrTooSmall.Error()},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dev := ""
			if tc.dev {
				dev = newPmemFile(t, testRegion)
			}
			rep, initrd, err := stageKept(t, tc.im, tc.cmdline, dev, CarryAuto)
			if err != nil {
				t.Fatal(err)
			}
			// No region configured is the usual case: no warning then.
			wantWarning := tc.name != "no region"
			if rep.Carrier != CarryInitrd || rep.Kept != nil || strings.Contains(rep.CarrierWarning, tc.why) != wantWarning ||
				(rep.CarrierWarning != "") != wantWarning || rep.CarriedModules != 4 {
				t.Errorf("auto: carrier %v, kept %+v, warning %q; want initrd and a warning with %q", rep.Carrier, rep.Kept, rep.CarrierWarning, tc.why)
			}
			h, mods := handoffFromPiece(t, initrd[len(padded(tc.im)):])
			if h.Kept != nil || len(mods) != 4 {
				t.Errorf("auto: handoff kept %+v, %d module files", h.Kept, len(mods))
			}
			_, _, err = stageKept(t, tc.im, tc.cmdline, dev, CarryKept)
			if err == nil || !strings.Contains(err.Error(), tc.why) {
				t.Errorf("kept: err = %v, want one with %q", err, tc.why)
			}
		})
	}
}

// TestBuildImageKeptCarriesInInitrd: a crash image carries in its initrd
// whatever the carrier asked (the crash kernel loads no nd_pmem).
func TestBuildImageKeptCarriesInInitrd(t *testing.T) {
	im := testimage.Default()
	m, dir := im.WriteTempDir(t)
	dev := newPmemFile(t, testRegion)
	mc := New(newCache(t), Options{Root: keptRoot(t, keptCmdline, dev), Loader: &fakeLoader{}})
	img, err := mc.BuildImage(context.Background(), m, modcache.DirSource(dir), BuildOptions{Reason: ReasonCrash, Carry: CarryKept})
	if err != nil {
		t.Fatal(err)
	}
	defer img.Close()
	if img.Report.Carrier != CarryInitrd || img.Report.CarriedModules != 4 || img.Report.Kept != nil {
		t.Errorf("crash image: carrier %v, %d carried, kept %+v", img.Report.Carrier, img.Report.CarriedModules, img.Report.Kept)
	}
}

func TestParseCarry(t *testing.T) {
	for _, s := range []string{"auto", "kept", "initrd", "none"} {
		c, err := ParseCarry(s)
		if err != nil || c.String() != s {
			t.Errorf("ParseCarry(%q) = %v, %v", s, c, err)
		}
	}
	if _, err := ParseCarry("pmem"); err == nil {
		t.Error("ParseCarry(pmem) = nil error")
	}
	var c Carry
	if err := c.UnmarshalText([]byte("kept")); err != nil || c != CarryKept {
		t.Errorf("UnmarshalText(kept) = %v, %v", c, err)
	}
}

// TestStageKeptDryRun: a dry run resolves the kept carrier but writes
// nothing to the region.
func TestStageKeptDryRun(t *testing.T) {
	im := testimage.Default()
	im.Cmdline += " memmap=4M!0x40000000"
	m, dir := im.WriteTempDir(t)
	dev := newPmemFile(t, testRegion)
	mc := New(newCache(t), Options{Root: keptRoot(t, keptCmdline, dev), Loader: &fakeLoader{}})
	rep, err := mc.Stage(context.Background(), m, modcache.DirSource(dir), StageOptions{Carry: CarryKept, DryRun: true})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Carrier != CarryKept || rep.Kept == nil || rep.Kept.Written || rep.Kept.Modules != 4 {
		t.Errorf("dry run: carrier %v, kept %+v", rep.Carrier, rep.Kept)
	}
	f, err := keptmem.OpenFileDevice(dev)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := keptmem.Open(f); !errors.Is(err, keptmem.ErrNoIndex) {
		t.Errorf("the region after a dry run: %v, want ErrNoIndex (blank)", err)
	}
}

// TestStageKeptNeedsInheritedRegion: an image whose command line does not
// keep the running region (or keeps another layout) would use it as RAM:
// auto carries in the initrd, saying so, and kept fails.
func TestStageKeptNeedsInheritedRegion(t *testing.T) {
	for name, extra := range map[string]string{
		"none":           "",
		"other preserve": " memmap=4M!0x40000000 fastreboot.preserve=2M",
		"another region": " memmap=4M!0x50000000",
	} {
		t.Run(name, func(t *testing.T) {
			im := testimage.Default()
			im.Cmdline += extra
			dev := newPmemFile(t, testRegion)
			rep, _, err := stageImage(t, im, keptCmdline, dev, CarryAuto)
			if err != nil || rep.Carrier != CarryInitrd || !strings.Contains(rep.CarrierWarning, "does not keep it") {
				t.Errorf("auto: carrier %v, warning %q, %v", rep.Carrier, rep.CarrierWarning, err)
			}
			if _, _, err := stageImage(t, im, keptCmdline, dev, CarryKept); err == nil || !strings.Contains(err.Error(), "does not keep it") {
				t.Errorf("kept: err = %v", err)
			}
		})
	}
}

// TestResumeKeptRestarted: a daemon restarted within a kept generation
// adopts the carried modules from the region again (the first process's
// cache died with it); once the region's index is spoiled, a restart
// adopts nothing and counts the modules lost, as with the initrd carrier.
func TestResumeKeptRestarted(t *testing.T) {
	im := testimage.Default()
	dev := newPmemFile(t, testRegion)
	rep, initrd, err := stageKept(t, im, keptCmdline, dev, CarryAuto)
	if err != nil {
		t.Fatal(err)
	}
	root := unpackHandoff(t, initrd, rep.HandoffBytes)
	addPmem(t, root, dev, testRegion)
	stateDir := t.TempDir()
	resume := func() (*State, *modcache.Cache) {
		t.Helper()
		cache := newCache(t)
		st, err := Resume(context.Background(), cache, ResumeOptions{Root: root, StateDir: stateDir, Logger: testLogger(t)})
		if err != nil {
			t.Fatal(err)
		}
		return st, cache
	}
	first, _ := resume()
	if first.Rehydrated.Modules != 4 || !first.Restarted.IsZero() {
		t.Fatalf("first Resume: rehydrated %+v, restarted %v", first.Rehydrated, first.Restarted)
	}

	again, cache := resume()
	total := testimage.TotalSize(im.Manifest())
	if again.Restarted.IsZero() || again.CarriedLost != 0 || again.RehydrateError != "" ||
		again.Rehydrated != (modcache.RehydrateReport{Modules: 4, Bytes: total, Unverified: 4}) || again.Generation != first.Generation {
		t.Fatalf("restarted Resume: rehydrated %+v, lost %d, error %q, restarted %v; want the 4 modules adopted again",
			again.Rehydrated, again.CarriedLost, again.RehydrateError, again.Restarted)
	}
	if vr, err := cache.VerifyPending(context.Background()); err != nil || vr.Modules != 4 || len(vr.Bad) != 0 {
		t.Errorf("VerifyPending after the restart = %+v, %v; want 4 good modules", vr, err)
	}
	if s := cache.Stats(); s.BytesRead != 0 || s.Modules != 4 {
		t.Errorf("cache stats after the restart %+v: want 4 modules and no storage read", s)
	}

	// A stage (or anything) wrote the region again: its header no longer
	// matches the index the handoff names.
	f, err := os.OpenFile(dev, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt(make([]byte, 512), 0); err != nil {
		t.Fatal(err)
	}
	f.Close()
	third, cache := resume()
	if third.Rehydrated != (modcache.RehydrateReport{}) || third.CarriedLost != 4 || third.Restarted.IsZero() {
		t.Fatalf("restart after the region was spoiled: rehydrated %+v, lost %d; want nothing adopted and 4 lost", third.Rehydrated, third.CarriedLost)
	}
	if s := cache.Stats(); s.Modules != 0 {
		t.Errorf("cache after the refused re-adoption holds %d modules, want 0", s.Modules)
	}
}
