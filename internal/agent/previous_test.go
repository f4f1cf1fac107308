package agent_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// bootRecord is the part of agent.BootRecordFile the tests read and write.
type bootRecord struct {
	BootID     string             `json:"boot_id"`
	Generation int                `json:"generation"`
	SavedAt    time.Time          `json:"saved_at"`
	Armed      *rollback.Decision `json:"armed"`
	State      rollback.State     `json:"state"`
}

// fakePstoreMount mounts nothing: the tests write the pstore files.
var fakePstoreMount = crashhandler.PstoreOptions{Mount: func(string) error { return nil }}

func readBootRecord(t *testing.T, dir string) bootRecord {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, agent.BootRecordFile))
	if err != nil {
		t.Fatal(err)
	}
	var r bootRecord
	if err := json.Unmarshal(b, &r); err != nil {
		t.Fatal(err)
	}
	return r
}

// TestBootRecordAcrossFirmware: the daemon keeps a record of its boot's
// assessment in the persistent directory (what its crash path was armed
// with, updated by each arm); a cold boot after a crash loop that left for
// the firmware reads the previous boot's record (its history, the firmware
// decision) and the panic log pstore kept, and says how that boot ended.
func TestBootRecordAcrossFirmware(t *testing.T) {
	ctx := context.Background()
	persist := t.TempDir()
	newCold := func(root string) *agent.Agent {
		t.Helper()
		a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), Resume: true, PersistDir: persist, Pstore: fakePstoreMount, Machine: fastreboot.Options{
			Loader: &flagLoader{}, Probe: func() error { return errors.New("probe must not run in tests") },
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { a.Close() })
		return a
	}

	// Boot A: a cold boot that syncs v1 (last-known-good) and arms.
	rootA := crashRoot(t, 384<<20)
	withBootID(t, rootA, "boot-a")
	a := newCold(rootA)
	im1, _ := testimage.Update()
	_, p1 := im1.WriteTemp(t)
	if _, err := a.Sync(ctx, agent.SyncRequest{Manifest: p1}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.CrashArm(ctx, agent.CrashArmRequest{Mode: crashhandler.ModeDirect}); err != nil {
		t.Fatal(err)
	}
	rec := readBootRecord(t, persist)
	if rec.BootID != "boot-a" || rec.Generation != 1 || rec.Armed == nil || rec.Armed.Action != rollback.ActionCrash ||
		rec.State.Good == nil || rec.State.Good.Manifest.Name != "v1" || len(rec.State.History) != 1 {
		t.Fatalf("boot A's record: %+v", rec)
	}
	if _, err := a.CrashDisarm(ctx); err != nil {
		t.Fatal(err)
	}
	if rec := readBootRecord(t, persist); rec.Armed != nil {
		t.Errorf("record after a disarm: armed %+v, want none", rec.Armed)
	}
	a.Close()

	// What boot A's last generation would have left after v1's crash loop
	// (TestRollbackCrash boots it): a history of crashes and a firmware
	// decision armed.
	rec.Generation = 5
	rec.State.History = append(rec.State.History,
		rollback.Event{Generation: 4, Reason: rollback.EventRollback, Image: "v1@x", Note: "crash loop of v2@y: sysrq triggered crash"},
		rollback.Event{Generation: 5, Reason: rollback.EventCrash, Image: "v1@x", Note: "sysrq triggered crash"})
	rec.Armed = &rollback.Decision{Action: rollback.ActionFirmware, Why: "2nd crash within 1h0m0s of v1@x, with no other good image: rebooting through the firmware"}
	rec.SavedAt = time.Now().Add(-time.Minute).UTC()
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(filepath.Join(persist, agent.BootRecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}

	// Boot B: the cold boot after the firmware, with the panic in pstore.
	rootB := crashRoot(t, 384<<20)
	withBootID(t, rootB, "boot-b")
	writeRootFile(t, rootB, "sys/module/pstore/parameters/backend", "ramoops\n")
	writeRootFile(t, rootB, "sys/fs/pstore/dmesg-ramoops-0", "Panic#1 Part1\n<6>[   40.000000] sysrq: Trigger a crash\n<0>[   40.000100] Kernel panic - not syncing: sysrq triggered crash\n")
	b2 := newCold(rootB)
	r := rbInfo(t, b2)
	pb := r.State.Previous
	if pb == nil || pb.BootID != "boot-a" || pb.Generation != 5 || !pb.FirmwareLoop() || len(pb.History) != 3 {
		t.Fatalf("boot B's previous boot: %+v", pb)
	}
	if h := r.State.History; len(h) != 1 || h[0].Reason != rollback.EventFirmware || !strings.Contains(h[0].Note, "rebooting through the firmware") {
		t.Errorf("boot B's history: %+v, want one firmware start saying why", h)
	}
	line := b2.NotePreviousPanic()
	if !strings.Contains(line, "sysrq triggered crash") {
		t.Errorf("NotePreviousPanic = %q, want the panic line", line)
	}
	r = rbInfo(t, b2)
	if pb := r.State.Previous; pb == nil || pb.Panic != line || !strings.Contains(pb.Ending(), "rebooted through the firmware") {
		t.Errorf("after the panic log: %+v", pb)
	}
	if h := r.State.History; len(h) != 1 || !strings.Contains(h[0].Note, "its panic: "+line) {
		t.Errorf("boot B's start event: %+v, want the panic in its note", h)
	}
	// Boot B's record replaced boot A's, without A's chain.
	if rec := readBootRecord(t, persist); rec.BootID != "boot-b" || rec.State.Previous != nil {
		t.Errorf("record in boot B: boot %s, previous %+v", rec.BootID, rec.State.Previous)
	}
}

// TestPreviousPanicOlderThanRecord: a panic log older than the previous
// boot's record is a crash that boot recovered from, not its end.
func TestPreviousPanicOlderThanRecord(t *testing.T) {
	persist := t.TempDir()
	b, _ := json.Marshal(bootRecord{BootID: "boot-a", Generation: 3, SavedAt: time.Now().Add(time.Hour).UTC()})
	if err := os.WriteFile(filepath.Join(persist, agent.BootRecordFile), b, 0o600); err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	withBootID(t, root, "boot-b")
	writeRootFile(t, root, "sys/module/pstore/parameters/backend", "ramoops\n")
	writeRootFile(t, root, "sys/fs/pstore/dmesg-ramoops-0", "Panic#1 Part1\n<0>[   40.000100] Kernel panic - not syncing: sysrq triggered crash\n")
	a, _ := newAgent(t, agent.Options{Root: root, PersistDir: persist, Pstore: fakePstoreMount})
	if line := a.NotePreviousPanic(); line != "" {
		t.Errorf("NotePreviousPanic = %q, want none (the log is older than the record)", line)
	}
	pb := rbInfo(t, a).State.Previous
	if pb == nil || pb.Panic != "" || !strings.Contains(pb.Ending(), "no panic on record") {
		t.Errorf("previous boot %+v (%s)", pb, pb.Ending())
	}
}

// TestNoPersistDir: a persistent directory that does not exist is not
// created, and nothing fails.
func TestNoPersistDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "var", "lib", "fastreboot")
	a, _ := newAgent(t, agent.Options{PersistDir: dir})
	if rbInfo(t, a).State.Previous != nil {
		t.Error("a previous boot from no record")
	}
	if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s: %v, want it not created", dir, err)
	}
}
