package bootimage

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDiff(t *testing.T) {
	tests := []struct {
		name   string
		old    *Manifest
		change func(m *Manifest)
		want   ManifestDiff
		str    string
	}{
		{
			name: "same", old: validManifest(), change: func(m *Manifest) {},
			want: ManifestDiff{}, str: "no changes",
		},
		{
			name: "name and source do not count", old: validManifest(),
			change: func(m *Manifest) { m.Name = "v2"; m.Modules[1].Source = "/elsewhere/base.cpio.zst" },
			want:   ManifestDiff{}, str: "no changes",
		},
		{
			name: "new site piece", old: validManifest(),
			change: func(m *Manifest) { m.Modules[2].SHA256 = digestA },
			want:   ManifestDiff{Changed: []string{"site.cpio"}}, str: "changed: site.cpio",
		},
		{
			name: "added and removed", old: validManifest(),
			change: func(m *Manifest) {
				m.Modules[1] = Module{Name: "base.cpio.gz", Role: RoleInitrd, Size: 1, SHA256: digestB}
				m.Modules = append(m.Modules, Module{Name: "kmods.cpio.xz", Role: RoleInitrd, Size: 2, SHA256: digestC})
			},
			want: ManifestDiff{Added: []string{"base.cpio.gz", "kmods.cpio.xz"}, Removed: []string{"base.cpio.zst"}},
			str:  "added: base.cpio.gz, kmods.cpio.xz\nremoved: base.cpio.zst",
		},
		{
			name: "cmdline", old: validManifest(),
			change: func(m *Manifest) { m.Cmdline += " crashkernel=256M" },
			want:   ManifestDiff{CmdlineChanged: true}, str: "cmdline changed",
		},
		{
			name: "initrd order", old: validManifest(),
			change: func(m *Manifest) { m.Modules[1], m.Modules[2] = m.Modules[2], m.Modules[1] },
			want:   ManifestDiff{OrderChanged: true}, str: "initrd order changed",
		},
		{
			name: "kernel listed elsewhere is no order change", old: validManifest(),
			change: func(m *Manifest) { m.Modules = append(m.Modules[1:], m.Modules[0]) },
			want:   ManifestDiff{},
			str:    "no changes",
		},
		{
			name: "role changed", old: validManifest(),
			change: func(m *Manifest) { m.Modules[0].Role, m.Modules[1].Role = RoleInitrd, RoleKernel },
			want:   ManifestDiff{Changed: []string{"vmlinuz", "base.cpio.zst"}},
			str:    "changed: vmlinuz, base.cpio.zst",
		},
		{
			name: "everything", old: validManifest(),
			change: func(m *Manifest) {
				m.Modules[0].SHA256 = digestC
				m.Modules = m.Modules[:2]
				m.Cmdline = ""
			},
			want: ManifestDiff{Removed: []string{"site.cpio"}, Changed: []string{"vmlinuz"}, CmdlineChanged: true},
			str:  "removed: site.cpio\nchanged: vmlinuz\ncmdline changed",
		},
		{
			name: "from nothing", old: nil, change: func(m *Manifest) {},
			want: ManifestDiff{Added: []string{"vmlinuz", "base.cpio.zst", "site.cpio"}, CmdlineChanged: true},
			str:  "added: vmlinuz, base.cpio.zst, site.cpio\ncmdline changed",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := validManifest()
			tt.change(m)
			got := Diff(tt.old, m)
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Diff (-want +got):\n%s", diff)
			}
			if got.Empty() != (tt.str == "no changes") {
				t.Errorf("Empty() = %v for %+v", got.Empty(), got)
			}
			if s := got.String(); s != tt.str {
				t.Errorf("String() = %q, want %q", s, tt.str)
			}
		})
	}
}
