package crashhandler

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// qemuIomem is the top of /proc/iomem of a 2 GiB QEMU q35 guest booted
// with crashkernel=368M, as root reads it.
const qemuIomem = `00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-7ffdefff : System RAM
  01000000-01e00816 : Kernel code
  5e000000-74ffffff : Crash kernel
7ffdf000-7fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
fffc0000-ffffffff : Reserved
`

const ramoopsAt1M = "memmap=1M$0x100000 ramoops.mem_address=0x100000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers"

func TestPstoreBackend(t *testing.T) {
	for _, tc := range []struct {
		name, content string // "" content: no file
		want          string
	}{
		{"no pstore in the kernel", "", ""},
		{"no backend registered", "(null)\n", ""},
		{"ramoops", "ramoops\n", "ramoops"},
		{"efi", "efi_pstore\n", "efi_pstore"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			if tc.content != "" {
				writeFile(t, filepath.Join(root, pstoreBackendParam), tc.content)
			}
			got, err := PstoreBackend(root)
			if err != nil || got != tc.want {
				t.Errorf("PstoreBackend = %q, %v; want %q", got, err, tc.want)
			}
		})
	}
}

func TestPostNotifiers(t *testing.T) {
	root := t.TempDir()
	if PostNotifiers(root) {
		t.Error("no parameter file: PostNotifiers = true")
	}
	writeFile(t, filepath.Join(root, postNotifiersParam), "N\n")
	if PostNotifiers(root) {
		t.Error("N: PostNotifiers = true")
	}
	writeFile(t, filepath.Join(root, postNotifiersParam), "Y\n")
	if !PostNotifiers(root) {
		t.Error("Y: PostNotifiers = false")
	}
}

func TestPlaceRamoops(t *testing.T) {
	holeMap := memmap.Map{
		{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM},
		{Start: 0x100000, End: 0x2fffff, Type: memmap.TypeRAM},
		{Start: 0x300000, End: 0x3fffff, Type: memmap.TypeReserved},
		{Start: 0x400000, End: 0x7ffdefff, Type: memmap.TypeRAM},
	}
	for _, tc := range []struct {
		name  string
		fw    memmap.Map
		iomem string
		want  uint64
		err   error
	}{
		{"just above 1 MiB", qemuMemoryMap(), qemuIomem, 0x100000, nil},
		{"a region the running kernel keeps is skipped",
			qemuMemoryMap(), strings.Replace(qemuIomem, "00100000-7ffdefff : System RAM\n",
				"00100000-0017ffff : System RAM\n00180000-002fffff : Reserved\n00300000-7ffdefff : System RAM\n", 1),
			0x300000, nil},
		{"the crash kernel reservation is skipped",
			qemuMemoryMap(), strings.Replace(qemuIomem, "5e000000-74ffffff : Crash kernel", "00100000-040fffff : Crash kernel", 1),
			0x4100000, nil},
		{"firmware reserved hole", holeMap, qemuIomem, 0x100000, nil},
		{"firmware hole where 1 MiB does not fit",
			memmap.Map{{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM}, {Start: 0x100000, End: 0x17ffff, Type: memmap.TypeReserved}, {Start: 0x180000, End: 0x27ffff, Type: memmap.TypeRAM}, {Start: 0x280000, End: 0x7ffdefff, Type: memmap.TypeRAM}},
			qemuIomem, 0x200000, nil},
		{"iomem read without CAP_SYS_ADMIN", qemuMemoryMap(), "00000000-00000000 : System RAM\n", 0, ErrNoRamoopsRoom},
		{"no RAM above 1 MiB", memmap.Map{{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM}}, qemuIomem, 0, ErrNoRamoopsRoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := PlaceRamoops(tc.fw, mustParseIomem(t, tc.iomem), DefaultRamoopsSize)
			if !errors.Is(err, tc.err) || got != tc.want {
				t.Errorf("PlaceRamoops = %#x, %v; want %#x, %v", got, err, tc.want, tc.err)
			}
		})
	}
}

func TestEvidenceCmdline(t *testing.T) {
	const running7f = "BOOT_IMAGE=/vmlinuz crashkernel=368M memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers quiet"
	for _, tc := range []struct {
		name    string
		next    string
		running string
		backend string
		noIomem bool
		want    string
		wantErr bool
	}{
		{name: "new region", next: "console=ttyS0 quiet", running: "BOOT_IMAGE=/vmlinuz crashkernel=368M",
			want: "console=ttyS0 quiet " + ramoopsAt1M},
		{name: "the running kernel's region is repeated", next: "console=ttyS0", running: running7f,
			want: "console=ttyS0 memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers"},
		{name: "a registered backend needs only the post notifiers", next: "console=ttyS0", running: "crashkernel=368M", backend: "efi_pstore",
			want: "console=ttyS0 crash_kexec_post_notifiers"},
		{name: "the line's own region", next: "quiet memmap=1M$0x5000000 ramoops.mem_address=0x5000000 ramoops.mem_size=0x100000", running: running7f,
			want: "quiet memmap=1M$0x5000000 ramoops.mem_address=0x5000000 ramoops.mem_size=0x100000 crash_kexec_post_notifiers"},
		{name: "post notifiers turned off by the line stay off", next: "ramoops.mem_address=0x5000000 crash_kexec_post_notifiers=0", running: running7f,
			want: "ramoops.mem_address=0x5000000 crash_kexec_post_notifiers=0"},
		{name: "already complete", next: "console=ttyS0 " + ramoopsAt1M, running: "crashkernel=368M",
			want: "console=ttyS0 " + ramoopsAt1M},
		{name: "memmap word present, ramoops words missing", next: "memmap=1M$0x7f000000 quiet", running: running7f,
			want: "memmap=1M$0x7f000000 quiet ramoops.mem_address=0x7f000000 ramoops.mem_size=0x100000 ramoops.record_size=0x40000 crash_kexec_post_notifiers"},
		{name: "words go before the init arguments and after the memory map", next: "memmap=exactmap memmap=2047M@0x100000 quiet -- single", running: "crashkernel=368M",
			want: "memmap=exactmap memmap=2047M@0x100000 quiet " + ramoopsAt1M + " -- single"},
		{name: "no /proc/iomem", next: "quiet", running: "crashkernel=368M", noIomem: true, want: "quiet", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, procCmdline), tc.running+"\n")
			if !tc.noIomem {
				writeFile(t, filepath.Join(root, procIomem), qemuIomem)
			}
			writeFile(t, filepath.Join(root, pstoreBackendParam), "(null)\n")
			if tc.backend != "" {
				writeFile(t, filepath.Join(root, pstoreBackendParam), tc.backend+"\n")
			}
			opts := PstoreOptions{Root: root, MemoryMap: qemuMemoryMap()}
			got, err := EvidenceCmdline(tc.next, opts)
			if (err != nil) != tc.wantErr {
				t.Fatalf("EvidenceCmdline: error %v, want error %v", err, tc.wantErr)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("EvidenceCmdline (-want +got):\n%s", diff)
			}
			again, err := EvidenceCmdline(got, opts)
			if again != got && !tc.wantErr {
				t.Errorf("not idempotent: a second call gave %q (%v)", again, err)
			}
		})
	}
}

// TestCrashCmdlineKeepsRamoops: the crash image inherits the region in both
// modes (the crashed kernel dumped there), and production gets it back.
func TestCrashCmdlineKeepsRamoops(t *testing.T) {
	mm := qemuMemoryMap()
	prod := "console=ttyS0 crashkernel=368M " + ramoopsAt1M
	for _, mode := range []Mode{ModeDirect, ModeTwoStage} {
		crash := CrashCmdline(prod, mode, CmdlineOptions{MemoryMap: mm})
		words := splitCmdline(crash)
		for _, w := range strings.Fields(ramoopsAt1M) {
			if !hasWord(words, w) {
				t.Errorf("%s crash line %q lacks %q", mode, crash, w)
			}
		}
		if mode == ModeDirect {
			exact, kept := -1, -1
			for i, w := range words {
				switch w {
				case "memmap=exactmap":
					exact = i
				case "memmap=1M$0x100000":
					kept = i
				}
			}
			if exact < 0 || kept < exact {
				t.Errorf("direct crash line %q: the region's memmap= word must follow memmap=exactmap", crash)
			}
		}
		back := ProductionCmdline("elfcorehdr=0x5e000000 "+crash, mm)
		for _, w := range strings.Fields(ramoopsAt1M) {
			if !hasWord(splitCmdline(back), w) {
				t.Errorf("%s: production line %q lacks %q", mode, back, w)
			}
		}
	}
}

// fakeModules records what finit_module would have loaded; loading ramoops
// registers backend (if set).
type fakeModules struct {
	root    string
	backend string
	err     error
	calls   []string
}

func (m *fakeModules) LoadModule(f *os.File, params string) error {
	m.calls = append(m.calls, strings.TrimSpace(filepath.Base(f.Name())+" "+params))
	if m.err != nil {
		return m.err
	}
	if moduleName(f.Name()) == "ramoops" && m.backend != "" {
		return os.WriteFile(filepath.Join(m.root, pstoreBackendParam), []byte(m.backend+"\n"), 0o644)
	}
	return nil
}

func TestLoadRamoops(t *testing.T) {
	const rel = "6.1.0-48-amd64"
	const dep = "kernel/fs/pstore/ramoops.ko: kernel/lib/reed_solomon/reed_solomon.ko\nkernel/lib/reed_solomon/reed_solomon.ko:\nkernel/fs/pstore/pstore_blk.ko: kernel/fs/pstore/pstore_zone.ko\n"
	for _, tc := range []struct {
		name     string
		cmdline  string
		backend  string // registered before
		loaded   []string
		modDir   string // "" lib/modules; "-" none
		register string
		loadErr  error
		want     RamoopsLoad
		calls    []string
		err      string
	}{
		{name: "no words", cmdline: "quiet", want: RamoopsLoad{Skipped: "no ramoops.* words on the command line"}},
		{name: "backend already there", cmdline: ramoopsAt1M, backend: "efi_pstore",
			want: RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000", Backend: "efi_pstore", Skipped: "pstore backend efi_pstore already registered"}},
		{name: "loads the dependency first", cmdline: ramoopsAt1M, register: "ramoops",
			want:  RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000", Backend: "ramoops", Loaded: []string{"reed_solomon.ko", "ramoops.ko"}},
			calls: []string{"reed_solomon.ko", "ramoops.ko mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}},
		{name: "a loaded dependency is skipped, /usr/lib/modules", cmdline: ramoopsAt1M, register: "ramoops", loaded: []string{"reed_solomon"}, modDir: "usr/lib/modules",
			want:  RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000", Backend: "ramoops", Loaded: []string{"ramoops.ko"}},
			calls: []string{"ramoops.ko mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}},
		{name: "no backend afterwards", cmdline: ramoopsAt1M, calls: []string{"reed_solomon.ko", "ramoops.ko mem_address=0x100000 mem_size=0x100000 record_size=0x40000"},
			want: RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000", Loaded: []string{"reed_solomon.ko", "ramoops.ko"}},
			err:  "no pstore backend registered afterwards"},
		{name: "ramoops loaded already, no backend", cmdline: ramoopsAt1M, loaded: []string{"ramoops"},
			want: RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}, err: "the module is loaded already"},
		{name: "finit_module fails", cmdline: ramoopsAt1M, loadErr: errors.New("EPERM"), calls: []string{"reed_solomon.ko"},
			want: RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}, err: "module reed_solomon"},
		{name: "no modules.dep", cmdline: ramoopsAt1M, modDir: "-",
			want: RamoopsLoad{Params: "mem_address=0x100000 mem_size=0x100000 record_size=0x40000"}, err: "no modules.dep for release " + rel},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := t.TempDir()
			writeFile(t, filepath.Join(root, procCmdline), tc.cmdline+"\n")
			writeFile(t, filepath.Join(root, procOSRelease), rel+"\n")
			writeFile(t, filepath.Join(root, pstoreBackendParam), "(null)\n")
			if tc.backend != "" {
				writeFile(t, filepath.Join(root, pstoreBackendParam), tc.backend+"\n")
			}
			for _, m := range tc.loaded {
				if err := os.MkdirAll(filepath.Join(root, "sys/module", m), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			switch tc.modDir {
			case "-":
			default:
				dir := filepath.Join(root, "lib/modules", rel)
				if tc.modDir != "" {
					dir = filepath.Join(root, tc.modDir, rel)
				}
				writeFile(t, filepath.Join(dir, "modules.dep"), dep)
				for _, ko := range []string{"kernel/fs/pstore/ramoops.ko", "kernel/lib/reed_solomon/reed_solomon.ko"} {
					writeFile(t, filepath.Join(dir, ko), "\x7fELF")
				}
			}
			mods := &fakeModules{root: root, backend: tc.register, err: tc.loadErr}
			got, err := LoadRamoops(PstoreOptions{Root: root, Modules: mods})
			if tc.err == "" && err != nil || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Fatalf("LoadRamoops: error %v, want one containing %q", err, tc.err)
			}
			for i, p := range got.Loaded {
				got.Loaded[i] = filepath.Base(p)
			}
			if diff := cmp.Diff(&tc.want, got); diff != "" {
				t.Errorf("report (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.calls, mods.calls); diff != "" {
				t.Errorf("finit_module calls (-want +got):\n%s", diff)
			}
		})
	}
}

func TestMountPstore(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, PstoreDir)
	var mounted []string
	opts := PstoreOptions{Root: root, Mount: func(t string) error { mounted = append(mounted, t); return nil }}

	writeFile(t, filepath.Join(root, procMounts), "sysfs /sys sysfs rw 0 0\n")
	did, err := MountPstore(opts)
	if err != nil || !did || len(mounted) != 1 || mounted[0] != target {
		t.Errorf("not mounted: MountPstore = %v, %v, mount calls %q; want one on %s", did, err, mounted, target)
	}

	mounted = nil
	writeFile(t, filepath.Join(root, procMounts), "sysfs /sys sysfs rw 0 0\npstore "+target+" pstore rw 0 0\n")
	if did, err := MountPstore(opts); err != nil || did || len(mounted) != 0 {
		t.Errorf("mounted already: MountPstore = %v, %v, mount calls %q; want none", did, err, mounted)
	}

	writeFile(t, filepath.Join(root, procMounts), "")
	opts.Mount = func(string) error { return fs.ErrPermission }
	if _, err := MountPstore(opts); !errors.Is(err, fs.ErrPermission) || !strings.Contains(err.Error(), target) {
		t.Errorf("mount fails: MountPstore error %v, want one naming %s", err, target)
	}
}

func TestModuleName(t *testing.T) {
	for in, want := range map[string]string{
		"kernel/fs/pstore/ramoops.ko":                "ramoops",
		"kernel/drivers/firmware/efi/efi-pstore.ko":  "efi_pstore",
		"kernel/lib/reed_solomon/reed_solomon.ko.xz": "reed_solomon",
		"kernel/drivers/platform/chrome/x-y.ko.zst":  "x_y",
	} {
		if got := moduleName(in); got != want {
			t.Errorf("moduleName(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzPlaceRamoops: /proc/iomem and command lines come from outside; no
// input may panic, and a placed region is System RAM above 1 MiB.
func FuzzPlaceRamoops(f *testing.F) {
	f.Add(qemuIomem, "quiet memmap=1M$0x7f000000 ramoops.mem_address=0x7f000000")
	f.Add("00100000-0010ffff : System RAM\n", "ramoops.mem_address=0x")
	f.Fuzz(func(t *testing.T, iomem, cmdline string) {
		addr, err := PlaceRamoops(qemuMemoryMap(), mustParseIomem(t, iomem), DefaultRamoopsSize)
		if err == nil && (addr < ramoopsFloor || addr%ramoopsAlign != 0) {
			t.Errorf("PlaceRamoops = %#x", addr)
		}
		words := splitCmdline(cmdline)
		if a, ok := ramoopsAddress(words); ok {
			keptRegionWords(words, a)
		}
	})
}

func mustParseIomem(t testing.TB, s string) memmap.Iomem {
	t.Helper()
	m, err := memmap.ParseIomem(strings.NewReader(s))
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestCrashCmdlineKeepsKeptRegion: the kept memory region's word
// (memmap=SIZE!START, pkg/keptmem) stays on the crash line of both modes,
// in direct mode after memmap=exactmap and the map (exactmap would erase
// it, and the recorded map lists the region as RAM: the later ! word makes
// it persistent memory again), and on the production line after a crash.
func TestCrashCmdlineKeepsKeptRegion(t *testing.T) {
	const kept = "memmap=64M!0x40000000"
	mm := qemuMemoryMap()
	prod := "console=ttyS0 crashkernel=368M " + kept + " fastreboot.preserve=2M"
	for _, mode := range []Mode{ModeDirect, ModeTwoStage} {
		crash := CrashCmdline(prod, mode, CmdlineOptions{MemoryMap: mm})
		words := splitCmdline(crash)
		if !hasWord(words, kept) || !hasWord(words, "fastreboot.preserve=2M") {
			t.Errorf("%s crash line %q lacks the kept region's words", mode, crash)
		}
		if mode == ModeDirect {
			exact, region, lastMap := -1, -1, -1
			for i, w := range words {
				switch {
				case w == "memmap=exactmap":
					exact = i
				case w == kept:
					region = i
				case strings.HasPrefix(w, "memmap=") && strings.Contains(w, "@"):
					lastMap = i
				}
			}
			if exact < 0 || region < exact || region < lastMap {
				t.Errorf("direct crash line %q: %s must follow memmap=exactmap and the map's words", crash, kept)
			}
		}
		back := ProductionCmdline("elfcorehdr=0x5e000000 "+crash, mm)
		if !hasWord(splitCmdline(back), kept) {
			t.Errorf("%s: production line %q lacks %q", mode, back, kept)
		}
	}
}
