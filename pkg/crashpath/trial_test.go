package crashpath_test

import (
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
)

func TestTrialManifest(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"console=ttyS0 quiet", "console=ttyS0 quiet panic=10"},
		{"console=ttyS0 panic=-1", "console=ttyS0 panic=-1"},
		{"root=/dev/vda1 -- single", "root=/dev/vda1 panic=10 -- single"},
		{"", "panic=10"},
	} {
		m := &bootimage.Manifest{Name: "v2", Cmdline: tc.in}
		got := crashpath.TrialManifest(m)
		if got.Cmdline != tc.want {
			t.Errorf("TrialManifest(%q) = %q, want %q", tc.in, got.Cmdline, tc.want)
		}
		if m.Cmdline != tc.in {
			t.Errorf("TrialManifest changed its argument: %q", m.Cmdline)
		}
	}
}
