package agent_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/faketree"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// crashRoot is faketree.CrashRoot.
func crashRoot(t *testing.T, reserve int64) string { return faketree.CrashRoot(t, reserve) }

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

func sysctl(t *testing.T, root, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "proc/sys", strings.ReplaceAll(name, ".", "/")))
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

// TestCrashRoutes drives the crash routes through the socket: arm names
// the manifest by file (the daemon reads its modules from beside it) and
// builds the minimal crash initramfs from Options.CrashInit; status,
// estimate (of the armed image) and disarm answer with the Path's reports.
// What the crash path does is pkg/crashpath's tests'.
func TestCrashRoutes(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	m, p := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	prog := bytes.Repeat([]byte("static fastreboot binary "), 4000)
	exe := filepath.Join(t.TempDir(), "fastreboot")
	if err := os.WriteFile(exe, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &flagLoader{}
	a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), CrashInit: exe, Machine: fastreboot.Options{
		Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	c, _ := serve(t, a)

	rep, err := c.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdMinimal})
	if err != nil {
		t.Fatalf("CrashArm: %v", err)
	}
	if !rep.Armed || rep.State.Mode != crashhandler.ModeTwoStage || rep.Initrd != crashpath.InitrdMinimal || l.flags != 2 /* KEXEC_FILE_ON_CRASH */ {
		t.Errorf("CrashArm report %+v, flags %#x", rep, l.flags)
	}
	if rep.Image.Reason != fastreboot.ReasonCrash || rep.Image.CarriedModules != len(m.Modules) {
		t.Errorf("crash image: reason %s carried %d, want crash %d", rep.Image.Reason, rep.Image.CarriedModules, len(m.Modules))
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(l.initrd[:rep.Image.PiecesBytes])))
	if err != nil {
		t.Fatal(err)
	}
	var gotInit bool
	for _, r := range recs {
		if r.Name == fastreboot.CrashInitPath {
			b := make([]byte, r.FileSize)
			r.ReadAt(b, 0)
			gotInit = bytes.Equal(b, prog)
		}
	}
	if !gotInit {
		t.Errorf("the crash initrd has no /init with Options.CrashInit's program: %v", recs)
	}
	if h := handoffOf(t, l.initrd, rep.Image); h.Crash == nil || h.Crash.Initrd != "minimal" {
		t.Errorf("crash handoff: crash %+v, want initrd minimal", h.Crash)
	}

	st, err := c.CrashStatus(ctx)
	if err != nil || st.Mode != crashhandler.ModeTwoStage || st.MemoryMapRAM == 0 {
		t.Errorf("CrashStatus = %+v, %v", st, err)
	}
	est, err := c.CrashEstimate(ctx, agent.CrashEstimateRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if est.From != "armed" || est.Sizing != rep.State.Sizing || !est.Fits || len(est.Problems) != 0 || est.NextCrashkernel.Size != 384<<20 {
		t.Errorf("estimate of the armed image: %+v", est)
	}
	// Another mode than the armed one builds the running image, which a
	// cold boot does not know.
	if _, err := c.CrashEstimate(ctx, agent.CrashEstimateRequest{Mode: crashhandler.ModeDirect}); err == nil {
		t.Error("estimate of another mode on a cold boot without a manifest succeeded")
	}
	est, err = c.CrashEstimate(ctx, agent.CrashEstimateRequest{Manifest: p, Mode: crashhandler.ModeDirect})
	if err != nil || est.Mode != crashhandler.ModeDirect || est.From != "built" || est.Sizing.Total >= rep.State.Sizing.Total || !est.Fits {
		t.Errorf("direct estimate %+v, %v; want a smaller reservation that fits", est, err)
	}
	if l.calls != 1 {
		t.Errorf("%d loads after one arm and three estimates, want 1", l.calls)
	}

	st, err = c.CrashDisarm(ctx)
	if err != nil || st.State != nil {
		t.Fatalf("CrashDisarm = %+v, %v; want no state left", st, err)
	}
	if got := sysctl(t, root, crashhandler.SysctlPanicOnOops); got != "0" {
		t.Errorf("panic_on_oops = %s after disarming, want 0 restored", got)
	}
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
	// initrds are the initrds of every load, in order.
	initrds [][]byte
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
		l.initrds = append(l.initrds, b)
	}
	return nil
}
