package cpustop

import (
	"errors"
	"flag"
	"io"
	"strings"
	"testing"
)

func TestParsePolicy(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    Policy
		wantErr bool
	}{
		{"kernel", PolicyKernel, false},
		{"hotplug", PolicyHotplug, false},
		{"", "", true},
		{"Kernel", "", true},
		{"offline", "", true},
	} {
		got, err := ParsePolicy(tc.in)
		if tc.wantErr {
			if !errors.Is(err, ErrUnknownPolicy) || !strings.Contains(err.Error(), `want "kernel" or "hotplug"`) {
				t.Errorf("ParsePolicy(%q): err = %v, want ErrUnknownPolicy listing the choices", tc.in, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("ParsePolicy(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestPolicyFlag(t *testing.T) {
	p := DefaultPolicy
	fs := flag.NewFlagSet("reboot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&p, "cpu-policy", "kernel|hotplug")
	if err := fs.Parse([]string{"-cpu-policy=hotplug"}); err != nil {
		t.Fatal(err)
	}
	if p != PolicyHotplug {
		t.Errorf("policy = %q, want hotplug", p)
	}
	if err := fs.Parse([]string{"-cpu-policy=bogus"}); err == nil {
		t.Error("bogus policy accepted")
	}
}
