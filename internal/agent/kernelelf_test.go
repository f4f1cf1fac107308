package agent_test

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// TestPrepareKernelELF: a generation whose state directory records the
// decompressed kernel of the image it runs (as a segments handoff does)
// re-derives it in the background; the next segments Stage finds it
// cached. Without a record nothing starts; a record the derived ELF does
// not match ends in "failed", naming the recorded digest.
func TestPrepareKernelELF(t *testing.T) {
	ctx := context.Background()
	im := testimage.Default()
	m, p := im.WriteTemp(t)

	// The record a segments Stage of the previous generation left.
	record := func(t *testing.T) (string, fastreboot.KernelELF) {
		t.Helper()
		stateDir := t.TempDir()
		cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
		defer cache.Close()
		if _, err := cache.Sync(ctx, m, modcache.DirSource(filepath.Dir(p))); err != nil {
			t.Fatal(err)
		}
		rec, decompressed, _, err := fastreboot.New(cache, fastreboot.Options{StateDir: stateDir}).PrepareKernelELF(ctx, m)
		if err != nil || !decompressed {
			t.Fatalf("PrepareKernelELF: %v, decompressed %v", err, decompressed)
		}
		return stateDir, rec
	}
	wait := func(t *testing.T, a *agent.Agent) *agent.KernelELFStatus {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			in, err := a.Info(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if in.KernelELF == nil {
				t.Fatal("Info reports no kernel ELF preparation")
			}
			if in.KernelELF.State != agent.KernelELFPreparing || time.Now().After(deadline) {
				return in.KernelELF
			}
			time.Sleep(10 * time.Millisecond)
		}
	}

	t.Run("recorded", func(t *testing.T) {
		stateDir, rec := record(t)
		a, _ := newAgent(t, agent.Options{StateDir: stateDir})
		if _, err := a.Sync(ctx, agent.SyncRequest{Manifest: p}); err != nil {
			t.Fatal(err)
		}
		if !a.PrepareKernelELF(ctx) {
			t.Fatal("PrepareKernelELF did not start with a record for the running kernel")
		}
		if a.PrepareKernelELF(ctx) {
			t.Error("PrepareKernelELF started twice")
		}
		st := wait(t, a)
		if st.State != agent.KernelELFReady || st.ELF != rec || !st.Decompressed {
			t.Fatalf("kernel ELF status %+v, want ready with %+v, decompressed", st, rec)
		}
		if in, _ := a.Cache(ctx); in.Stats.Modules != len(m.Modules)+1 {
			t.Errorf("cache holds %d entries, want the %d modules and the ELF", in.Stats.Modules, len(m.Modules))
		}
	})
	t.Run("no record", func(t *testing.T) {
		a, _ := newAgent(t, agent.Options{})
		if _, err := a.Sync(ctx, agent.SyncRequest{Manifest: p}); err != nil {
			t.Fatal(err)
		}
		if a.PrepareKernelELF(ctx) {
			t.Error("PrepareKernelELF started without a record")
		}
		if in, _ := a.Info(ctx); in.KernelELF != nil {
			t.Errorf("Info reports %+v, want no preparation", in.KernelELF)
		}
	})
	t.Run("wrong record", func(t *testing.T) {
		stateDir, rec := record(t)
		rec.SHA256 = strings.Repeat("0", 64)
		js, err := json.Marshal(map[string]any{"version": 1, "kernel_elfs": []fastreboot.KernelELF{rec}})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(stateDir, fastreboot.KernelELFIndexFile), js, 0o644); err != nil {
			t.Fatal(err)
		}
		a, _ := newAgent(t, agent.Options{StateDir: stateDir})
		if _, err := a.Sync(ctx, agent.SyncRequest{Manifest: p}); err != nil {
			t.Fatal(err)
		}
		if !a.PrepareKernelELF(ctx) {
			t.Fatal("PrepareKernelELF did not start")
		}
		if st := wait(t, a); st.State != agent.KernelELFFailed || !strings.Contains(st.Error, rec.SHA256) {
			t.Errorf("kernel ELF status %+v, want failed naming %s", st, rec.SHA256)
		}
	})
}
