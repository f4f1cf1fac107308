package crashhandler

import (
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

var qemuMapWords = strings.Join(qemuMemoryMap().CmdlineWords(), " ")

func TestCrashCmdline(t *testing.T) {
	for _, tc := range []struct {
		name string
		prod string
		mode Mode
		opts CmdlineOptions
		want string
	}{
		{
			name: "two-stage",
			prod: "console=ttyS0 crashkernel=512M quiet",
			mode: ModeTwoStage,
			want: "console=ttyS0 quiet fastreboot.crash=two-stage reset_devices irqpoll panic=10 fastreboot.orig=crashkernel%3D512M",
		},
		{
			name: "two-stage is the default, extra words, panic timeout, init args",
			prod: "root=/dev/vda crashkernel=1G-4G:192M,4G-:256M nr_cpus=4 panic=30 -- single",
			opts: CmdlineOptions{PanicTimeout: 3, ExtraWords: []string{"loglevel=7"}},
			want: "root=/dev/vda fastreboot.crash=two-stage reset_devices irqpoll panic=3 loglevel=7 " +
				"fastreboot.orig=crashkernel%3D1G-4G:192M,4G-:256M fastreboot.orig=nr_cpus%3D4 fastreboot.orig=panic%3D30 -- single",
		},
		{
			name: "two-stage drops kernel-added words and map words, keeps user memmap",
			prod: `elfcorehdr=0x7f000000 dyndbg="file a.c +p" ` + qemuMapWords + ` memmap=64M$0x100000000 crashkernel=256M`,
			mode: ModeTwoStage,
			opts: CmdlineOptions{PanicTimeout: -1, MemoryMap: qemuMemoryMap()},
			want: `dyndbg="file a.c +p" memmap=64M$0x100000000 fastreboot.crash=two-stage reset_devices irqpoll fastreboot.orig=crashkernel%3D256M`,
		},
		{
			name: "direct adds the map and keeps crashkernel",
			prod: "console=ttyS0 crashkernel=128M memmap=exactmap memmap=1G@0x0 -- init-arg",
			mode: ModeDirect,
			opts: CmdlineOptions{MemoryMap: qemuMemoryMap(), ExtraWords: []string{"x=1"}},
			want: "console=ttyS0 crashkernel=128M " + qemuMapWords + " fastreboot.crash=direct x=1 -- init-arg",
		},
		{
			name: "stale fastreboot words",
			prod: "a fastreboot.crash=direct fastreboot.orig=panic%3D1 b",
			mode: ModeTwoStage,
			want: "a b fastreboot.crash=two-stage reset_devices irqpoll panic=10",
		},
	} {
		got := CrashCmdline(tc.prod, tc.mode, tc.opts)
		if got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
		if strings.Contains(got, "crashkernel=") && tc.mode != ModeDirect {
			t.Errorf("%s: two-stage line contains crashkernel=, which the kernel would parse: %s", tc.name, got)
		}
	}
}

func TestProductionCmdline(t *testing.T) {
	mm := qemuMemoryMap()
	for _, tc := range []struct {
		name  string
		crash string
		mm    memmap.Map
		want  string
	}{
		{
			name:  "two-stage /proc/cmdline",
			crash: "elfcorehdr=0x7f000000 console=ttyS0 quiet fastreboot.crash=two-stage nr_cpus=1 reset_devices irqpoll panic=10 loglevel=7 fastreboot.orig=crashkernel%3D512M fastreboot.orig=irqpoll",
			mm:    mm,
			want:  "console=ttyS0 quiet crashkernel=512M irqpoll " + qemuMapWords,
		},
		{
			name:  "user memmap words follow the map; init args stay last",
			crash: "elfcorehdr=0x1 dmcryptkeys=0x2 memmap=64M$0x100000000 root=/dev/vda fastreboot.crash=two-stage nr_cpus=1 -- single",
			mm:    mm,
			want:  "root=/dev/vda " + qemuMapWords + " memmap=64M$0x100000000 -- single",
		},
		{
			name:  "direct line: old map replaced",
			crash: "elfcorehdr=0x1 console=ttyS0 crashkernel=128M memmap=exactmap memmap=1G@0x0 memmap=1K$0x9fc00 fastreboot.crash=direct x=1",
			mm:    mm,
			want:  "console=ttyS0 crashkernel=128M " + qemuMapWords,
		},
		{
			name:  "no marker: only unambiguous crash words go",
			crash: "elfcorehdr=0x1 console=ttyS0 nr_cpus=1 nr_cpus=2 reset_devices irqpoll panic=10",
			mm:    mm,
			want:  "console=ttyS0 nr_cpus=2 panic=10 " + qemuMapWords,
		},
		{
			name:  "no map known",
			crash: "console=ttyS0 fastreboot.crash=two-stage nr_cpus=1 fastreboot.orig=crashkernel%3D512M",
			want:  "console=ttyS0 crashkernel=512M",
		},
	} {
		if got := ProductionCmdline(tc.crash, tc.mm); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
}

func TestCrashModeOf(t *testing.T) {
	for _, tc := range []struct {
		cmdline string
		want    Mode
		ok      bool
	}{
		{"elfcorehdr=0x1 a " + CrashCmdline("a", ModeTwoStage, CmdlineOptions{}), ModeTwoStage, true},
		{CrashCmdline("a", ModeDirect, CmdlineOptions{MemoryMap: qemuMemoryMap()}), ModeDirect, true},
		{"a b", "", false},
		{"a -- fastreboot.crash=direct", "", false},
	} {
		if got, ok := CrashModeOf(tc.cmdline); got != tc.want || ok != tc.ok {
			t.Errorf("CrashModeOf(%q) = %q, %v; want %q, %v", tc.cmdline, got, ok, tc.want, tc.ok)
		}
	}
}

// The two-stage round trip gives back the production words (order aside)
// plus the memory map.
func FuzzCmdlineRoundTrip(f *testing.F) {
	for _, s := range []string{
		"console=ttyS0 crashkernel=512M quiet",
		"root=/dev/vda panic=5 nr_cpus=2 irqpoll reset_devices -- single user",
		`dyndbg="file a.c +p" crashkernel=1G-4G:192M,4G-:256M`,
		"memmap=64M$0x100000000 a",
		"0crashkernel=", // the kernel's strstr would find it too
		"a=crashkernel=1 b",
	} {
		f.Add(s)
	}
	mm := qemuMemoryMap()
	f.Fuzz(func(t *testing.T, prod string) {
		if strings.Count(prod, `"`)%2 != 0 || strings.ContainsAny(prod, "\x00") {
			t.Skip("unbalanced quotes swallow the rest of a command line")
		}
		for _, w := range splitCmdline(prod) {
			k, v, _ := strings.Cut(w, "=")
			if k == "elfcorehdr" || k == "dmcryptkeys" || k == "fastreboot.crash" || k == "fastreboot.orig" || k == "memmap" || w == "--" || (k == "nr_cpus" && v == "1") {
				t.Skip("words the crash path owns")
			}
		}
		crash := CrashCmdline(prod, ModeTwoStage, CmdlineOptions{MemoryMap: mm})
		if strings.Contains(crash, "crashkernel=") {
			t.Fatalf("crash line %q contains crashkernel=", crash)
		}
		back := ProductionCmdline("elfcorehdr=0x1000 "+crash, mm)
		want := append(splitCmdline(prod), mm.CmdlineWords()...)
		got := splitCmdline(back)
		slices.Sort(want)
		slices.Sort(got)
		if d := cmp.Diff(want, got); d != "" {
			t.Fatalf("round trip of %q via %q = %q (-want +got):\n%s", prod, crash, back, d)
		}
	})
}

// TestCrashCmdlinePhysicalAPIC: a direct crash kernel gets possible_cpus=
// of at least 9 after the marker (physical APIC destination mode, see
// physicalAPICWord), the machine's count where it has more; an unknown
// count, a user's own possible_cpus= or two-stage mode add nothing, and the
// next production line drops it with the other crash-only words.
func TestCrashCmdlinePhysicalAPIC(t *testing.T) {
	for _, tc := range []struct {
		name     string
		prod     string
		mode     Mode
		possible int
		want     string
	}{
		{"4 CPUs", "console=ttyS0", ModeDirect, 4, "possible_cpus=9"},
		{"8 CPUs", "console=ttyS0", ModeDirect, 8, "possible_cpus=9"},
		{"9 CPUs (a direct crash kernel's own)", "console=ttyS0", ModeDirect, 9, "possible_cpus=9"},
		{"16 CPUs", "console=ttyS0", ModeDirect, 16, "possible_cpus=16"},
		{"unknown", "console=ttyS0", ModeDirect, 0, ""},
		{"user's own", "console=ttyS0 possible_cpus=4", ModeDirect, 4, ""},
		{"two-stage", "console=ttyS0", ModeTwoStage, 4, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := CrashCmdline(tc.prod, tc.mode, CmdlineOptions{PossibleCPUs: tc.possible})
			var added []string
			for _, w := range strings.Fields(got[strings.Index(got, markerKey):]) {
				if strings.HasPrefix(w, "possible_cpus=") {
					added = append(added, w)
				}
			}
			if want := strings.Fields(tc.want); !slices.Equal(added, want) {
				t.Errorf("CrashCmdline = %q: %q after the marker, want %q", got, added, want)
			}
			if next := ProductionCmdline(got, nil); tc.want != "" && strings.Contains(next, tc.want) {
				t.Errorf("ProductionCmdline(%q) = %q keeps %s", got, next, tc.want)
			}
		})
	}
}
