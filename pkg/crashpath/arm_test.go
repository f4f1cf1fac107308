package crashpath_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// newPath returns the crash path of a generation on root, with a new cache
// and l as its loader.
func newPath(t *testing.T, root string, l *flagLoader) *crashpath.Path {
	t.Helper()
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	t.Cleanup(func() { cache.Close() })
	return crashpath.New(crashpath.Config{
		Root: root, StateDir: t.TempDir(), Cache: cache,
		MachineOptions: fastreboot.Options{Loader: l, Probe: func() error { return errors.New("probe must not run in tests") }},
	})
}

// target is the manifest file p with its modules read from its directory.
func target(t *testing.T, p string) crashpath.Target {
	t.Helper()
	m, err := bootimage.Load(p)
	if err != nil {
		t.Fatal(err)
	}
	return crashpath.Target{Manifest: m, Source: modcache.DirSource(filepath.Dir(p)), Label: p}
}

func sysctl(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
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

// TestCrashArmRefused: every refused arm says why and leaves nothing armed
// and no sysctl changed.
func TestCrashArmRefused(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, mp := im.WriteTemp(t)
	corrupt := filepath.Join(filepath.Dir(mp), "site.cpio")
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
			p := newPath(t, root, l)
			_, err := p.Arm(ctx, crashpath.ArmOptions{Target: target(t, mp)})
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) || !strings.Contains(err.Error(), tc.text) {
				t.Fatalf("CrashArm = %v, want an error wrapping %v and naming %q", err, tc.want, tc.text)
			}
			if tc.loadErr == nil && l.calls != 0 {
				t.Errorf("kexec_file_load called %d times for a refused image", l.calls)
			}
			if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
				t.Errorf("panic_on_oops = %s after a refused arm, want 0", got)
			}
			if st, _ := p.Status(); st.State != nil {
				t.Errorf("a state was recorded after a refused arm: %+v", st.State)
			}
		})
	}
}

// TestCrashArmAuto: --auto arms only when the handoff names a crash mode.
func TestCrashArmAuto(t *testing.T) {
	root := crashRoot(t, 384<<20)
	l := &flagLoader{}
	p := newPath(t, root, l)
	rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Auto: true})
	if err != nil || rep.Armed || rep.Why == "" || l.calls != 0 {
		t.Errorf("auto arm without a handoff = %+v, %v; want nothing armed, a reason", rep, err)
	}
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
			_, mp := im.WriteTemp(t)
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
			p := newPath(t, root, l)
			rep, err := p.Arm(context.Background(), crashpath.ArmOptions{Target: target(t, mp), Mode: crashhandler.ModeDirect, Load: tt.load})
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
