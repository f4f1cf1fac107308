package agent_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// TestTrialGenerationResumes: an update staged on trial carries the
// last-known-good image's modules besides its own, and the generation it
// boots resumes from that handoff (adopting them all), runs on trial, and
// runs its health command. A daemon stopped while the command runs leaves
// the generation on trial: nothing is staged or rebooted.
func TestTrialGenerationResumes(t *testing.T) {
	ctx := context.Background()
	im1, im2 := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	m2, p2 := im2.WriteTemp(t)
	gen1, l := newAgent(t, agent.Options{Resume: true})
	// A cold boot: the first manifest synced is the running image, good.
	if _, err := gen1.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}
	rep, err := gen1.Stage(ctx, agent.StageRequest{Manifest: p2, Trial: &rollback.TrialOptions{Health: []string{"sleep", "30"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, initrd, _ := l.last()
	root := t.TempDir()
	unpackHandoff(t, initrd, rep, root)
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		t.Fatal(err)
	}
	// v1 and v2 share 3 of their 4 modules.
	if len(h.Carried) != 5 || h.Rollback == nil || h.Rollback.Trial == nil || h.Rollback.Good == nil || h.Rollback.Good.ID != rollback.ImageID(m1) {
		t.Fatalf("handoff carries %d modules, rollback %+v; want v2's 4 and v1's other one, v2 on trial, v1 good", len(h.Carried), h.Rollback)
	}

	var reboots atomic.Int32
	gen2, l2 := newAgent(t, agent.Options{Root: root, Resume: true, Reboot: func(context.Context) error { reboots.Add(1); return nil }})
	if st := gen2.State(); st.Rehydrated.Modules != 5 || st.RehydrateError != "" {
		t.Errorf("generation 2 rehydrated %d modules (%q), want 5", st.Rehydrated.Modules, st.RehydrateError)
	}
	in, err := gen2.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if r := in.Rollback; !r.OnTrial || r.State.Trial.ID != rollback.ImageID(m2) || r.NextCrash.Action != rollback.ActionRollback {
		t.Fatalf("generation 2's assessment %+v, want v2 on trial, a crash rolling back", r)
	}
	tctx, stop := context.WithCancel(ctx)
	gen2.RunTrial(tctx)
	deadline := time.Now().Add(10 * time.Second)
	for {
		in, err := gen2.Info(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if hs := in.Rollback.Health; hs != nil && hs.State == agent.HealthRunning {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the health command did not start: %+v", in.Rollback)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stop()
	// Close waits for RunTrial's goroutine, and with it for a rollback
	// the killed command would have started.
	gen2.Close()
	if in, err = gen2.Info(ctx); err != nil {
		t.Fatal(err)
	}
	if !in.Rollback.OnTrial || in.Rollback.RollingBack != "" || reboots.Load() != 0 || l2.Calls() != 0 {
		t.Errorf("after the daemon stopped: on trial %v, rolling back %q, %d reboots, %d loads; want still on trial, nothing staged or rebooted",
			in.Rollback.OnTrial, in.Rollback.RollingBack, reboots.Load(), l2.Calls())
	}
}
