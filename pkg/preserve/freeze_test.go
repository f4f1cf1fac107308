package preserve

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// fakeCgroup makes root/<cg> with cgroup.freeze holding freeze and
// cgroup.events saying frozen.
func fakeCgroup(t *testing.T, root, cg, freeze, frozen string) {
	t.Helper()
	dir := filepath.Join(root, cg)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "cgroup.freeze"), freeze+"\n")
	write(t, filepath.Join(dir, "cgroup.events"), "populated 1\nfrozen "+frozen+"\n")
}

func write(t *testing.T, p, s string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
}

func read(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestFreezeAndThaw(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "work", "0", "1") // the fake "kernel" says frozen at once
	fakeCgroup(t, root, "was/frozen", "1", "1")
	areas := []Area{{Name: "a", Cgroup: "/work"}, {Name: "b", Cgroup: "/work"}, {Name: "c"}, {Name: "d", Cgroup: "/was/frozen"}}
	f, err := Freeze(context.Background(), root, areas, FreezeOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(root, "work/cgroup.freeze")); got != "1" {
		t.Errorf("work/cgroup.freeze = %q, want 1", got)
	}
	if len(f.Cgroups) != 1 || f.Cgroups[0] != "/work" {
		t.Errorf("froze %v, want [/work] (once; /was/frozen was frozen before)", f.Cgroups)
	}
	if err := f.Thaw(); err != nil {
		t.Fatal(err)
	}
	if got := read(t, filepath.Join(root, "work/cgroup.freeze")); got != "0" {
		t.Errorf("work/cgroup.freeze after Thaw = %q, want 0", got)
	}
	if got := read(t, filepath.Join(root, "was/frozen/cgroup.freeze")); got != "1" {
		t.Errorf("a cgroup frozen before Freeze was thawed")
	}
}

func TestFreezeFailureThawsWhatItFroze(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "one", "0", "1")
	fakeCgroup(t, root, "stuck", "0", "0") // never says frozen
	areas := []Area{{Name: "a", Cgroup: "/one"}, {Name: "b", Cgroup: "/stuck"}}
	start := time.Now()
	_, err := Freeze(context.Background(), root, areas, FreezeOptions{Timeout: 50 * time.Millisecond, Poll: time.Millisecond})
	if !errors.Is(err, ErrFreeze) || !strings.Contains(err.Error(), "/stuck") || !strings.Contains(err.Error(), "frozen 0 after 50ms") {
		t.Fatalf("err = %v, want ErrFreeze naming /stuck and the timeout", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Error("the timeout was not kept")
	}
	for _, cg := range []string{"one", "stuck"} {
		if got := read(t, filepath.Join(root, cg, "cgroup.freeze")); got != "0" {
			t.Errorf("%s/cgroup.freeze = %q after the failure, want 0 (thawed)", cg, got)
		}
	}
}

func TestFreezeNotACgroup(t *testing.T) {
	root := t.TempDir()
	_, err := Freeze(context.Background(), root, []Area{{Name: "a", Cgroup: "/missing"}}, FreezeOptions{})
	if !errors.Is(err, ErrFreeze) || !strings.Contains(err.Error(), "cgroup v2 directory") {
		t.Errorf("err = %v, want ErrFreeze asking for a cgroup v2 directory", err)
	}
}

func TestFreezeContextDone(t *testing.T) {
	root := t.TempDir()
	fakeCgroup(t, root, "stuck", "0", "0")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Freeze(ctx, root, []Area{{Name: "a", Cgroup: "/stuck"}}, FreezeOptions{})
	if !errors.Is(err, ErrFreeze) || !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want ErrFreeze and context.Canceled", err)
	}
}
