package kexecsys

import "testing"

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
