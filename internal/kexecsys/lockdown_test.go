package kexecsys

import (
	"strings"
	"testing"
)

func TestParseLockdown(t *testing.T) {
	for in, want := range map[string]string{
		"[none] integrity confidentiality\n": "none",
		"none [integrity] confidentiality":   "integrity",
		"none integrity [confidentiality]":   "confidentiality",
		"":                                   "",
		"[] none":                            "",
	} {
		got, err := ParseLockdown([]byte(in))
		if got != want || (err != nil) != (want == "") {
			t.Errorf("ParseLockdown(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

// FuzzParseLockdown parses an arbitrary lockdown state file: an accepted
// mode is a word of the file, in brackets there, without blanks.
func FuzzParseLockdown(f *testing.F) {
	f.Add([]byte("[none] integrity confidentiality\n"))
	f.Add([]byte("none [integrity] confidentiality"))
	f.Add([]byte("[] [x"))
	f.Fuzz(func(t *testing.T, b []byte) {
		mode, err := ParseLockdown(b)
		if err != nil {
			return
		}
		if mode == "" || strings.ContainsAny(mode, " \t\n") || !strings.Contains(string(b), "["+mode+"]") {
			t.Errorf("ParseLockdown(%q) = %q", b, mode)
		}
	})
}
