package crashhandler

import (
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/google/go-cmp/cmp"
)

// fakeKernel simulates the kernel's crash kexec state in a fake root: a
// successful ON_CRASH load sets kexec_crash_loaded, an unload clears it.
type fakeKernel struct {
	t     *testing.T
	root  string
	err   error // returned by the next FileLoad calls
	calls []loadCall
}

type loadCall struct {
	Kernel, Initrd string
	Cmdline        string
	Flags          int
}

func (k *fakeKernel) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	name := func(f *os.File) string {
		if f == nil {
			return ""
		}
		return filepath.Base(f.Name())
	}
	k.calls = append(k.calls, loadCall{name(kernel), name(initrd), cmdline, flags})
	if k.err != nil {
		return k.err
	}
	state := "1"
	if flags&kexecFileUnload != 0 {
		state = "0"
	}
	writeFile(k.t, filepath.Join(k.root, "sys/kernel/kexec_crash_loaded"), state+"\n")
	return nil
}

// env is a fake system: root with /sys and /proc, a state dir, a kernel.
type env struct {
	root, state string
	kernel      *fakeKernel
	opts        Options
}

var allFaults = []string{
	SysctlUnknownNMIPanic, SysctlPanicOnUnrecovNMI, SysctlPanicOnIONMI, SysctlPanicOnOops,
	SysctlSoftlockupPanic, SysctlHungTaskPanic, SysctlPanicOnWarn, SysctlPanicOnRCUStall,
	// kernel.hardlockup_panic is absent, as under QEMU TCG.
}

func newEnv(t *testing.T, reservation int64) *env {
	t.Helper()
	root := t.TempDir()
	if reservation >= 0 {
		writeFile(t, filepath.Join(root, "sys/kernel/kexec_crash_size"), fmt.Sprintf("%d\n", reservation))
	}
	writeFile(t, filepath.Join(root, "sys/kernel/kexec_crash_loaded"), "0\n")
	writeFile(t, filepath.Join(root, "sys/devices/system/cpu/present"), "0-3\n")
	writeFile(t, filepath.Join(root, "sys/devices/system/cpu/possible"), "0-15\n")
	writeFile(t, filepath.Join(root, "sys/devices/system/cpu/online"), "0-3\n")
	for _, s := range allFaults {
		writeFile(t, sysctlPath(root, s), "0\n")
	}
	writeMemoryMap(t, root, qemuMemoryMap())
	writeFile(t, filepath.Join(root, "proc/meminfo"), "MemTotal:        2014584 kB\nMemFree:  1 kB\n")
	e := &env{root: root, state: filepath.Join(t.TempDir(), "run")}
	e.kernel = &fakeKernel{t: t, root: root}
	e.opts = Options{
		Root: root, StateDir: e.state, Loader: e.kernel,
		Now: func() time.Time { return time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC) },
	}
	return e
}

// image returns a crash image of Debian's kernel (a bzImage header padded
// to its size, sparse) and a 14 MB initrd.
func (e *env) image(t *testing.T, cmdline string) Image {
	t.Helper()
	dir := t.TempDir()
	k := filepath.Join(dir, "vmlinuz")
	writeFile(t, k, string(fakeBzImage()))
	if err := os.Truncate(k, debianKernelBytes); err != nil {
		t.Fatal(err)
	}
	i := filepath.Join(dir, "initrd")
	writeFile(t, i, "070701")
	if err := os.Truncate(i, findingsInitrdBytes); err != nil {
		t.Fatal(err)
	}
	kf, err := os.Open(k)
	if err != nil {
		t.Fatal(err)
	}
	inf, err := os.Open(i)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kf.Close(); inf.Close() })
	return Image{
		Kernel: kf, Initrd: inf, Cmdline: cmdline,
		Manifest: &bootimage.Manifest{Version: 1, Name: "v1", Cmdline: cmdline, Modules: []bootimage.Module{
			{Name: "vmlinuz", Role: bootimage.RoleKernel, Size: debianKernelBytes, SHA256: strings.Repeat("a", 64)},
			{Name: "initrd", Role: bootimage.RoleInitrd, Size: findingsInitrdBytes, SHA256: strings.Repeat("b", 64)},
		}},
	}
}

func (e *env) sysctl(t *testing.T, name string) string {
	return strings.TrimSpace(readFile(t, sysctlPath(e.root, name)))
}

func (e *env) loaded(t *testing.T) string {
	return strings.TrimSpace(readFile(t, filepath.Join(e.root, "sys/kernel/kexec_crash_loaded")))
}

func TestArm(t *testing.T) {
	e := newEnv(t, 512<<20)
	img := e.image(t, "console=ttyS0 crashkernel=512M")
	st, err := Arm(img, e.opts)
	if err != nil {
		t.Fatal(err)
	}
	wantCmdline := "console=ttyS0 fastreboot.crash=two-stage reset_devices irqpoll panic=10 fastreboot.orig=crashkernel%3D512M"
	if d := cmp.Diff([]loadCall{{"vmlinuz", "initrd", wantCmdline, kexecFileOnCrash}}, e.kernel.calls); d != "" {
		t.Errorf("loader calls (-want +got):\n%s", d)
	}
	prev := map[string]string{}
	for _, s := range DefaultFaults {
		if s != SysctlHardlockupPanic {
			prev[s] = "0"
			if v := e.sysctl(t, s); v != "1" {
				t.Errorf("%s = %s after Arm, want 1", s, v)
			}
		}
	}
	if v := e.sysctl(t, SysctlPanicOnWarn); v != "0" {
		t.Errorf("panic_on_warn = %s without the option, want 0", v)
	}
	want := &State{
		Version: stateVersion, ArmedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), Mode: ModeTwoStage, Load: LoadFile,
		Cmdline: wantCmdline, Name: "v1", Digest: st.Digest,
		KernelBytes: debianKernelBytes, InitrdBytes: findingsInitrdBytes, ImageBytes: debianKernelBytes + findingsInitrdBytes,
		Sizing:           RequiredReservation(ImageSize{debianKernelBytes, findingsInitrdBytes, debianInitSize, debianKernelAlign, 0, 4, 16, 0, false}, ModeTwoStage),
		ReservationBytes: 512 << 20, Previous: prev, MemoryMap: qemuMemoryMap(),
	}
	if d := cmp.Diff(want, st); d != "" {
		t.Errorf("state (-want +got):\n%s", d)
	}
	if len(st.Digest) != 64 {
		t.Errorf("digest %q is not a SHA-256", st.Digest)
	}
	onDisk, err := ReadState(e.state)
	if err != nil {
		t.Fatal(err)
	}
	if d := cmp.Diff(st, onDisk); d != "" {
		t.Errorf("state file (-returned +file):\n%s", d)
	}

	rep, err := Status(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Supported || !rep.Armed || rep.ReservationBytes != 512<<20 || rep.Mode != ModeTwoStage || rep.State == nil {
		t.Errorf("Status = %+v", rep)
	}
	for _, f := range rep.Faults {
		switch f.Name {
		case SysctlHardlockupPanic:
			if f.Supported || f.Value != "unsupported" || f.Routed {
				t.Errorf("hardlockup_panic status = %+v, want unsupported", f)
			}
		case SysctlPanicOnWarn, SysctlPanicOnRCUStall:
			if f.Routed || f.Previous != "" {
				t.Errorf("%s status = %+v, want not routed", f.Name, f)
			}
		default:
			if !f.Routed || f.Previous != "0" {
				t.Errorf("%s status = %+v, want routed, previous 0", f.Name, f)
			}
		}
	}

	if _, err := Disarm(e.opts); err != nil {
		t.Fatal(err)
	}
	if last := e.kernel.calls[len(e.kernel.calls)-1]; last != (loadCall{Flags: kexecFileUnload | kexecFileOnCrash}) {
		t.Errorf("Disarm called FileLoad%+v", last)
	}
	for s := range prev {
		if v := e.sysctl(t, s); v != "0" {
			t.Errorf("%s = %s after Disarm, want 0", s, v)
		}
	}
	if st, err := ReadState(e.state); st != nil || err != nil {
		t.Errorf("state after Disarm = %+v, %v; want none", st, err)
	}
	if rep, _ := Status(e.opts); rep.Armed || rep.State != nil {
		t.Errorf("Status after Disarm = %+v", rep)
	}
	// Disarming again is fine.
	if _, err := Disarm(e.opts); err != nil {
		t.Errorf("second Disarm: %v", err)
	}
}

func TestArmDirectAndOptions(t *testing.T) {
	e := newEnv(t, 128<<20)
	opts := e.opts
	opts.Mode = ModeDirect
	opts.Faults = FaultOptions{PanicOnWarn: true}
	opts.Cmdline.ExtraWords = []string{"x=1"}
	img := e.image(t, "console=ttyS0 crashkernel=128M")
	img.Initrd = nil
	st, err := Arm(img, opts)
	if err != nil {
		t.Fatal(err)
	}
	// The fake machine has 16 possible CPUs: possible_cpus=16 keeps
	// that count and physical APIC mode (physicalAPICWord).
	want := "console=ttyS0 crashkernel=128M " + qemuMapWords + " fastreboot.crash=direct possible_cpus=16 x=1"
	if d := cmp.Diff([]loadCall{{"vmlinuz", "", want, kexecFileOnCrash | kexecFileNoInitramfs}}, e.kernel.calls); d != "" {
		t.Errorf("loader calls (-want +got):\n%s", d)
	}
	if st.Mode != ModeDirect || e.sysctl(t, SysctlPanicOnWarn) != "1" || e.sysctl(t, SysctlPanicOnRCUStall) != "0" {
		t.Errorf("mode %s, panic_on_warn %s, panic_on_rcu_stall %s", st.Mode, e.sysctl(t, SysctlPanicOnWarn), e.sysctl(t, SysctlPanicOnRCUStall))
	}
}

func TestRearmKeepsFirstPreviousValues(t *testing.T) {
	e := newEnv(t, 512<<20)
	writeFile(t, sysctlPath(e.root, SysctlHungTaskPanic), "0\n")
	writeFile(t, sysctlPath(e.root, SysctlPanicOnOops), "1\n") // set by the admin
	img := e.image(t, "a crashkernel=512M")
	for range 2 {
		if _, err := Arm(img, e.opts); err != nil {
			t.Fatal(err)
		}
	}
	st, _ := ReadState(e.state)
	if st.Previous[SysctlHungTaskPanic] != "0" || st.Previous[SysctlPanicOnOops] != "1" {
		t.Errorf("previous = %v, want hung_task_panic 0 and panic_on_oops 1", st.Previous)
	}
	if _, err := Disarm(e.opts); err != nil {
		t.Fatal(err)
	}
	if e.sysctl(t, SysctlHungTaskPanic) != "0" || e.sysctl(t, SysctlPanicOnOops) != "1" {
		t.Errorf("after Disarm hung_task_panic=%s panic_on_oops=%s, want 0 and 1", e.sysctl(t, SysctlHungTaskPanic), e.sysctl(t, SysctlPanicOnOops))
	}
}

// Every bad input fails with a named error, and the image armed before
// stays armed with its state and sysctls.
func TestArmFailuresKeepPreviousImage(t *testing.T) {
	eperm := fmt.Errorf("SYS_kexec_file_load(3, 4, \"...\", 0x2) = %w", syscall.EPERM)
	for _, tc := range []struct {
		name        string
		reservation int64 // -1: no kexec_crash_size file
		setup       func(t *testing.T, e *env, img *Image, o *Options)
		want        error
		wantText    []string
		wantLoads   int // FileLoad calls by the failing Arm
	}{
		{
			name: "no reservation", reservation: 0, want: ErrNoReservation,
			wantText: []string{"crashkernel=336M", "kexec_crash_size is 0"},
		},
		{
			name: "reservation too small", reservation: 192 << 20, want: ErrReservationTooSmall,
			wantText: []string{"192 MiB", "needs 336 MiB", "crashkernel=336M"},
		},
		{name: "no crash kexec in the kernel", reservation: -1, want: ErrNotSupported},
		{
			name: "no kernel file", reservation: 512 << 20, want: ErrInvalidImage, wantText: []string{"no kernel"},
			setup: func(t *testing.T, e *env, img *Image, o *Options) { img.Kernel = nil },
		},
		{
			name: "corrupt kernel", reservation: 512 << 20, want: ErrInvalidImage, wantText: []string{"vmlinuz", "bzImage"},
			setup: func(t *testing.T, e *env, img *Image, o *Options) {
				if _, err := img.Kernel.ReadAt(make([]byte, 1), 0); err != nil {
					t.Fatal(err)
				}
				p := img.Kernel.Name()
				writeFile(t, p, "MZ not a bzImage")
			},
		},
		{
			name: "empty initrd", reservation: 512 << 20, want: ErrInvalidImage, wantText: []string{"initrd", "empty"},
			setup: func(t *testing.T, e *env, img *Image, o *Options) {
				if err := os.Truncate(img.Initrd.Name(), 0); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "unknown mode", reservation: 512 << 20, wantText: []string{`unknown crash mode "fast"`},
			setup: func(t *testing.T, e *env, img *Image, o *Options) { o.Mode = "fast" },
		},
		{
			name: "direct without a memory map", reservation: 512 << 20, want: memmap.ErrNoFirmwareMap,
			setup: func(t *testing.T, e *env, img *Image, o *Options) {
				o.Mode = ModeDirect
				if err := os.RemoveAll(filepath.Join(e.root, "sys/firmware/memmap")); err != nil {
					t.Fatal(err)
				}
			},
		},
		{
			name: "direct with the restricted map of a kexec'd kernel", reservation: 512 << 20, want: memmap.ErrNoFirmwareMap,
			wantText: []string{"less than MemTotal"},
			setup: func(t *testing.T, e *env, img *Image, o *Options) {
				o.Mode = ModeDirect
				writeFile(t, filepath.Join(e.root, "proc/meminfo"), "MemTotal:        8000000 kB\n")
			},
		},
		{
			name: "command line too long", reservation: 512 << 20, want: ErrCmdlineTooLong, wantText: []string{"at most 2016"},
			setup: func(t *testing.T, e *env, img *Image, o *Options) { img.Cmdline = strings.Repeat("x", 2000) },
		},
		{
			name: "not permitted", reservation: 512 << 20, want: ErrNotPermitted, wantLoads: 1,
			wantText: []string{"CAP_SYS_BOOT", "operation not permitted"},
			setup:    func(t *testing.T, e *env, img *Image, o *Options) { e.kernel.err = eperm },
		},
		{
			name: "kernel finds no room", reservation: 512 << 20, want: ErrReservationTooSmall, wantLoads: 1,
			setup: func(t *testing.T, e *env, img *Image, o *Options) { e.kernel.err = syscall.EADDRNOTAVAIL },
		},
		{
			name: "signature rejected or other errno", reservation: 512 << 20, want: syscall.EBUSY, wantLoads: 1,
			wantText: []string{"in progress"},
			setup:    func(t *testing.T, e *env, img *Image, o *Options) { e.kernel.err = syscall.EBUSY },
		},
		{
			name: "sysctl unreadable", reservation: 512 << 20, want: ErrFaultRouting, wantText: []string{SysctlHungTaskPanic},
			setup: func(t *testing.T, e *env, img *Image, o *Options) {
				p := sysctlPath(e.root, SysctlHungTaskPanic)
				if err := os.Remove(p); err != nil {
					t.Fatal(err)
				}
				if err := os.Mkdir(p, 0o755); err != nil {
					t.Fatal(err)
				}
			},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t, 512<<20)
			first := e.image(t, "generation=1 crashkernel=512M")
			if _, err := Arm(first, e.opts); err != nil {
				t.Fatal(err)
			}
			armed, _ := ReadState(e.state)
			// Now the situation of the test: a reservation, a second image.
			if tc.reservation >= 0 {
				writeFile(t, filepath.Join(e.root, "sys/kernel/kexec_crash_size"), fmt.Sprint(tc.reservation))
			} else {
				os.Remove(filepath.Join(e.root, "sys/kernel/kexec_crash_size"))
			}
			img, opts := e.image(t, "generation=2 crashkernel=512M"), e.opts
			if tc.setup != nil {
				tc.setup(t, e, &img, &opts)
			}
			before := len(e.kernel.calls)
			st, err := Arm(img, opts)
			if err == nil || st != nil {
				t.Fatalf("Arm = %+v, %v; want an error", st, err)
			}
			if tc.want != nil && !errors.Is(err, tc.want) {
				t.Errorf("error %q is not %v", err, tc.want)
			}
			for _, s := range tc.wantText {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not mention %q", err, s)
				}
			}
			if n := len(e.kernel.calls) - before; n != tc.wantLoads {
				t.Errorf("loader called %d times, want %d", n, tc.wantLoads)
			}
			for _, c := range e.kernel.calls {
				if c.Flags&kexecFileUnload != 0 {
					t.Errorf("the crash image was unloaded: %+v", c)
				}
			}
			if got := e.loaded(t); got != "1" {
				t.Errorf("kexec_crash_loaded = %s, want the first image still armed", got)
			}
			if now, err := ReadState(e.state); err != nil || !cmp.Equal(armed, now) {
				t.Errorf("state changed: %v\n%s", err, cmp.Diff(armed, now))
			}
			if v := e.sysctl(t, SysctlPanicOnOops); v != "1" {
				t.Errorf("panic_on_oops = %s, want still routed", v)
			}
		})
	}
}

func TestArmFailureRestoresSysctls(t *testing.T) {
	e := newEnv(t, 512<<20)
	e.kernel.err = syscall.EPERM
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); !errors.Is(err, ErrNotPermitted) {
		t.Fatalf("error = %v, want ErrNotPermitted", err)
	}
	for _, s := range allFaults {
		if v := e.sysctl(t, s); v != "0" {
			t.Errorf("%s = %s after a failed Arm, want 0", s, v)
		}
	}
	if st, _ := ReadState(e.state); st != nil {
		t.Errorf("state written by a failed Arm: %+v", st)
	}

	// Routing that fails half way undoes what it changed.
	e = newEnv(t, 512<<20)
	p := sysctlPath(e.root, SysctlHungTaskPanic)
	os.Remove(p)
	os.Mkdir(p, 0o755)
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); !errors.Is(err, ErrFaultRouting) {
		t.Fatalf("error = %v, want ErrFaultRouting", err)
	}
	for _, s := range []string{SysctlUnknownNMIPanic, SysctlPanicOnOops, SysctlSoftlockupPanic} {
		if v := e.sysctl(t, s); v != "0" {
			t.Errorf("%s = %s after a failed routing, want 0", s, v)
		}
	}
	if len(e.kernel.calls) != 0 {
		t.Errorf("loader called: %+v", e.kernel.calls)
	}
}

func TestArmStateWriteFailure(t *testing.T) {
	e := newEnv(t, 512<<20)
	// A dangling symlink: no state to read, none can be written.
	if err := os.Symlink(filepath.Join(t.TempDir(), "gone", "x"), e.state); err != nil {
		t.Fatal(err)
	}
	st, err := Arm(e.image(t, "a crashkernel=512M"), e.opts)
	if err == nil || st == nil || !strings.Contains(err.Error(), "armed, but") {
		t.Errorf("Arm = %v, %v; want the state and an 'armed, but' error", st, err)
	}
}

func TestDisarmFailureKeepsState(t *testing.T) {
	e := newEnv(t, 512<<20)
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); err != nil {
		t.Fatal(err)
	}
	e.kernel.err = syscall.EPERM
	if _, err := Disarm(e.opts); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("Disarm error = %v, want ErrNotPermitted", err)
	}
	if st, _ := ReadState(e.state); st == nil || e.sysctl(t, SysctlPanicOnOops) != "1" {
		t.Errorf("a failed Disarm changed the state (%v) or sysctls", st)
	}
}

// TestDisarmRestoresOnlyItsSysctls: the state file names the sysctls Disarm
// writes back, and anyone able to write the state directory could add
// kernel.core_pattern to it; Disarm restores only the fault-routing
// sysctls it manages, with integer values, and warns about the rest.
func TestDisarmRestoresOnlyItsSysctls(t *testing.T) {
	e := newEnv(t, 512<<20)
	corePattern := sysctlPath(e.root, "kernel.core_pattern")
	writeFile(t, corePattern, "core\n")
	writeFile(t, sysctlPath(e.root, "kernel.modprobe"), "/sbin/modprobe\n")
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); err != nil {
		t.Fatal(err)
	}
	st, err := ReadState(e.state)
	if err != nil || st == nil {
		t.Fatalf("state: %v, %v", st, err)
	}
	st.Previous["kernel.core_pattern"] = "|/tmp/evil %p"
	st.Previous["kernel.modprobe"] = "/tmp/evil"
	st.Previous["kernel/../../../etc/x"] = "1"
	st.Previous[SysctlSoftlockupPanic] = "0\nkernel.core_pattern=|/tmp/evil"
	if err := writeState(e.state, st); err != nil {
		t.Fatal(err)
	}
	var logged strings.Builder
	e.opts.Logger = slog.New(slog.NewTextHandler(&logged, nil))
	warnings, err := Disarm(e.opts)
	if err != nil {
		t.Fatalf("Disarm: %v", err)
	}
	// The caller gets the warnings too (the CLI prints them), one per
	// entry left alone.
	if len(warnings) != 4 {
		t.Errorf("Disarm warnings %q, want 4", warnings)
	}
	for _, w := range []string{"kernel.core_pattern", "kernel.modprobe", "kernel/../../../etc/x", SysctlSoftlockupPanic} {
		if !slices.ContainsFunc(warnings, func(s string) bool { return strings.Contains(s, w) }) {
			t.Errorf("Disarm warnings %q do not name %s", warnings, w)
		}
	}
	if got := readFile(t, corePattern); got != "core\n" {
		t.Errorf("kernel.core_pattern = %q after Disarm, want it untouched", got)
	}
	if got := e.sysctl(t, "kernel.modprobe"); got != "/sbin/modprobe" {
		t.Errorf("kernel.modprobe = %q after Disarm, want it untouched", got)
	}
	if _, err := os.Stat(filepath.Join(e.root, "etc/x")); err == nil {
		t.Error("Disarm wrote outside proc/sys")
	}
	// The sysctls Arm changed and recorded faithfully are restored; the
	// one whose value was tampered with is left as it is.
	if v := e.sysctl(t, SysctlPanicOnOops); v != "0" {
		t.Errorf("%s = %s after Disarm, want 0", SysctlPanicOnOops, v)
	}
	if v := e.sysctl(t, SysctlSoftlockupPanic); v != "1" {
		t.Errorf("%s = %q after Disarm, want left routed (its recorded value is not an integer)", SysctlSoftlockupPanic, v)
	}
	for _, w := range []string{"kernel.core_pattern", "kernel.modprobe", SysctlSoftlockupPanic, "level=WARN"} {
		if !strings.Contains(logged.String(), w) {
			t.Errorf("log %q does not warn about %s", logged.String(), w)
		}
	}
}

// TestArmDoesNotFollowSysctlSymlinks: a sysctl is never a symlink; Arm
// refuses to write through one (to the file it names) and undoes what it
// routed.
func TestArmDoesNotFollowSysctlSymlinks(t *testing.T) {
	e := newEnv(t, 512<<20)
	victim := filepath.Join(t.TempDir(), "victim")
	writeFile(t, victim, "precious\n")
	p := sysctlPath(e.root, SysctlSoftlockupPanic)
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(victim, p); err != nil {
		t.Fatal(err)
	}
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); !errors.Is(err, ErrFaultRouting) {
		t.Errorf("Arm with a symlinked sysctl: %v, want ErrFaultRouting", err)
	}
	if got := readFile(t, victim); got != "precious\n" {
		t.Errorf("the symlink's target = %q, want untouched", got)
	}
	if v := e.sysctl(t, SysctlPanicOnOops); v != "0" {
		t.Errorf("%s = %s after the failed Arm, want 0", SysctlPanicOnOops, v)
	}
}

func TestStatusUnsupported(t *testing.T) {
	rep, err := Status(Options{Root: t.TempDir(), StateDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	if rep.Supported || rep.Armed || rep.State != nil {
		t.Errorf("Status of an empty root = %+v", rep)
	}
	for _, f := range rep.Faults {
		if f.Supported {
			t.Errorf("%s supported in an empty root", f.Name)
		}
	}
}

func TestReadStateErrors(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, statePath(dir), "{")
	if _, err := ReadState(dir); err == nil || !strings.Contains(err.Error(), "crash.json") {
		t.Errorf("damaged state: error = %v", err)
	}
	writeFile(t, statePath(dir), `{"version": 99}`)
	if _, err := ReadState(dir); err == nil {
		t.Error("unknown version accepted")
	}
}

func TestImageDigestFallbacks(t *testing.T) {
	e := newEnv(t, 512<<20)
	img := e.image(t, "a crashkernel=512M")
	img.Manifest = nil
	img.Digest = "given"
	if d, _ := imageDigest(img); d != "given" {
		t.Errorf("digest = %q, want the given one", d)
	}
	img.Digest = ""
	d1, err := imageDigest(img)
	if err != nil || len(d1) != 64 {
		t.Errorf("hashed digest = %q, %v", d1, err)
	}
}

// TestRouteToFirmware: with nothing armed yet, the faults are routed to
// panic and the state records the values before; a failed unload restores
// what it changed and leaves the state alone; a later Arm and Disarm keep
// the values from before the first change.
func TestRouteToFirmware(t *testing.T) {
	e := newEnv(t, 512<<20)
	e.kernel.err = syscall.EPERM
	if _, err := RouteToFirmware(e.opts); !errors.Is(err, ErrNotPermitted) {
		t.Errorf("RouteToFirmware with the unload refused = %v, want ErrNotPermitted", err)
	}
	if st, _ := ReadState(e.state); st != nil || e.sysctl(t, SysctlPanicOnOops) != "0" {
		t.Errorf("a failed RouteToFirmware left state %+v, panic_on_oops %s", st, e.sysctl(t, SysctlPanicOnOops))
	}
	e.kernel.err = nil
	st, err := RouteToFirmware(e.opts)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Firmware || st.Previous[SysctlPanicOnOops] != "0" || e.sysctl(t, SysctlPanicOnOops) != "1" {
		t.Errorf("state %+v, panic_on_oops %s; want firmware, routed, 0 recorded", st, e.sysctl(t, SysctlPanicOnOops))
	}
	if _, err := Arm(e.image(t, "a crashkernel=512M"), e.opts); err != nil {
		t.Fatal(err)
	}
	if st, _ := ReadState(e.state); st == nil || st.Firmware || st.Previous[SysctlPanicOnOops] != "0" {
		t.Errorf("state after an arm: %+v, want an image and 0 recorded", st)
	}
	if _, err := Disarm(e.opts); err != nil {
		t.Fatal(err)
	}
	if got := e.sysctl(t, SysctlPanicOnOops); got != "0" {
		t.Errorf("panic_on_oops after the disarm = %s, want 0", got)
	}
}
