package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// crashRoot writes a fake /proc and /sys with a crash reservation of
// reserve bytes (0: none), the fault sysctls at 0 and a 2 GiB firmware map.
func crashRoot(t *testing.T, reserve int64) string {
	t.Helper()
	root := t.TempDir()
	w := func(rel, s string) {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	w("sys/kernel/kexec_crash_size", itoa(reserve)+"\n")
	w("sys/kernel/kexec_crash_loaded", "0\n")
	for _, n := range crashhandler.DefaultFaults {
		if n == crashhandler.SysctlHardlockupPanic {
			continue // no PMU, as under QEMU TCG
		}
		w(filepath.Join("proc/sys", strings.ReplaceAll(n, ".", "/")), "0\n")
	}
	w("proc/meminfo", "MemTotal:        2000000 kB\n")
	w("proc/cmdline", "console=ttyS0 crashkernel=384M\n")
	// The program a minimal crash initramfs (two-stage mode's default)
	// runs as /init.
	w("proc/self/exe", strings.Repeat("static fastreboot binary ", 400))
	for i, e := range []struct{ start, end, typ string }{
		{"0x0", "0x9fbff", crashhandler.TypeRAM},
		{"0x9fc00", "0x9ffff", crashhandler.TypeReserved},
		{"0x100000", "0x7ffdefff", crashhandler.TypeRAM},
		{"0x7ffdf000", "0x7fffffff", crashhandler.TypeReserved},
	} {
		d := filepath.Join("sys/firmware/memmap", itoa(int64(i)))
		w(filepath.Join(d, "start"), e.start+"\n")
		w(filepath.Join(d, "end"), e.end+"\n")
		w(filepath.Join(d, "type"), e.typ+"\n")
	}
	return root
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func sysctl(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCrashArm arms the crash path from a manifest: the crash image is the
// manifest's kernel with its initrd pieces and a handoff (reason crash, the
// next generation, the recorded memory map, the carried modules), loaded
// with KEXEC_FILE_ON_CRASH; disarming unloads it and restores the sysctls.
func TestCrashArm(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	l := &flagLoader{}
	a := newCrashAgent(t, root, l)

	rep, err := a.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect})
	if err != nil {
		t.Fatalf("CrashArm: %v", err)
	}
	if !rep.Armed || rep.State.Mode != crashhandler.ModeDirect || rep.MemoryMapFrom != "firmware" {
		t.Errorf("CrashArm report: %+v", rep)
	}
	if l.flags != 2 /* KEXEC_FILE_ON_CRASH */ {
		t.Errorf("kexec_file_load flags %#x, want ON_CRASH", l.flags)
	}
	if !strings.Contains(l.cmdline, "fastreboot.crash=direct") || !strings.Contains(l.cmdline, "memmap=exactmap") {
		t.Errorf("crash cmdline %q lacks the direct marker or the memory map", l.cmdline)
	}
	if rep.Image.Reason != fastreboot.ReasonCrash || rep.Image.Generation != 2 || rep.Image.CarriedModules != len(m.Modules) {
		t.Errorf("crash image: reason %s generation %d carried %d, want crash 2 %d", rep.Image.Reason, rep.Image.Generation, rep.Image.CarriedModules, len(m.Modules))
	}
	h := handoffOf(t, l.initrd, rep.Image)
	if h.Crash == nil || h.Crash.Mode != crashhandler.ModeDirect || len(h.MemoryMap) == 0 {
		t.Errorf("crash handoff: crash %+v, memory map %v; want the crash mode and the memory map", h.Crash, h.MemoryMap)
	}
	if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "1" {
		t.Errorf("panic_on_oops = %s after arming, want 1", got)
	}

	st, err := a.CrashStatus(ctx)
	if err != nil || st.Mode != crashhandler.ModeDirect || st.MemoryMapRAM == 0 {
		t.Errorf("CrashStatus = %+v, %v", st, err)
	}
	if _, err := a.CrashDisarm(ctx); err != nil {
		t.Fatalf("CrashDisarm: %v", err)
	}
	if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
		t.Errorf("panic_on_oops = %s after disarming, want 0 restored", got)
	}
}

// TestCrashArmRefused: every refused arm says why and leaves nothing armed
// and no sysctl changed.
func TestCrashArmRefused(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, p := im.WriteTemp(t)
	corrupt := filepath.Join(filepath.Dir(p), "site.cpio")
	for _, tc := range []struct {
		name    string
		reserve int64
		loadErr error
		prep    func()
		want    error
		text    string
	}{
		{name: "no reservation", reserve: 0, want: crashhandler.ErrNoReservation, text: "crashkernel="},
		{name: "too small", reserve: 16 << 20, want: crashhandler.ErrReservationTooSmall, text: "crashkernel="},
		{name: "no privilege", reserve: 384 << 20, loadErr: syscall.EPERM, want: crashhandler.ErrNotPermitted, text: "CAP_SYS_BOOT"},
		{name: "corrupt module", reserve: 384 << 20, prep: func() {
			b, _ := os.ReadFile(corrupt)
			b[len(b)-1] ^= 0xff
			os.WriteFile(corrupt, b, 0o644)
		}, text: "site.cpio"},
		{name: "missing module", reserve: 384 << 20, prep: func() { os.Remove(corrupt) }, text: "site.cpio"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.prep != nil {
				tc.prep()
			}
			root := crashRoot(t, tc.reserve)
			l := &flagLoader{err: tc.loadErr}
			a := newCrashAgent(t, root, l)
			_, err := a.CrashArm(ctx, agent.CrashArmRequest{Manifest: p})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("CrashArm = %v, want an error wrapping %v and naming %q", err, tc.want, tc.text)
			}
			if tc.loadErr == nil && l.calls != 0 {
				t.Errorf("kexec_file_load called %d times for a refused image", l.calls)
			}
			if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
				t.Errorf("panic_on_oops = %s after a refused arm, want 0", got)
			}
			if st, _ := a.CrashStatus(ctx); st.State != nil {
				t.Errorf("a state was recorded after a refused arm: %+v", st.State)
			}
		})
	}
}

// TestCrashArmAuto: --auto arms only when the handoff names a crash mode.
func TestCrashArmAuto(t *testing.T) {
	root := crashRoot(t, 384<<20)
	l := &flagLoader{}
	a := newCrashAgent(t, root, l)
	rep, err := a.CrashArm(context.Background(), agent.CrashArmRequest{Auto: true})
	if err != nil || rep.Armed || rep.Why == "" || l.calls != 0 {
		t.Errorf("auto arm without a handoff = %+v, %v; want nothing armed, a reason", rep, err)
	}
}

func newCrashAgent(t *testing.T, root string, l *flagLoader) *agent.Agent {
	t.Helper()
	a, err := agent.New(context.Background(), agent.Options{Root: root, StateDir: t.TempDir(), Machine: fastreboot.Options{
		Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

// handoffOf unpacks the handoff piece of a built image and reads it.
func handoffOf(t *testing.T, initrd []byte, rep *fastreboot.StageReport) *fastreboot.Handoff {
	t.Helper()
	root := t.TempDir()
	unpackHandoff(t, initrd, rep, root)
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

// flagLoader records the flags, command line and initrd of the last load.
type flagLoader struct {
	err     error
	calls   int
	flags   int
	cmdline string
	initrd  []byte
}

func (l *flagLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.calls++
	if l.err != nil {
		return l.err
	}
	l.flags, l.cmdline = flags, cmdline
	if initrd != nil {
		b, err := os.ReadFile(initrd.Name())
		if err != nil {
			st, _ := initrd.Stat()
			b = make([]byte, st.Size())
			initrd.ReadAt(b, 0)
		}
		l.initrd = b
	}
	return nil
}

// TestCrashArmLoadMethod: under lockdown a segments arm is armed with
// kexec_file_load and says why (nothing is decompressed for it); without
// --load, direct mode takes the file method when the loader cannot call
// kexec_load.
func TestCrashArmLoadMethod(t *testing.T) {
	tests := []struct {
		name         string
		load         crashhandler.LoadMethod
		lockdown     bool
		wantFallback string
	}{
		{name: "segments under lockdown", load: crashhandler.LoadSegments, lockdown: true, wantFallback: "lockdown"},
		{name: "default with a loader without kexec_load", load: ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			im, _ := testimage.Update()
			_, p := im.WriteTemp(t)
			root := crashRoot(t, 384<<20)
			if tt.lockdown {
				d := filepath.Join(root, "sys/kernel/security")
				if err := os.MkdirAll(d, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(d, "lockdown"), []byte("none [integrity] confidentiality\n"), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			l := &flagLoader{}
			a := newCrashAgent(t, root, l)
			rep, err := a.CrashArm(context.Background(), agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect, Load: tt.load})
			if err != nil {
				t.Fatal(err)
			}
			st := rep.State
			if st.Load != crashhandler.LoadFile || l.calls != 1 || l.flags != 2 || !strings.Contains(st.LoadFallback, tt.wantFallback) || (tt.wantFallback == "") != (st.LoadFallback == "") {
				t.Errorf("load %q fallback %q, kexec_file_load calls %d flags %#x; want file, fallback naming %q", st.Load, st.LoadFallback, l.calls, l.flags, tt.wantFallback)
			}
			if rep.Image.Segments != nil {
				t.Errorf("the image was prepared for kexec_load: %+v", rep.Image.Segments)
			}
		})
	}
}
