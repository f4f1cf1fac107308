package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
)

// TestInitrdLimitFlags: an initrd piece of about 1 KB that unpacks to 32
// MiB is refused under the default ratio, by name with its sizes, with or
// without the daemon; --initrd-max-ratio raises the limit (given to the
// daemon when it starts), and --initrd-max-unpacked sets the total.
func TestInitrdLimitFlags(t *testing.T) {
	im := testimage.Default()
	im.Initrds[1] = testimage.Blob{Name: "bomb.cpio.zst", Data: testimage.InitrdBomb(32 << 20)}
	for _, tc := range []struct {
		name   string
		global []string
		daemon bool
		want   []string // nil: staged
	}{
		{"default", nil, false, []string{`"bomb.cpio.zst"`, "zstd piece at offset 0", "more than 100 times", "the piece has at most"}},
		{"default, daemon", nil, true, []string{`"bomb.cpio.zst"`, "more than 100 times"}},
		{"ratio raised", []string{"--initrd-max-ratio", "100000"}, false, nil},
		{"ratio raised, daemon", []string{"--initrd-max-ratio", "100000"}, true, nil},
		{"no ratio, total 16M", []string{"--initrd-max-ratio", "-1", "--initrd-max-unpacked", "16M"}, false, []string{`"bomb.cpio.zst"`, "more than the 16777216 an initrd may"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := newHarness(t)
			_, p := im.WriteTemp(t)
			global := tc.global
			if tc.daemon {
				h.startDaemonWith(global...)
				global = nil
			} else {
				global = append(slices.Clone(global), "--no-daemon")
			}
			r := h.run(append(global, "stage", "--dry-run", p, "--json")...)
			if tc.want == nil {
				if r.code != ExitOK {
					t.Fatalf("exit %d: %s", r.code, r.stderr)
				}
				return
			}
			var rep ErrorV1
			decodeStdout(t, r, &rep)
			if r.code != ExitFailed || !slices.Contains(rep.Error.Kinds, "bootimage.unpack_limit") || !slices.Contains(rep.Error.Kinds, "bootimage.bad_initrd") {
				t.Errorf("exit %d, kinds %v; want %d with bootimage.unpack_limit and bootimage.bad_initrd", r.code, rep.Error.Kinds, ExitFailed)
			}
			for _, w := range tc.want {
				if !strings.Contains(rep.Error.Message, w) {
					t.Errorf("message %q does not say %q", rep.Error.Message, w)
				}
			}
		})
	}
	for _, bad := range [][]string{{"--initrd-max-ratio", "0"}, {"--initrd-max-ratio", "x"}, {"--initrd-max-unpacked", "4Q"}} {
		if r := newHarness(t).run(append(bad, "status")...); r.code != ExitUsage {
			t.Errorf("%v: exit %d, want %d", bad, r.code, ExitUsage)
		}
	}
}
