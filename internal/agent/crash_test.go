package agent_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/memmap"
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
		{"0x0", "0x9fbff", memmap.TypeRAM},
		{"0x9fc00", "0x9ffff", memmap.TypeReserved},
		{"0x100000", "0x7ffdefff", memmap.TypeRAM},
		{"0x7ffdf000", "0x7fffffff", memmap.TypeReserved},
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
