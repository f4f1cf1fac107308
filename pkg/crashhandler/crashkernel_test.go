package crashhandler

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

func TestInheritCrashkernel(t *testing.T) {
	twoStage := "elfcorehdr=0x7f000000 " + CrashCmdline(`console=ttyS0 crashkernel=384M dyndbg="file a.c +p"`, ModeTwoStage, CmdlineOptions{})
	for _, tc := range []struct {
		name, next, running, want string
	}{
		{
			name: "appended from the running line",
			next: "console=ttyS0 quiet", running: "BOOT_IMAGE=/vmlinuz root=/dev/vda crashkernel=384M ro",
			want: "console=ttyS0 quiet crashkernel=384M",
		},
		{
			name: "the manifest's own wins",
			next: "console=ttyS0 crashkernel=512M", running: "crashkernel=384M",
			want: "console=ttyS0 crashkernel=512M",
		},
		{
			name: "the manifest's own ,high form wins too",
			next: "a crashkernel=1G,high", running: "crashkernel=384M",
			want: "a crashkernel=1G,high",
		},
		{
			name: "a manifest with only ,low is left alone",
			next: "a crashkernel=128M,low  b", running: "crashkernel=384M",
			want: "a crashkernel=128M,low  b",
		},
		{
			name: "every crashkernel word of the running line, in order, before --",
			next: `init=/init dyndbg="file b.c +p" -- single crashkernel=1M`, running: "crashkernel=1G,high x crashkernel=256M,low",
			want: `init=/init dyndbg="file b.c +p" crashkernel=1G,high crashkernel=256M,low -- single crashkernel=1M`,
		},
		{
			name: "nothing to inherit: unchanged, spacing too",
			next: "a  b\t c", running: "root=/dev/vda -- crashkernel=384M",
			want: "a  b\t c",
		},
		{
			name: "not a crashkernel word",
			next: "a", running: "crashkernel_x=1 a=crashkernel=5M fastreboot.orig=crashkernel%3D9M",
			want: "a",
		},
		{
			name: "a two-stage crash kernel's saved words",
			next: "console=ttyS0", running: twoStage,
			want: "console=ttyS0 crashkernel=384M",
		},
		{
			name: "a direct crash kernel's own word",
			next: "console=ttyS0", running: CrashCmdline("console=ttyS0 crashkernel=128M", ModeDirect, CmdlineOptions{MemoryMap: qemuMemoryMap()}),
			want: "console=ttyS0 crashkernel=128M",
		},
		{
			name: "empty next",
			next: "", running: "crashkernel=384M",
			want: "crashkernel=384M",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := InheritCrashkernel(tc.next, tc.running)
			if got != tc.want {
				t.Errorf("InheritCrashkernel(%q, %q)\n got %q\nwant %q", tc.next, tc.running, got, tc.want)
			}
			if again := InheritCrashkernel(got, tc.running); again != got {
				t.Errorf("not idempotent: %q, then %q", got, again)
			}
		})
	}
}

func TestParseCrashkernel(t *testing.T) {
	const ram = 2 << 30
	for _, tc := range []struct {
		cmdline string
		want    Crashkernel
		err     string
	}{
		{cmdline: "console=ttyS0", want: Crashkernel{}},
		{cmdline: "crashkernel=384M", want: Crashkernel{Word: "crashkernel=384M", Size: 384 << 20}},
		{cmdline: "crashkernel=0x10000000", want: Crashkernel{Word: "crashkernel=0x10000000", Size: 256 << 20}},
		{cmdline: "crashkernel=1g", want: Crashkernel{Word: "crashkernel=1g", Size: 1 << 30}},
		{cmdline: "crashkernel=262144K@16M", want: Crashkernel{Word: "crashkernel=262144K@16M", Size: 256 << 20}},
		{cmdline: "crashkernel=128M crashkernel=256M", want: Crashkernel{Word: "crashkernel=256M", Size: 256 << 20}},
		{cmdline: "crashkernel=1G-4G:192M,4G-:256M", want: Crashkernel{Word: "crashkernel=1G-4G:192M,4G-:256M", Size: 192 << 20}},
		{cmdline: "crashkernel=512M-2G:64M,2G-:128M@16M", want: Crashkernel{Word: "crashkernel=512M-2G:64M,2G-:128M@16M", Size: 128 << 20}},
		{cmdline: "crashkernel=4G-:256M", want: Crashkernel{Word: "crashkernel=4G-:256M"}},
		{cmdline: "crashkernel=1G,high crashkernel=256M,low", want: Crashkernel{Word: "crashkernel=1G,high", Size: 1 << 30, High: true}},
		{cmdline: "crashkernel=384M crashkernel=1G,high", want: Crashkernel{Word: "crashkernel=384M", Size: 384 << 20}},
		{cmdline: "crashkernel=0 crashkernel=1G,high", want: Crashkernel{Word: "crashkernel=1G,high", Size: 1 << 30, High: true}},
		{cmdline: "crashkernel=256M,low", want: Crashkernel{}},
		{cmdline: "a -- crashkernel=384M", want: Crashkernel{}},
		{cmdline: "crashkernel=", want: Crashkernel{Word: "crashkernel="}, err: "memory value expected"},
		{cmdline: "crashkernel=384Q", want: Crashkernel{Word: "crashkernel=384Q"}, err: `unrecognized "Q"`},
		{cmdline: "crashkernel=auto", want: Crashkernel{Word: "crashkernel=auto"}, err: "crashkernel=auto"},
		{cmdline: "crashkernel=2G-1G:64M", want: Crashkernel{Word: "crashkernel=2G-1G:64M"}, err: "end <= start"},
		{cmdline: "crashkernel=1G-:4G", want: Crashkernel{Word: "crashkernel=1G-:4G"}, err: "not below the RAM"},
		{cmdline: "crashkernel=1G:64M", want: Crashkernel{Word: "crashkernel=1G:64M"}, err: "'-' expected"},
		{cmdline: "crashkernel=xG,high", want: Crashkernel{Word: "crashkernel=xG,high"}, err: "SIZE[KMG],high"},
	} {
		got, err := ParseCrashkernel(tc.cmdline, ram)
		if d := cmp.Diff(tc.want, got); d != "" {
			t.Errorf("ParseCrashkernel(%q) (-want +got):\n%s", tc.cmdline, d)
		}
		if (err != nil) != (tc.err != "") || err != nil && !strings.Contains(err.Error(), tc.err) {
			t.Errorf("ParseCrashkernel(%q) error = %v, want one saying %q", tc.cmdline, err, tc.err)
		}
	}
	if _, err := ParseCrashkernel("crashkernel=1G-:256M", 0); !errors.Is(err, errRAMUnknown) {
		t.Errorf("a range form without the RAM size: %v, want errRAMUnknown", err)
	}
}

func TestCheckRearm(t *testing.T) {
	need := Sizing{Mode: ModeTwoStage, Total: 368 << 20}
	for _, tc := range []struct {
		name, next string
		ram        uint64
		suggest    int64
		want       []string // in the message; none: no error
	}{
		{name: "enough", next: "console=ttyS0 crashkernel=384M", ram: 2 << 30},
		{name: "exactly enough", next: "crashkernel=368M", ram: 2 << 30},
		{name: "none", next: "console=ttyS0", ram: 2 << 30, suggest: 384 << 20, want: []string{"no crashkernel=", "add crashkernel=384M", "needs 368 MiB"}},
		{name: "none, no running reservation to suggest", next: "console=ttyS0", ram: 2 << 30, want: []string{"add crashkernel=368M"}},
		{name: "too small", next: "crashkernel=128M", ram: 2 << 30, suggest: 384 << 20, want: []string{"crashkernel=128M", "128 MiB", "less than", "crashkernel=384M"}},
		{name: "range with no match", next: "crashkernel=4G-:512M", ram: 2 << 30, want: []string{"reserves nothing", "no range holds the 2048 MiB"}},
		{name: "range too small", next: "crashkernel=1G-:256M", ram: 2 << 30, want: []string{"256 MiB", "less than"}},
		{name: "malformed", next: "crashkernel=lots", ram: 2 << 30, want: []string{"crashkernel=lots", "reserves nothing", "memory value expected"}},
		{name: "zero", next: "crashkernel=0", ram: 2 << 30, want: []string{"its size is 0"}},
		{name: "high form is the main size", next: "crashkernel=512M,high crashkernel=64M,low", ram: 8 << 30},
		{name: "range form with the RAM unknown is taken as enough", next: "crashkernel=1G-:256M"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckRearm(tc.next, need, tc.ram, tc.suggest)
			if len(tc.want) == 0 {
				if err != nil {
					t.Errorf("CheckRearm(%q) = %v, want nil", tc.next, err)
				}
				return
			}
			var re *RearmError
			if !errors.Is(err, ErrNoRearm) || !errors.As(err, &re) || re.Cmdline != tc.next {
				t.Fatalf("CheckRearm(%q) = %v, want a RearmError for that line", tc.next, err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
		})
	}
}

func TestNextCmdline(t *testing.T) {
	mm := qemuMemoryMap()
	prod := "console=ttyS0 crashkernel=384M"
	two := CrashCmdline(prod, ModeTwoStage, CmdlineOptions{MemoryMap: mm})
	if got, want := NextCmdline("elfcorehdr=0x1 "+two, ModeTwoStage, mm), ProductionCmdline(two, mm); got != want {
		t.Errorf("two-stage next line %q, want what Recover stages %q", got, want)
	}
	if got := NextCmdline(two, ModeTwoStage, mm); !strings.Contains(got, "crashkernel=384M") {
		t.Errorf("two-stage next line %q lost crashkernel=", got)
	}
	direct := CrashCmdline(prod, ModeDirect, CmdlineOptions{MemoryMap: mm})
	if got := NextCmdline(direct, ModeDirect, mm); got != direct {
		t.Errorf("direct next line %q, want the crash line %q", got, direct)
	}
}

// The manifest names no crashkernel= and the running system has none
// either (or one too small): Arm refuses before anything changes, unless
// told to accept it.
func TestArmRefusesNoRearm(t *testing.T) {
	for _, tc := range []struct {
		name    string
		cmdline string
		mode    Mode
		want    []string
	}{
		{name: "two-stage without crashkernel", cmdline: "console=ttyS0", want: []string{"no crashkernel=", "add crashkernel=512M", "needs 336 MiB"}},
		{name: "direct without crashkernel", cmdline: "console=ttyS0", mode: ModeDirect, want: []string{"no crashkernel="}},
		{name: "own crashkernel too small", cmdline: "console=ttyS0 crashkernel=128M", want: []string{"crashkernel=128M", "less than", "336 MiB"}},
		{name: "range form that matches nothing", cmdline: "crashkernel=4G-:512M", want: []string{"crashkernel=4G-:512M", "no range holds"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 512<<20)
			opts := e.opts
			opts.Mode = tc.mode
			st, err := Arm(e.image(t, tc.cmdline), opts)
			if !errors.Is(err, ErrNoRearm) || st != nil {
				t.Fatalf("Arm = %+v, %v; want ErrNoRearm", st, err)
			}
			for _, s := range tc.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			if len(e.kernel.calls) != 0 || e.sysctl(t, SysctlPanicOnOops) != "0" {
				t.Errorf("refused arm loaded %d times, panic_on_oops %s", len(e.kernel.calls), e.sysctl(t, SysctlPanicOnOops))
			}
			if st, err := ReadState(e.state); st != nil || err != nil {
				t.Errorf("state after a refused arm: %+v, %v", st, err)
			}

			opts.AllowNoRearm = true
			st, err = Arm(e.image(t, tc.cmdline), opts)
			if err != nil {
				t.Fatalf("Arm with AllowNoRearm: %v", err)
			}
			if len(st.Warnings) != 1 || !strings.Contains(st.Warnings[0], "could not re-arm") || len(e.kernel.calls) != 1 {
				t.Errorf("armed with warnings %q after %d loads, want one re-arm warning and one load", st.Warnings, len(e.kernel.calls))
			}
		})
	}
}

func TestEstimateImage(t *testing.T) {
	e := newEnv(t, 256<<20)
	est, err := EstimateImage(e.image(t, "console=ttyS0 crashkernel=512M"), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	need := RequiredReservation(ImageSize{debianKernelBytes, findingsInitrdBytes, debianInitSize, debianKernelAlign, 0, 4, 16, 0, false}, ModeTwoStage)
	if est.Sizing != need || est.Crashkernel != fmt.Sprintf("crashkernel=%dM", need.Total>>20) || est.Fits || !est.Supported || est.ReservationBytes != 256<<20 {
		t.Errorf("estimate %+v, want the sizing %+v, not fitting in 256 MiB", est, need)
	}
	if est.NextCrashkernel.Size != 512<<20 || !strings.Contains(est.NextCmdline, "crashkernel=512M") || !strings.Contains(est.Cmdline, "fastreboot.crash=two-stage") {
		t.Errorf("estimate command lines: crash %q, next %q (%+v)", est.Cmdline, est.NextCmdline, est.NextCrashkernel)
	}
	if len(est.Problems) != 1 || !strings.Contains(est.Problems[0], "reservation is 256 MiB") {
		t.Errorf("problems %q, want the reservation only", est.Problems)
	}
	if len(e.kernel.calls) != 0 || e.sysctl(t, SysctlPanicOnOops) != "0" {
		t.Error("EstimateImage changed the system")
	}
	if st, _ := ReadState(e.state); st != nil {
		t.Error("EstimateImage wrote a state")
	}

	o := e.opts
	o.Mode = ModeDirect
	est, err = EstimateImage(e.image(t, "console=ttyS0"), o)
	if err != nil {
		t.Fatal(err)
	}
	if !est.Fits || len(est.Problems) != 1 || !strings.Contains(est.Problems[0], "no crashkernel=") {
		t.Errorf("direct estimate without crashkernel=: fits %v, problems %q", est.Fits, est.Problems)
	}
	if _, err := EstimateImage(Image{}, e.opts); !errors.Is(err, ErrInvalidImage) {
		t.Errorf("EstimateImage without a kernel = %v, want ErrInvalidImage", err)
	}
}

func TestEstimateArmed(t *testing.T) {
	e := newEnv(t, 512<<20)
	if _, err := EstimateArmed(e.opts); !errors.Is(err, ErrNotArmed) {
		t.Fatalf("EstimateArmed with nothing armed = %v, want ErrNotArmed", err)
	}
	st, err := Arm(e.image(t, "console=ttyS0 crashkernel=512M"), e.opts)
	if err != nil {
		t.Fatal(err)
	}
	est, err := EstimateArmed(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if est.Sizing != st.Sizing || est.Name != "v1" || !est.Fits || len(est.Problems) != 0 || est.NextCrashkernel.Size != 512<<20 {
		t.Errorf("estimate of the armed image %+v", est)
	}
	// The reservation shrank (a later kernel) and the state says a line
	// without crashkernel= (armed with AllowNoRearm).
	writeFile(t, filepath.Join(e.root, "sys/kernel/kexec_crash_size"), "134217728\n")
	st.Cmdline = CrashCmdline("console=ttyS0", ModeTwoStage, CmdlineOptions{})
	if err := writeState(e.state, st); err != nil {
		t.Fatal(err)
	}
	est, err = EstimateArmed(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if est.Fits || len(est.Problems) != 2 || !strings.Contains(strings.Join(est.Problems, "\n"), "no crashkernel=") {
		t.Errorf("estimate fits %v, problems %q; want the reservation and the re-arm problems", est.Fits, est.Problems)
	}
}

// ParseCrashkernel reads lines from manifests and /proc/cmdline: it must
// never panic, and a size it returns is one the word asked for.
func FuzzParseCrashkernel(f *testing.F) {
	for _, s := range []string{
		"crashkernel=384M", "crashkernel=1G-4G:192M,4G-:256M@16M", "crashkernel=1G,high crashkernel=256M,low",
		"crashkernel=0x", "crashkernel=-:", "crashkernel=1-2:3,", "crashkernel=18446744073709551615E",
	} {
		f.Add(s, uint64(2<<30))
	}
	f.Fuzz(func(t *testing.T, cmdline string, ram uint64) {
		ck, err := ParseCrashkernel(cmdline, ram)
		if ck.Size < 0 && err == nil {
			t.Errorf("ParseCrashkernel(%q) = %+v", cmdline, ck)
		}
		if ck.Word != "" && !strings.Contains(cmdline, ck.Word) {
			t.Errorf("word %q is not in %q", ck.Word, cmdline)
		}
		if ck.Size > 0 && err != nil {
			t.Errorf("size %d with error %v", ck.Size, err)
		}
	})
}

// TestEstimateReloadUnderLockdown: a two-stage crash kernel with a minimal
// initramfs reloads production with kexec_load; under lockdown it must use
// kexec_file_load, and the estimate counts the kernel and initrd that
// kexec_file_load reads besides the image.
func TestEstimateReloadUnderLockdown(t *testing.T) {
	e := newEnv(t, 256<<20)
	img := e.image(t, "console=ttyS0 crashkernel=512M")
	const reload = 27253192
	img.ReloadInitrdBytes = reload
	open, err := EstimateImage(img, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(e.root, kexecsys.LockdownPath), "none [integrity] confidentiality\n")
	locked, err := EstimateImage(img, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	once := pageAlign(debianKernelBytes) + pageAlign(reload)
	if !open.Sizing.Minimal || locked.Sizing.Reload-open.Sizing.Reload != once || locked.Sizing.Total <= open.Sizing.Total {
		t.Errorf("reload with kexec_load %+v, under lockdown %+v: want the kernel and initrd (%d bytes) counted once more under lockdown", open.Sizing, locked.Sizing, once)
	}
}
