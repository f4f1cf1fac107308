package rollback

import (
	"fmt"
	"slices"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// PreviousBoot is what a cold boot knows of the boot before it: the
// assessment that boot's daemon last kept on disk (its history, and what
// its crash path was armed with), and the panic log pstore kept of its end.
// Either part may be missing: a machine with no writable disk keeps no
// record, one with no pstore backend keeps no panic log. It is how the
// evidence chain of a crash loop that left for the firmware reaches the
// next cold boot: nothing in RAM outside pstore survives the firmware.
type PreviousBoot struct {
	// BootID is the kernel's random boot id of that boot; Generation its
	// last generation that saved the record, at SavedAt.
	BootID     string    `json:"boot_id,omitempty"`
	Generation int       `json:"generation,omitempty"`
	SavedAt    time.Time `json:"saved_at,omitzero"`
	// Armed is what its crash path was last armed with: for
	// ActionFirmware no crash image was loaded, so a panic rebooted
	// through the firmware. Nil when it was not armed (or not known).
	Armed *Decision `json:"armed,omitempty"`
	// History is that boot's history, oldest first.
	History []Event `json:"history,omitempty"`
	// Panic is the panic line (and its cause) of the panic log pstore
	// kept, at PanicAt; "" when there is none newer than the record.
	Panic   string    `json:"panic,omitempty"`
	PanicAt time.Time `json:"panic_at,omitzero"`
}

// FirmwareLoop reports whether the previous boot's crash path was armed to
// leave a crash loop for the firmware.
func (p *PreviousBoot) FirmwareLoop() bool {
	return p != nil && p.Armed != nil && p.Armed.Action == ActionFirmware
}

// Ending says, in a sentence, how the previous boot ended as far as the
// record and pstore tell.
func (p *PreviousBoot) Ending() string {
	if p == nil {
		return ""
	}
	s := "previous boot"
	if p.Generation > 0 {
		s += fmt.Sprintf(" (generation %d", p.Generation)
		if !p.SavedAt.IsZero() {
			s += ", record of " + p.SavedAt.UTC().Format(time.RFC3339)
		}
		s += ")"
	}
	switch {
	case p.FirmwareLoop() && p.Panic != "":
		s += " panicked with no crash image armed and rebooted through the firmware: " + p.Armed.Why + "; its panic: " + p.Panic
	case p.FirmwareLoop():
		s += " was set to reboot through the firmware on its next panic (" + p.Armed.Why + "); pstore kept no panic log of its end"
	case p.Panic != "" && p.Armed != nil:
		s += " panicked and did not come back through the crash image it had armed (" + string(p.Armed.Action) + ": " + p.Armed.Why + "); its panic: " + p.Panic
	case p.Panic != "":
		s += " panicked with no crash image armed: " + p.Panic
	default:
		s += " ended with no panic on record (a shutdown, a power cycle, or a panic pstore did not keep)"
	}
	return s
}

// Clone returns a deep copy of p.
func (p *PreviousBoot) Clone() *PreviousBoot {
	if p == nil {
		return nil
	}
	c := *p
	if p.Armed != nil {
		a := *p.Armed
		c.Armed = &a
	}
	c.History = slices.Clone(p.History)
	return &c
}

// ColdAfter is Cold for a cold boot that knows the boot before it: the
// state keeps prev, and the start event says how prev ended, with reason
// EventFirmware when prev's crash path left a crash loop for the firmware.
func ColdAfter(gen int, m *bootimage.Manifest, prev *PreviousBoot, now time.Time) State {
	s := Cold(gen, m, now)
	if prev == nil {
		return s
	}
	s.Previous = prev.Clone()
	s.History[len(s.History)-1] = s.startEvent(gen)
	return s
}

// startIndex is the index in History of generation gen's cold (or
// firmware) start event, -1 if the history no longer holds it.
func (s State) startIndex(gen int) int {
	return slices.IndexFunc(s.History, func(h Event) bool {
		return h.Generation == gen && (h.Reason == EventCold || h.Reason == EventFirmware)
	})
}

// startEvent is the cold start event of generation gen, saying how the
// previous boot ended.
func (s State) startEvent(gen int) Event {
	e := Event{Generation: gen, Reason: EventCold}
	if i := s.startIndex(gen); i >= 0 {
		e = s.History[i]
	}
	if s.Previous.FirmwareLoop() {
		e.Reason = EventFirmware
	}
	e.Note = s.Previous.Ending()
	return e
}

// WithPreviousPanic returns s with the previous boot's last panic, from
// the panic log pstore kept (a PreviousBoot with no record when s had
// none), and the start event of the cold generation gen saying so.
func (s State) WithPreviousPanic(gen int, panicLine string, at time.Time) State {
	s = s.Clone()
	if s.Previous == nil {
		s.Previous = &PreviousBoot{}
	}
	s.Previous.Panic, s.Previous.PanicAt = panicLine, at
	e := s.startEvent(gen)
	if i := s.startIndex(gen); i >= 0 {
		s.History[i] = e
		return s
	}
	return s.event(e)
}
