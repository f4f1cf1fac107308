package crashpath

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// StatusReport is the crash path of the running generation.
type StatusReport struct {
	crashhandler.StatusReport
	// Generation and Reason of the running system.
	Generation int               `json:"generation"`
	Reason     fastreboot.Reason `json:"reason"`
	// MemoryMapRAM is the RAM of the recorded firmware memory map.
	MemoryMapRAM uint64 `json:"memory_map_ram_bytes,omitempty"`
	// Last is the evidence of the last crash, if any is known.
	Last *crashhandler.Evidence `json:"last,omitempty"`
	// Warnings, in the report of a disarm, name what it left alone: the
	// sysctls the crash state names that are not fault-routing sysctls
	// fastreboot manages (or hold no integer). Status leaves it empty.
	Warnings []string `json:"warnings,omitempty"`
}

// Status reports the crash path of the running generation.
func (p *Path) Status() (*StatusReport, error) {
	return Status(p.cfg.Root, p.cfg.StateDir, p.state)
}

// LastCrash returns the evidence of the last crash this system recovered
// from (see the function LastCrash).
func (p *Path) LastCrash() *crashhandler.Evidence {
	return LastCrash(p.cfg.Root, p.cfg.StateDir)
}

// Status reports the crash path without a Path (no cache needed): root and
// state directory as Config names them ("" is not defaulted here); st is
// how the generation started (nil: read from stateDir).
func Status(root, stateDir string, st *fastreboot.State) (*StatusReport, error) {
	sr, err := crashhandler.Status(crashhandler.Options{Root: root, StateDir: stateDir})
	rep := &StatusReport{StatusReport: sr, Generation: 1, Reason: fastreboot.ReasonCold}
	if st == nil {
		st, _ = fastreboot.LoadState(stateDir)
	}
	if st != nil {
		rep.Generation, rep.Reason = st.Generation, st.Reason
	}
	if sr.State != nil {
		rep.MemoryMapRAM = sr.State.MemoryMap.RAMBytes()
	}
	rep.Last = LastCrash(root, stateDir)
	return rep, err
}

// LastCrash returns the evidence of the last crash this system recovered
// from: the one saved in the state directory (stateDir/crash, by Recover),
// else the one the handoff under root carried; nil if none.
//
// A generation started by the crash path (its handoff says reason crash)
// always has one, so that the crash record never contradicts the
// generation's reason: when nothing was saved (Recover did not run, or
// could not save) and the handoff carries no evidence of this crash, it
// returns a record of what the handoff says (the crashed generation, the
// mode) with the time this kernel booted and a problem saying that no
// evidence was saved.
func LastCrash(root, stateDir string) *crashhandler.Evidence {
	if ev, err := crashhandler.ReadSavedEvidence(filepath.Join(stateDir, EvidenceDir)); err == nil {
		return ev
	}
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		return nil
	}
	// A rollback is a crash's when its crash image was armed with the
	// decision pending (a missed deadline or failed health command rolls
	// back with none).
	crashed := h.Reason == fastreboot.ReasonCrash || (h.Reason == fastreboot.ReasonRollback && h.Rollback != nil && h.Rollback.Pending != nil)
	if h.Crash != nil && h.Crash.Evidence != nil {
		ev := *h.Crash.Evidence
		// Evidence of an earlier crash is not this crash's.
		if !crashed || ev.Generation == 0 || ev.Generation == h.Generation-1 {
			return &ev
		}
	}
	if !crashed {
		return nil
	}
	var mode crashhandler.Mode
	if h.Crash != nil {
		mode = h.Crash.Mode
	}
	return unrecordedCrash(root, max(h.Generation-1, 1), mode,
		"no evidence of this crash was saved (crash recover did not run in the crash kernel, or could not save it)")
}

// unrecordedCrash is the record of a crash whose evidence could not be
// read: the crashed generation, the mode and, as its time, when this
// kernel booted.
func unrecordedCrash(root string, generation int, mode crashhandler.Mode, problems ...string) *crashhandler.Evidence {
	return &crashhandler.Evidence{
		Time: bootTime(root), CPU: -1, Generation: generation, Mode: mode,
		Log: []string{}, Problems: problems,
	}
}

// bootTime is when the running kernel booted: now minus Root/proc/uptime
// (now if that cannot be read), to the second.
func bootTime(root string) time.Time {
	now := time.Now().UTC()
	b, err := os.ReadFile(filepath.Join(root, "proc/uptime"))
	if err != nil {
		return now.Truncate(time.Second)
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return now.Truncate(time.Second)
	}
	up, err := strconv.ParseFloat(f[0], 64)
	if err != nil || up < 0 {
		return now.Truncate(time.Second)
	}
	return now.Add(-time.Duration(up * float64(time.Second))).Truncate(time.Second)
}
