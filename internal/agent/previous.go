package agent

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// DefaultPersistDir is the daemon's Options.PersistDir: on a distribution,
// a directory of the root file system (on the disk, unlike the state
// directory, which is on tmpfs), which the package creates. The agent
// never creates it: where it does not exist, nothing is kept.
const DefaultPersistDir = "/var/lib/fastreboot"

// BootRecordFile is the record of the running boot's assessment in
// Options.PersistDir.
const BootRecordFile = "boot-assessment.json"

// bootRecord is BootRecordFile's content. It is written (atomically) each
// time the assessment changes and each time the crash path is armed or
// disarmed: the last record of a boot says what its crash path was armed
// with when it ended. A panic cannot write it; pstore keeps the panic log.
type bootRecord struct {
	BootID     string             `json:"boot_id"`
	Generation int                `json:"generation"`
	Reason     string             `json:"reason"`
	SavedAt    time.Time          `json:"saved_at"`
	Armed      *rollback.Decision `json:"armed,omitempty"`
	State      rollback.State     `json:"state"`
}

// persistLocked writes the boot record (a.mu held, or the agent not shared
// yet). A failure is logged once: a machine whose disk is read-only keeps
// the assessment in the handoff only.
func (a *Agent) persistLocked() {
	dir := a.opts.PersistDir
	if dir == "" {
		return
	}
	st := a.rb.Clone()
	// The previous boot's record is not carried into this one's: each
	// record holds one boot.
	st.Previous = nil
	rec := bootRecord{BootID: a.bootID(), Generation: a.state.Generation, Reason: string(a.state.Reason), SavedAt: a.now().UTC(), Armed: a.armed, State: st}
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		if !a.persistWarned {
			a.persistWarned = true
			a.log.Info("no directory for the boot record: the cold boot after a firmware reboot will not know this boot's history", "dir", dir)
		}
		return
	}
	b, err := json.MarshalIndent(rec, "", "  ")
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(dir, BootRecordFile), b, 0o600)
	}
	if err != nil && !a.persistWarned {
		a.persistWarned = true
		a.log.Warn("keeping the boot record on disk: the cold boot after a firmware reboot will not know this boot's history", "dir", dir, "err", err)
	}
}

// previousBoot reads the record the previous boot left in
// Options.PersistDir (nil if there is none, or it is this boot's).
func (a *Agent) previousBoot() *rollback.PreviousBoot {
	if a.opts.PersistDir == "" {
		return nil
	}
	p := filepath.Join(a.opts.PersistDir, BootRecordFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			a.log.Warn("reading the previous boot's record", "file", p, "err", err)
		}
		return nil
	}
	var rec bootRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		a.log.Warn("the previous boot's record is not valid JSON; ignored", "file", p, "err", err)
		return nil
	}
	if rec.BootID == "" || rec.BootID == a.bootID() {
		return nil
	}
	return &rollback.PreviousBoot{BootID: rec.BootID, Generation: rec.Generation, SavedAt: rec.SavedAt, Armed: rec.Armed, History: rec.State.History}
}

// setArmed records the decision the crash path was armed with (nil:
// disarmed) in the boot record.
func (a *Agent) setArmed(d *rollback.Decision) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if d != nil {
		c := *d
		d = &c
	}
	a.armed = d
	a.persistLocked()
}

// NotePreviousPanic adds the previous boot's last panic, from the panic log
// pstore kept, to a cold generation's assessment: the end of the chain a
// crash loop that left for the firmware could not record on disk. A log
// older than the previous boot's record is not its end (a crash it
// recovered from). The daemon calls it once the pstore backend is loaded
// (LoadPstore). It returns the panic line ("" if none was added).
func (a *Agent) NotePreviousPanic() string {
	if a.state.Generation != 1 || a.state.Reason != fastreboot.ReasonCold {
		return ""
	}
	ev, err := a.crash.PstoreEvidence()
	if err != nil || ev.Reason == "" {
		if err != nil && !errors.Is(err, crashhandler.ErrNoPstore) {
			a.log.Warn("reading the previous boot's panic log from pstore", "err", err)
		}
		return ""
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	if p := a.rb.Previous; p != nil && !p.SavedAt.IsZero() && !ev.Time.IsZero() && !ev.Time.After(p.SavedAt) {
		return ""
	}
	line := evidenceNote(ev)
	a.rb = a.rb.WithPreviousPanic(a.state.Generation, line, ev.Time)
	a.saveRollbackLocked()
	return line
}
