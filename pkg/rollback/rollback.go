// Package rollback is the boot assessment of fastreboot's generations: which
// image is last-known-good, which generation is on trial, how many times the
// running image crashed lately, and what a crash, a missed deadline or a
// failed health command boots next. It is a pure state machine: it reads no
// file and loads nothing. The state travels from one generation to the next
// in the handoff (fastreboot.Handoff.Rollback); the daemon applies it, and
// the crash path arms what Decide says.
//
// The states and their transitions:
//
//	          stage (other modules)              bless / health ok
//	[good G] ----------------------> [trial T] ------------------> [good T, fallback G]
//	   ^  |                             |
//	   |  | crash (< K in W)            | crash, missed deadline, health failed
//	   |  +--> [good G] (reason crash)  v
//	   +-------------------------------[good G] (reason rollback)
//
//	[good G, fallback F] --K-th crash within W--> [good F] (reason rollback)
//	[good G, no fallback] --K-th crash within W--> firmware reboot (panic=N)
//
// A cold boot's image is good: the firmware's boot loader chose it. The
// firmware keeps nothing of RAM but pstore, so the chain of a crash loop
// that left for the firmware reaches the next cold boot from a record the
// daemon keeps on disk and the panic log pstore keeps ([PreviousBoot],
// [ColdAfter]).
package rollback

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
)

// Defaults and bounds of a Policy.
const (
	// DefaultMaxCrashes is K: the K-th crash of one image within Window
	// leaves that image.
	DefaultMaxCrashes = 3
	// DefaultWindow is W.
	DefaultWindow = 15 * time.Minute
	// MaxMaxCrashes bounds K.
	MaxMaxCrashes = 100
	// MinWindow and MaxWindow bound W.
	MinWindow = time.Second
	MaxWindow = 30 * 24 * time.Hour
	// MinDeadline and MaxDeadline bound a trial's deadline (0 is none).
	MinDeadline = time.Second
	MaxDeadline = 30 * 24 * time.Hour
	// HistoryLen is how many events State.History keeps.
	HistoryLen = 16
)

// Sentinel errors.
var (
	// ErrNotOnTrial: a bless or a trial rollback when no generation is on
	// trial.
	ErrNotOnTrial = errors.New("rollback: nothing on trial")
	// ErrPolicy: a crash-loop policy or trial setting out of range.
	ErrPolicy = errors.New("rollback: invalid policy")
	// ErrNoGood: a rollback with no last-known-good image to go back to.
	ErrNoGood = errors.New("rollback: no last-known-good image")
)

// Policy is the crash-loop protection: the MaxCrashes-th crash of one image
// within Window leaves it (for the fallback image, or the firmware).
type Policy struct {
	MaxCrashes int           `json:"max_crashes"`
	Window     time.Duration `json:"window_ns"`
}

// DefaultPolicy is K = DefaultMaxCrashes within W = DefaultWindow.
func DefaultPolicy() Policy {
	return Policy{MaxCrashes: DefaultMaxCrashes, Window: DefaultWindow}
}

// Validate says which value is out of range.
func (p Policy) Validate() error {
	if p.MaxCrashes < 1 || p.MaxCrashes > MaxMaxCrashes {
		return fmt.Errorf("%w: max crashes %d: want 1 to %d", ErrPolicy, p.MaxCrashes, MaxMaxCrashes)
	}
	if p.Window < MinWindow || p.Window > MaxWindow {
		return fmt.Errorf("%w: crash window %s: want %s to %s", ErrPolicy, p.Window, MinWindow, MaxWindow)
	}
	return nil
}

// orDefault fills a zero policy (a handoff written before policies).
func (p Policy) orDefault() Policy {
	if p.MaxCrashes == 0 && p.Window == 0 {
		return DefaultPolicy()
	}
	return p
}

// ImageID names a boot image by its modules: the SHA-256 of each module's
// role and digest, in order, hashed again (16 hex digits). The command line
// is not part of it, as fastreboot rewrites it for every generation (the
// crash words, the recorded memory map): an update that changes only the
// command line is not put on trial.
func ImageID(m *bootimage.Manifest) string {
	h := sha256.New()
	for _, mod := range m.Modules {
		fmt.Fprintf(h, "%s %s\n", mod.Role, mod.SHA256)
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// Image is an image known to be good.
type Image struct {
	// ID is ImageID(&Manifest).
	ID string `json:"id"`
	// Generation is the generation that proved it good (blessed it, or
	// booted it cold).
	Generation int                `json:"generation"`
	Manifest   bootimage.Manifest `json:"manifest"`
	// Since is when it became good; By says how ("cold boot", "bless",
	// "health command", "crash loop fallback").
	Since time.Time `json:"since,omitzero"`
	By    string    `json:"by,omitempty"`
	// Dir is the directory of the manifest's file, where its modules'
	// relative sources are read from when they are not cached ("" if
	// unknown: the image must be served from the cache).
	Dir string `json:"dir,omitempty"`
	// Path is the manifest's file ("" if unknown) and Signed its signed
	// bytes when it was signed: a rollback to this image carries them in
	// its handoff, so that the generation it boots can verify its own
	// image under a trust root.
	Path   string              `json:"path,omitempty"`
	Signed *manifestsig.Signed `json:"signed,omitempty"`
}

// Label names the image in messages: the manifest's name and the ID.
func (im *Image) Label() string {
	if im == nil {
		return "none"
	}
	return label(im.Manifest.Name, im.ID)
}

func label(name, id string) string {
	if name == "" {
		return id
	}
	return name + "@" + id
}

// TrialOptions are what a trial generation must do to be blessed
// automatically, and when it gives up.
type TrialOptions struct {
	// Deadline, when not zero, is how long after the trial generation's
	// daemon starts a bless may come; past it the daemon rolls back.
	Deadline time.Duration `json:"deadline_ns,omitempty"`
	// Health, when set, is a command (argv) the trial generation's daemon
	// runs once it starts: exit 0 within HealthTimeout blesses, anything
	// else rolls back.
	Health        []string      `json:"health,omitempty"`
	HealthTimeout time.Duration `json:"health_timeout_ns,omitempty"`
}

// DefaultHealthTimeout is a health command's timeout when none is given.
const DefaultHealthTimeout = 5 * time.Minute

// Validate says which setting is out of range.
func (t TrialOptions) Validate() error {
	if t.Deadline != 0 && (t.Deadline < MinDeadline || t.Deadline > MaxDeadline) {
		return fmt.Errorf("%w: trial deadline %s: want 0 (none) or %s to %s", ErrPolicy, t.Deadline, MinDeadline, MaxDeadline)
	}
	if t.HealthTimeout < 0 || t.HealthTimeout > MaxDeadline {
		return fmt.Errorf("%w: health timeout %s: want 0 (default %s) to %s", ErrPolicy, t.HealthTimeout, DefaultHealthTimeout, MaxDeadline)
	}
	if t.HealthTimeout != 0 && len(t.Health) == 0 {
		return fmt.Errorf("%w: a health timeout without a health command", ErrPolicy)
	}
	if len(t.Health) > 0 && strings.TrimSpace(t.Health[0]) == "" {
		return fmt.Errorf("%w: empty health command", ErrPolicy)
	}
	return nil
}

// Trial is a generation booted from an image not proven good yet.
type Trial struct {
	ID         string `json:"id"`
	Name       string `json:"name,omitempty"`
	Generation int    `json:"generation"`
	// Since is when the image was staged for the trial.
	Since time.Time `json:"since,omitzero"`
	TrialOptions
}

// Label names the trial image in messages.
func (t *Trial) Label() string { return label(t.Name, t.ID) }

// Reasons of an Event (a generation's start reasons, and the state's own
// events).
const (
	EventCold     = "cold"
	EventUpdate   = "update"
	EventCrash    = "crash"
	EventRollback = "rollback"
	EventManual   = "manual"
	EventBless    = "bless"
	EventFirmware = "firmware"
)

// Event is one line of the history.
type Event struct {
	Generation int       `json:"generation"`
	Reason     string    `json:"reason"`
	Image      string    `json:"image,omitempty"`
	At         time.Time `json:"at,omitzero"`
	Note       string    `json:"note,omitempty"`
}

// Action is what a crash, or a failed trial, boots.
type Action string

// Actions.
const (
	// ActionCrash recovers into the image that crashed.
	ActionCrash Action = "crash"
	// ActionRollback boots the last-known-good image (or, after a crash
	// loop of it, the fallback).
	ActionRollback Action = "rollback"
	// ActionFirmware arms no kexec: the panic reboots through the
	// firmware (panic=N), whose boot loader picks the image.
	ActionFirmware Action = "firmware"
)

// Decision is what the next crash of the running generation boots.
type Decision struct {
	Action Action `json:"action"`
	// Image is the image to boot for ActionRollback; nil otherwise (the
	// running image, or the firmware's choice).
	Image *Image `json:"image,omitempty"`
	// Why says why, in a sentence.
	Why string `json:"why"`
	// LoopEnds, when not zero, is when the oldest counted crash leaves
	// the window: a decision made for a crash after it may differ.
	LoopEnds time.Time `json:"loop_ends,omitzero"`
}

// State is the boot assessment a generation runs under.
type State struct {
	// Good is the last-known-good image; nil when none is known (a cold
	// boot whose image was never named).
	Good *Image `json:"good,omitempty"`
	// Fallback is the good image before Good: where a crash loop of Good
	// goes. Nil: a crash loop of Good reboots through the firmware.
	Fallback *Image `json:"fallback,omitempty"`
	// Trial is the generation on trial; nil when the running generation
	// runs Good.
	Trial *Trial `json:"trial,omitempty"`
	// Crashes are the times of the recent crashes of the running image,
	// oldest first, those older than the window dropped.
	Crashes []time.Time `json:"crashes,omitempty"`
	Policy  Policy      `json:"policy"`
	// Pending is the decision a crash image was armed with: the
	// generation it boots applies it (Adopt).
	Pending *Decision `json:"pending,omitempty"`
	// History is the last HistoryLen events, oldest first.
	History []Event `json:"history,omitempty"`
	// Previous is what the cold boot that started this boot knew of the
	// boot before it (ColdAfter); nil when it knew nothing.
	Previous *PreviousBoot `json:"previous_boot,omitempty"`
}

// Cold is the state of a cold-booted generation: its image, if known, is
// good.
func Cold(gen int, m *bootimage.Manifest, now time.Time) State {
	s := State{Policy: DefaultPolicy()}
	s = s.event(Event{Generation: gen, Reason: EventCold, At: now})
	if m != nil {
		s.Good = &Image{ID: ImageID(m), Generation: gen, Manifest: *m, Since: now, By: "cold boot"}
		s.History[len(s.History)-1].Image = s.Good.Label()
	}
	return s
}

// Clone returns a deep copy of s.
func (s State) Clone() State {
	c := s
	if s.Good != nil {
		g := *s.Good
		c.Good = &g
	}
	if s.Fallback != nil {
		f := *s.Fallback
		c.Fallback = &f
	}
	if s.Trial != nil {
		t := *s.Trial
		t.Health = slices.Clone(t.Health)
		c.Trial = &t
	}
	if s.Pending != nil {
		p := *s.Pending
		c.Pending = &p
	}
	c.Crashes = slices.Clone(s.Crashes)
	c.History = slices.Clone(s.History)
	c.Previous = s.Previous.Clone()
	return c
}

func (s State) event(e Event) State {
	s.History = append(slices.Clone(s.History), e)
	if n := len(s.History); n > HistoryLen {
		s.History = s.History[n-HistoryLen:]
	}
	return s
}

// OnTrial reports whether generation gen is on trial.
func (s State) OnTrial(gen int) bool { return s.Trial != nil && s.Trial.Generation == gen }

// WithPolicy returns s with crash-loop policy p, or an error naming the
// value out of range (s unchanged).
func (s State) WithPolicy(p Policy) (State, error) {
	if err := p.Validate(); err != nil {
		return s, err
	}
	s = s.Clone()
	s.Policy = p
	return s, nil
}

// Stage is the state the next generation (next) starts under when the
// running one stages m for reason (an Event reason: update, manual): an
// image whose modules are Good's is not on trial; one whose modules are the
// running trial's stays on trial (with t, if given, else the trial's
// options); any other goes on trial with t. A new image starts with no
// crashes counted.
func (s State) Stage(next int, m *bootimage.Manifest, reason string, t *TrialOptions, now time.Time) (State, error) {
	if t != nil {
		if err := t.Validate(); err != nil {
			return s, err
		}
	}
	s = s.Clone()
	s.Policy = s.Policy.orDefault()
	s.Pending = nil
	id := ImageID(m)
	note := ""
	switch {
	case s.Good != nil && s.Good.ID == id:
		if s.Trial != nil {
			note = "last-known-good again: trial of " + s.Trial.Label() + " ended"
			s.Crashes = nil
		}
		s.Trial = nil
	case s.Trial != nil && s.Trial.ID == id:
		s.Trial.Generation = next
		if t != nil {
			s.Trial.TrialOptions = *t
		}
		note = "still on trial"
	default:
		tr := &Trial{ID: id, Name: m.Name, Generation: next, Since: now}
		if t != nil {
			tr.TrialOptions = *t
		}
		s.Trial = tr
		s.Crashes = nil
		note = "on trial; last-known-good " + s.Good.Label()
	}
	return s.event(Event{Generation: next, Reason: reason, Image: label(m.Name, id), At: now, Note: note}), nil
}

// Bless makes generation gen's image, m, the last-known-good one: the old
// one becomes the fallback. ErrNotOnTrial (s unchanged) when gen is not on
// trial.
func (s State) Bless(gen int, m *bootimage.Manifest, by string, now time.Time) (State, error) {
	if !s.OnTrial(gen) {
		return s, s.notOnTrial(gen)
	}
	id := ImageID(m)
	if id != s.Trial.ID {
		return s, fmt.Errorf("rollback: generation %d runs image %s, not the trial's %s", gen, label(m.Name, id), s.Trial.Label())
	}
	s = s.Clone()
	if s.Good != nil && s.Good.ID != id {
		s.Fallback = s.Good
	}
	s.Good = &Image{ID: id, Generation: gen, Manifest: *m, Since: now, By: by}
	s.Trial = nil
	s.Crashes = nil
	return s.event(Event{Generation: gen, Reason: EventBless, Image: s.Good.Label(), At: now, Note: by}), nil
}

func (s State) notOnTrial(gen int) error {
	if s.Trial != nil {
		return fmt.Errorf("%w: generation %d runs last-known-good, the trial was generation %d", ErrNotOnTrial, gen, s.Trial.Generation)
	}
	return fmt.Errorf("%w: generation %d runs last-known-good image %s", ErrNotOnTrial, gen, s.Good.Label())
}

// recent returns the crashes within the window before now.
func (s State) recent(now time.Time) []time.Time {
	w := s.Policy.orDefault().Window
	var r []time.Time
	for _, c := range s.Crashes {
		if now.Sub(c) < w {
			r = append(r, c)
		}
	}
	return r
}

// Decide says what a crash of generation gen at now boots: on trial, the
// last-known-good image (rollback); the Policy.MaxCrashes-th crash of the
// image within the window, the fallback image (rollback) or, with none, the
// firmware; else the same image again (crash).
func (s State) Decide(gen int, now time.Time) Decision {
	p := s.Policy.orDefault()
	if s.OnTrial(gen) {
		if s.Good == nil {
			return Decision{Action: ActionCrash, Why: fmt.Sprintf("generation %d is on trial but no last-known-good image is known: recovering into the same image", gen)}
		}
		g := *s.Good
		return Decision{Action: ActionRollback, Image: &g, Why: fmt.Sprintf("generation %d runs %s on trial: a crash rolls back to last-known-good %s", gen, s.Trial.Label(), g.Label())}
	}
	r := s.recent(now)
	n := len(r) + 1
	if n < p.MaxCrashes {
		return Decision{Action: ActionCrash, Why: fmt.Sprintf("crash %d within %s (max crashes %d): recovering into the same image", n, p.Window, p.MaxCrashes)}
	}
	loop := fmt.Sprintf("crash %d within %s (max crashes %d): a crash loop", n, p.Window, p.MaxCrashes)
	var ends time.Time
	if len(r) > 0 {
		ends = r[0].Add(p.Window)
	}
	if s.Fallback != nil {
		f := *s.Fallback
		return Decision{Action: ActionRollback, Image: &f, Why: loop + " of " + s.Good.Label() + ": rolling back to " + f.Label(), LoopEnds: ends}
	}
	return Decision{Action: ActionFirmware, Why: loop + " of " + s.Good.Label() + ", with no other good image: rebooting through the firmware", LoopEnds: ends}
}

// Armed returns s with d as the pending decision: the state a crash image
// armed with d carries.
func (s State) Armed(d Decision) State {
	s = s.Clone()
	s.Pending = &d
	return s
}

// Adopt is the state of generation gen started for reason (an Event reason)
// under s, as carried by its handoff: a pending crash decision is applied
// (the crash at crashAt, note saying what it was: a rollback from a trial
// ends it, a rollback after a crash loop makes the fallback good, a crash
// counts against the image), and the start is recorded.
func (s State) Adopt(gen int, reason string, crashAt time.Time, note string, now time.Time) State {
	s = s.Clone()
	s.Policy = s.Policy.orDefault()
	d := s.Pending
	s.Pending = nil
	if d == nil || (reason != EventCrash && reason != EventRollback) {
		return s
	}
	if crashAt.IsZero() {
		crashAt = now
	}
	ev := Event{Generation: gen, Reason: string(d.Action), At: now, Note: note}
	switch d.Action {
	case ActionRollback:
		if s.Trial != nil && d.Image != nil && s.Good != nil && d.Image.ID == s.Good.ID {
			ev.Note = joinNote("trial of "+s.Trial.Label()+" failed", note)
			s.Trial = nil
		} else if d.Image != nil {
			ev.Note = joinNote("crash loop of "+s.Good.Label(), note)
			g := *d.Image
			g.By = "crash loop fallback"
			s.Good, s.Fallback = &g, nil
		}
		s.Crashes = nil
		ev.Image = s.Good.Label()
	case ActionCrash:
		s.Crashes = append(s.recent(crashAt), crashAt)
		if s.Trial != nil {
			// Recovered into the same image (no good one to roll back
			// to): the new generation carries on its trial.
			s.Trial.Generation = gen
			ev.Image = s.Trial.Label()
		} else {
			ev.Image = s.Good.Label()
		}
	}
	return s.event(ev)
}

// RollBack is the state a trial's failure leaves for the generation
// booted into last-known-good (next), when the trial generation gen itself
// rolls back (a missed deadline, a failed health command). ErrNotOnTrial or
// ErrNoGood leave s unchanged.
func (s State) RollBack(gen, next int, why string, now time.Time) (State, error) {
	if !s.OnTrial(gen) {
		return s, s.notOnTrial(gen)
	}
	if s.Good == nil {
		return s, fmt.Errorf("%w: generation %d is on trial", ErrNoGood, gen)
	}
	s = s.Clone()
	note := joinNote("trial of "+s.Trial.Label()+" failed", why)
	s.Trial, s.Crashes, s.Pending = nil, nil, nil
	return s.event(Event{Generation: next, Reason: EventRollback, Image: s.Good.Label(), At: now, Note: note}), nil
}

func joinNote(a, b string) string {
	if b == "" {
		return a
	}
	return a + ": " + b
}
