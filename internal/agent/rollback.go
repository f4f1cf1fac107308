package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/modcache"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// Routes of the boot assessment.
const (
	pathBless    = "/v1/bless"
	pathRollback = "/v1/rollback"
)

// BlessRequest asks to bless the running generation: its image becomes
// last-known-good.
type BlessRequest struct{}

// BlessReport says what Bless did.
type BlessReport struct {
	Generation int `json:"generation"`
	// Good is the new last-known-good image, Fallback the one before it.
	Good     *rollback.Image `json:"good"`
	Fallback *rollback.Image `json:"fallback,omitempty"`
	// Rearmed is true when the crash path was armed and was armed again,
	// so that a crash now recovers into the blessed image.
	Rearmed bool `json:"rearmed"`
	// Restaged is true when an image was staged (under the trial's
	// assessment) and was staged again under the new one.
	Restaged bool     `json:"restaged"`
	Warnings []string `json:"warnings,omitempty"`
}

// RollbackRequest asks to stage the last-known-good image, reason
// rollback, ending the running generation's trial.
type RollbackRequest struct {
	// Why is recorded in the history ("" says "asked by an operator").
	Why string `json:"why,omitempty"`
	// Reboot jumps into it once staged (through Options.Reboot).
	Reboot bool `json:"reboot,omitempty"`
}

// RollbackReport says what Rollback staged.
type RollbackReport struct {
	Good   *rollback.Image         `json:"good"`
	Why    string                  `json:"why"`
	Staged *fastreboot.StageReport `json:"staged,omitempty"`
	// Rebooting is true when the reboot was started.
	Rebooting bool `json:"rebooting"`
}

// HealthStatus is the trial's health command as the daemon ran it.
type HealthStatus struct {
	Command []string `json:"command"`
	// State is "running", "passed" or "failed".
	State    string        `json:"state"`
	ExitCode int           `json:"exit_code"`
	Error    string        `json:"error,omitempty"`
	Output   string        `json:"output,omitempty"` // its last bytes
	Took     time.Duration `json:"took_ns"`
}

// Health command states.
const (
	HealthRunning = "running"
	HealthPassed  = "passed"
	HealthFailed  = "failed"
)

// RollbackInfo is the boot assessment of the running generation.
type RollbackInfo struct {
	Generation int            `json:"generation"`
	State      rollback.State `json:"state"`
	OnTrial    bool           `json:"on_trial"`
	// Deadline is when the trial's deadline passes (zero: none, or not
	// on trial).
	Deadline time.Time     `json:"deadline,omitzero"`
	Health   *HealthStatus `json:"health,omitempty"`
	// NextCrash is what a crash of this generation now boots.
	NextCrash rollback.Decision `json:"next_crash"`
	// RollingBack says why a rollback is under way ("" if none).
	RollingBack string `json:"rolling_back,omitempty"`
}

// rollbackFile holds the running generation's boot assessment in the state
// directory, so that a restarted daemon (or a command without one) sees a
// bless of this boot.
const rollbackFile = "rollback.json"

// savedRollback is rollbackFile's content: the state of one generation of
// one boot.
type savedRollback struct {
	BootID     string         `json:"boot_id"`
	Generation int            `json:"generation"`
	State      rollback.State `json:"state"`
	// TrialStart is when the generation's first daemon started: a
	// trial's deadline counts from it, also for a restarted daemon.
	TrialStart time.Time `json:"trial_start,omitzero"`
}

// healthOutputMax bounds the health command's output the status keeps.
const healthOutputMax = 2048

// bootID is the kernel's random id of this boot ("" if unreadable).
func (a *Agent) bootID() string {
	b, err := os.ReadFile(filepath.Join(a.opts.Root, "proc/sys/kernel/random/boot_id"))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// initRollback sets the generation's boot assessment: the one saved in
// this boot for this generation (a bless, a restarted daemon), else the
// handoff's with its pending crash decision applied, else a cold boot's
// (the running image, if known, is good).
func (a *Agent) initRollback() {
	now := a.now()
	p := filepath.Join(a.opts.StateDir, rollbackFile)
	if b, err := os.ReadFile(p); err == nil {
		var s savedRollback
		if json.Unmarshal(b, &s) == nil && s.Generation == a.state.Generation && s.BootID != "" && s.BootID == a.bootID() {
			a.rb = s.State
			if !s.TrialStart.IsZero() && s.TrialStart.Before(a.trialStart) {
				a.trialStart = s.TrialStart
			}
			return
		}
	}
	if h := a.state.Rollback; h != nil {
		var crashAt time.Time
		note := ""
		if a.state.Reason == fastreboot.ReasonCrash || a.state.Reason == fastreboot.ReasonRollback {
			if ev := crashpath.LastCrash(a.opts.Root, a.opts.StateDir); ev != nil {
				crashAt, note = ev.Time, evidenceNote(ev)
			}
		}
		a.rb = h.Adopt(a.state.Generation, string(a.state.Reason), crashAt, note, now)
	} else if a.state.Reason == fastreboot.ReasonCold {
		a.rb = rollback.ColdAfter(a.state.Generation, a.current, a.previousBoot(), now)
	} else {
		a.rb = rollback.Cold(a.state.Generation, a.current, now)
	}
	a.saveRollbackLocked()
}

// evidenceNote is a crash's cause and panic line, for the history.
func evidenceNote(ev *crashhandler.Evidence) string {
	var parts []string
	for _, s := range []string{ev.Cause, ev.Reason} {
		if s != "" && !slices.Contains(parts, s) {
			parts = append(parts, s)
		}
	}
	return strings.Join(parts, "; ")
}

// saveRollbackLocked writes the assessment to rollbackFile, making the
// state directory if need be; a.mu is held (or the agent is not shared
// yet). A failure is logged: the state in
// memory, which the next handoff carries, is what counts.
func (a *Agent) saveRollbackLocked() {
	b, err := json.MarshalIndent(savedRollback{BootID: a.bootID(), Generation: a.state.Generation, State: a.rb, TrialStart: a.trialStart}, "", "  ")
	if err == nil {
		// A command run before any daemon finds no /run/fastreboot.
		err = os.MkdirAll(a.opts.StateDir, 0o755)
	}
	if err == nil {
		err = atomicfile.WriteFile(filepath.Join(a.opts.StateDir, rollbackFile), b, 0o600)
	}
	if err != nil {
		a.log.Warn("saving the boot assessment", "err", err)
	}
	a.persistLocked()
}

// rollbackState returns a copy of the assessment (crashpath.Config.Rollback).
func (a *Agent) rollbackState() *rollback.State {
	a.mu.Lock()
	defer a.mu.Unlock()
	s := a.rb.Clone()
	return &s
}

// knownRunning makes a cold boot's first known manifest last-known-good
// (a.mu held).
func (a *Agent) knownRunningLocked(m *bootimage.Manifest) {
	if a.rb.Good == nil && a.rb.Trial == nil && m != nil {
		a.rb.Good = &rollback.Image{ID: rollback.ImageID(m), Generation: a.state.Generation, Manifest: *m, Since: a.now(), By: "cold boot"}
		a.setImageOriginLocked(a.rb.Good)
		a.saveRollbackLocked()
	}
}

// setImageOriginLocked records in im, the running image becoming good,
// where its manifest came from: its directory (for modules not cached), its
// file and its signed bytes (which a rollback to it carries).
func (a *Agent) setImageOriginLocked(im *rollback.Image) {
	im.Dir = a.currentDirLocked()
	if o := a.currentOrigin; o != nil {
		im.Path = o.Path
		if o.Signed != nil {
			im.Signed = o.Clone().Signed
		}
	}
}

// currentDirLocked is the directory of the running manifest's file ("" if
// unknown): where its modules' relative sources are.
func (a *Agent) currentDirLocked() string {
	if a.currentOrigin != nil && a.currentOrigin.Path != "" {
		return filepath.Dir(a.currentOrigin.Path)
	}
	return ""
}

// prefetchGood reads into the cache what is missing of the last-known-good
// and fallback images, from their manifests' directories, before the crash
// path takes the operation lock: its decision for a crash of the running
// image may be either, and it builds them from the cache alone. They may
// be missing: a crash image carries only its own manifest's modules, so
// the generation after a crash holds only the image that crashed. A
// failure is logged; the arm then says what is missing.
func (a *Agent) prefetchGood(ctx context.Context) {
	a.mu.Lock()
	var ims []rollback.Image
	for _, im := range []*rollback.Image{a.rb.Good, a.rb.Fallback} {
		if im != nil && im.Dir != "" {
			ims = append(ims, *im)
		}
	}
	a.mu.Unlock()
	for _, im := range ims {
		if _, err := a.mc.Prefetch(ctx, &im.Manifest, a.storage(im.Dir)); err != nil {
			a.log.Warn("a good image is not whole in the cache: a crash path decision for it cannot be armed", "image", im.Label(), "err", err)
		}
	}
}

// rollbackInfo is Info's view of the assessment (a.mu held).
func (a *Agent) rollbackInfoLocked() *RollbackInfo {
	gen := a.state.Generation
	in := &RollbackInfo{Generation: gen, State: a.rb.Clone(), OnTrial: a.rb.OnTrial(gen), NextCrash: a.rb.Decide(gen, a.now()), RollingBack: a.rollingBack}
	if in.OnTrial && a.rb.Trial.Deadline > 0 {
		in.Deadline = a.trialStart.Add(a.rb.Trial.Deadline)
	}
	if a.health != nil {
		h := *a.health
		in.Health = &h
	}
	return in
}

// Bless implements Service.
func (a *Agent) Bless(ctx context.Context, _ BlessRequest) (*BlessReport, error) {
	return a.bless(ctx, "bless")
}

// bless makes the running image last-known-good, then re-arms the crash
// path if this agent armed it (a crash now recovers into the blessed image,
// not the old one) and restages the staged image (its handoff carried the
// trial's assessment).
func (a *Agent) bless(ctx context.Context, by string) (*BlessReport, error) {
	a.mu.Lock()
	gen, cur := a.state.Generation, a.current
	if cur == nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("bless: %w: this generation does not know its manifest", rollback.ErrNotOnTrial)
	}
	next, err := a.rb.Bless(gen, cur, by, a.now())
	if err != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("bless: %w", err)
	}
	a.setImageOriginLocked(next.Good)
	a.rb = next
	a.saveRollbackLocked()
	arm, stage := a.lastArm, a.lastStage
	rep := &BlessReport{Generation: gen, Good: next.Good, Fallback: next.Fallback}
	a.mu.Unlock()
	a.log.Info("blessed", "generation", gen, "image", next.Good.Label(), "by", by)
	if arm != nil {
		if _, err := a.CrashArm(ctx, *arm); err != nil {
			rep.Warnings = append(rep.Warnings, "re-arming the crash path with the blessed image: "+err.Error())
		} else {
			rep.Rearmed = true
		}
	}
	if stage != nil {
		if _, err := a.Stage(ctx, *stage); err != nil {
			rep.Warnings = append(rep.Warnings, "restaging the staged image under the new assessment: "+err.Error())
		} else {
			rep.Restaged = true
		}
	}
	for _, w := range rep.Warnings {
		a.log.Warn("bless", "warning", w)
	}
	return rep, nil
}

// Rollback implements Service.
func (a *Agent) Rollback(ctx context.Context, req RollbackRequest) (*RollbackReport, error) {
	why := req.Why
	if why == "" {
		why = "asked by an operator"
	}
	a.mu.Lock()
	gen := a.state.Generation
	next, err := a.rb.RollBack(gen, gen+1, why, a.now())
	if err != nil {
		a.mu.Unlock()
		return nil, fmt.Errorf("rollback: %w", err)
	}
	good := *next.Good
	a.mu.Unlock()
	var src modcache.Source = noStorage{}
	if good.Dir != "" {
		src = a.storage(good.Dir)
	}
	pre, _ := a.mc.Prefetch(ctx, &good.Manifest, src)
	a.op.Lock()
	so := a.stageOptions(fastreboot.ReasonRollback)
	so.Rollback, so.Prefetched = &next, pre
	so.Origin = fastreboot.ImageOrigin(&good)
	staged, err := a.mc.Stage(ctx, a.crash.ProductionManifest(&good.Manifest), evictedMeanwhile{}, so)
	a.op.Unlock()
	rep := &RollbackReport{Good: &good, Why: why, Staged: &staged}
	if err != nil {
		return rep, fmt.Errorf("rollback to %s: %w", good.Label(), err)
	}
	a.mu.Lock()
	a.staged, a.report, a.lastStage = &good.Manifest, &staged, nil
	a.rollingBack = why
	a.mu.Unlock()
	a.log.Warn("rolling back to last-known-good", "image", good.Label(), "why", why, "reboot", req.Reboot)
	if req.Reboot {
		rep.Rebooting = true
		a.background.Add(1)
		go func() {
			defer a.background.Done()
			// Let the answer leave first.
			time.Sleep(200 * time.Millisecond)
			if err := a.reboot(context.WithoutCancel(ctx)); err != nil {
				a.log.Error("rollback: reboot", "err", err)
				a.mu.Lock()
				a.rollingBack = "reboot failed: " + err.Error()
				a.mu.Unlock()
			}
		}()
	}
	return rep, nil
}

// reboot jumps into the staged image: Options.Reboot, else a direct kexec.
func (a *Agent) reboot(ctx context.Context) error {
	if a.opts.Reboot != nil {
		return a.opts.Reboot(ctx)
	}
	return a.mc.Reboot(ctx, fastreboot.RebootOptions{})
}

// RunTrial runs the trial of this generation, if it is on trial: the
// health command (exit 0 in time blesses, anything else rolls back) and
// the deadline (no bless by then rolls back). A rollback stages
// last-known-good and reboots into it at once through Options.Reboot:
// the daemon is up, so the system is sane enough to kexec, which is
// quicker than a panic and keeps the crash path for real crashes. It
// returns at once; the work runs in the background until ctx ends.
func (a *Agent) RunTrial(ctx context.Context) {
	a.mu.Lock()
	gen := a.state.Generation
	if !a.rb.OnTrial(gen) {
		a.mu.Unlock()
		return
	}
	tr := *a.rb.Trial
	a.mu.Unlock()
	if tr.Deadline <= 0 && len(tr.Health) == 0 {
		a.log.Info("on trial: waiting for `fastreboot bless`", "image", tr.Label())
		return
	}
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		var deadline <-chan time.Time
		if tr.Deadline > 0 {
			t := time.NewTimer(time.Until(a.trialStart.Add(tr.Deadline)))
			defer t.Stop()
			deadline = t.C
		}
		health := make(chan error, 1)
		if len(tr.Health) > 0 {
			go func() { health <- a.runHealth(ctx, tr) }()
		}
		for {
			select {
			case <-ctx.Done():
				return
			case <-a.closing:
				return
			case err := <-health:
				if err == nil {
					if _, berr := a.bless(ctx, "health command"); berr != nil && !errors.Is(berr, rollback.ErrNotOnTrial) {
						a.log.Error("health command passed, bless failed", "err", berr)
					}
					return
				}
				a.autoRollback(ctx, gen, "health command failed: "+err.Error())
				return
			case <-deadline:
				a.autoRollback(ctx, gen, fmt.Sprintf("not blessed within the trial deadline %s", tr.Deadline))
				return
			}
		}
	}()
}

// autoRollback rolls back if generation gen is still on trial.
func (a *Agent) autoRollback(ctx context.Context, gen int, why string) {
	a.mu.Lock()
	still := a.rb.OnTrial(gen)
	a.mu.Unlock()
	if !still {
		return
	}
	if _, err := a.Rollback(ctx, RollbackRequest{Why: why, Reboot: true}); err != nil {
		a.log.Error("trial failed, rollback failed", "why", why, "err", err)
		a.mu.Lock()
		a.rollingBack = "rollback failed: " + err.Error()
		a.mu.Unlock()
	}
}

// runHealth runs the trial's health command with its timeout and records
// the outcome; nil means it exited 0 in time.
func (a *Agent) runHealth(ctx context.Context, tr rollback.Trial) error {
	timeout := tr.HealthTimeout
	if timeout <= 0 {
		timeout = rollback.DefaultHealthTimeout
	}
	hs := &HealthStatus{Command: slices.Clone(tr.Health), State: HealthRunning, ExitCode: -1}
	a.mu.Lock()
	a.health = hs
	a.mu.Unlock()
	hctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t0 := time.Now()
	cmd := exec.CommandContext(hctx, tr.Health[0], tr.Health[1:]...)
	var out tailBuffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	done := HealthStatus{Command: hs.Command, State: HealthPassed, ExitCode: 0, Output: out.String(), Took: time.Since(t0)}
	if cmd.ProcessState != nil {
		done.ExitCode = cmd.ProcessState.ExitCode()
	}
	if hctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("%q did not finish within %s", strings.Join(tr.Health, " "), timeout)
	} else if err != nil {
		err = fmt.Errorf("%q: %w", strings.Join(tr.Health, " "), err)
	}
	if err != nil {
		done.State, done.Error = HealthFailed, err.Error()
		if o := strings.TrimSpace(done.Output); o != "" {
			err = fmt.Errorf("%w; output: %s", err, lastLine(o))
		}
	}
	a.mu.Lock()
	a.health = &done
	a.mu.Unlock()
	a.log.Info("health command", "state", done.State, "exit", done.ExitCode, "took", done.Took, "err", done.Error)
	return err
}

func lastLine(s string) string {
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		return s[i+1:]
	}
	return s
}

// tailBuffer keeps the last healthOutputMax bytes written to it.
type tailBuffer struct {
	mu sync.Mutex
	b  []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if n := len(t.b); n > healthOutputMax {
		t.b = append([]byte(nil), t.b[n-healthOutputMax:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}

// Bless implements Service.
func (c *Client) Bless(ctx context.Context, req BlessRequest) (*BlessReport, error) {
	return call[BlessReport](ctx, c, pathBless, req)
}

// Rollback implements Service.
func (c *Client) Rollback(ctx context.Context, req RollbackRequest) (*RollbackReport, error) {
	return call[RollbackReport](ctx, c, pathRollback, req)
}

// rearmAt arms the crash path again (this agent's last arm request) once
// the oldest crash the decision counted leaves the crash-loop window: a
// crash after it is not part of the loop, and must not go to the fallback
// or the firmware. The decision is taken at arm time because the crash
// kernel cannot ask anyone at panic time.
func (a *Agent) rearmAt(t time.Time) {
	d := time.Until(t) + time.Second
	a.log.Info("crash path: re-arming when the crash-loop window moves on", "at", t)
	a.background.Add(1)
	go func() {
		defer a.background.Done()
		timer := time.NewTimer(d)
		defer timer.Stop()
		select {
		case <-a.closing:
			return
		case <-timer.C:
		}
		a.mu.Lock()
		arm := a.lastArm
		a.mu.Unlock()
		if arm == nil {
			return
		}
		if _, err := a.CrashArm(context.Background(), *arm); err != nil {
			a.log.Error("crash path: re-arming after the crash-loop window", "err", err)
		}
	}()
}
