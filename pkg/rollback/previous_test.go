package rollback

import (
	"strings"
	"testing"
)

func TestColdAfterAndEnding(t *testing.T) {
	firmware := &Decision{Action: ActionFirmware, Why: "3rd crash within 15m0s of a@x"}
	crash := &Decision{Action: ActionCrash, Why: "a crash recovers into a@x"}
	for _, tc := range []struct {
		name       string
		prev       *PreviousBoot
		panicLine  string
		wantReason string
		wantEnding string
	}{
		{"nothing known", nil, "", EventCold, ""},
		{"firmware loop and its panic", &PreviousBoot{Generation: 5, Armed: firmware}, "sysrq triggered crash", EventFirmware, "rebooted through the firmware: 3rd crash within 15m0s of a@x; its panic: sysrq triggered crash"},
		{"firmware loop, no panic log", &PreviousBoot{Generation: 5, Armed: firmware}, "", EventFirmware, "pstore kept no panic log"},
		{"armed crash image that did not come back", &PreviousBoot{Generation: 2, Armed: crash}, "oops", EventCold, "did not come back through the crash image it had armed (crash: a crash recovers into a@x); its panic: oops"},
		{"not armed, a panic", &PreviousBoot{Generation: 2}, "oops", EventCold, "panicked with no crash image armed: oops"},
		{"not armed, no panic", &PreviousBoot{Generation: 2}, "", EventCold, "no panic on record"},
		{"no record, a panic", nil, "oops", EventCold, "previous boot panicked with no crash image armed: oops"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := ColdAfter(1, imgA, tc.prev, t0)
			if tc.panicLine != "" {
				s = s.WithPreviousPanic(1, tc.panicLine, t0)
			}
			if len(s.History) != 1 || s.History[0].Generation != 1 || s.History[0].Reason != tc.wantReason || s.History[0].Image == "" {
				t.Fatalf("history %+v, want one start event, reason %s, naming the image", s.History, tc.wantReason)
			}
			if s.Good == nil || s.Good.ID != ImageID(imgA) {
				t.Errorf("good %+v, want the cold boot's image", s.Good)
			}
			if got := s.Previous.Ending(); !strings.Contains(got, tc.wantEnding) || (tc.wantEnding == "") != (got == "") {
				t.Errorf("ending %q, want it to contain %q", got, tc.wantEnding)
			}
			if s.History[0].Note != s.Previous.Ending() {
				t.Errorf("start note %q, want the ending %q", s.History[0].Note, s.Previous.Ending())
			}
		})
	}
}

func TestPreviousBootCloned(t *testing.T) {
	prev := &PreviousBoot{Armed: &Decision{Action: ActionFirmware}, History: []Event{{Generation: 3, Reason: EventCrash}}}
	s := ColdAfter(1, imgA, prev, t0)
	prev.Armed.Action = ActionCrash
	prev.History[0].Reason = EventBless
	c := s.Clone()
	c.Previous.History[0].Note = "changed"
	if s.Previous.Armed.Action != ActionFirmware || s.Previous.History[0].Reason != EventCrash || s.Previous.History[0].Note != "" {
		t.Errorf("the state shares the previous boot with its source or its clone: %+v", s.Previous)
	}
}
