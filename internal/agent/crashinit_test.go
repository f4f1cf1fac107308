package agent_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// TestCrashArmMinimalInitrd: --initrd minimal arms a crash image whose
// initrd is the crash init piece (the given program as /init) and the
// handoff piece, sized smaller than the image's initrd; the handoff names
// the choice, and a two-stage crash kernel's Recover restages production
// with production's own initrd and a handoff that still names it (so the
// re-arm after the crash builds the minimal initramfs again). Direct mode
// refuses it with nothing loaded.
func TestCrashArmMinimalInitrd(t *testing.T) {
	ctx := context.Background()
	im, _ := testimage.Update()
	_, p := im.WriteTemp(t)
	root := crashRoot(t, 384<<20)
	exe := filepath.Join(t.TempDir(), "fastreboot")
	prog := bytes.Repeat([]byte("static fastreboot binary "), 4000)
	if err := os.WriteFile(exe, prog, 0o755); err != nil {
		t.Fatal(err)
	}
	l := &flagLoader{}
	a, err := agent.New(ctx, agent.Options{Root: root, StateDir: t.TempDir(), CrashInit: exe, Machine: fastreboot.Options{
		Loader: l, Probe: func() error { return errors.New("probe must not run in tests") },
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()

	if _, err := a.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeDirect, Initrd: crashpath.InitrdMinimal}); err == nil ||
		!strings.Contains(err.Error(), "only for two-stage") || l.calls != 0 {
		t.Errorf("direct with the minimal initrd: %v, %d loads; want refused, nothing loaded", err, l.calls)
	}
	if _, err := a.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Initrd: "tiny"}); err == nil || !strings.Contains(err.Error(), `"tiny"`) {
		t.Errorf("initrd tiny: %v, want an error naming it", err)
	}

	image, err := a.CrashEstimate(ctx, agent.CrashEstimateRequest{Manifest: p, Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdImage})
	if err != nil {
		t.Fatal(err)
	}
	rep, err := a.CrashArm(ctx, agent.CrashArmRequest{Manifest: p, Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdMinimal})
	if err != nil {
		t.Fatalf("CrashArm --initrd minimal: %v", err)
	}
	if rep.Initrd != crashpath.InitrdMinimal {
		t.Errorf("report initrd %q", rep.Initrd)
	}
	recs, err := cpio.ReadAllRecords(cpio.Newc.Reader(bytes.NewReader(l.initrd[:rep.Image.PiecesBytes])))
	if err != nil {
		t.Fatal(err)
	}
	var gotInit bool
	for _, r := range recs {
		if r.Name == fastreboot.CrashInitPath {
			b := make([]byte, r.FileSize)
			r.ReadAt(b, 0)
			gotInit = bytes.Equal(b, prog) && r.Mode == cpio.S_IFREG|0o755
		}
	}
	if !gotInit {
		t.Errorf("the crash initrd's first piece has no /init with the program: %v", recs)
	}
	if h := handoffOf(t, l.initrd, rep.Image); string(h.Extra[crashpath.ExtraCrashInitrd]) != `"minimal"` || len(h.Carried) != len(h.Manifest.Modules) {
		t.Errorf("crash handoff: initrd %s, carried %d of %d modules", h.Extra[crashpath.ExtraCrashInitrd], len(h.Carried), len(h.Manifest.Modules))
	}
	// The reload is production's image whatever the crash initrd holds.
	if s := rep.State.Sizing; s.Reload != image.Sizing.Reload || s.Reload == 0 {
		t.Errorf("minimal sizing %+v, image %+v: want the same reload (production's initrd)", s, image.Sizing)
	}

	// The crash kernel: the handoff unpacked, Recover restages production.
	crash := crashRoot(t, 0)
	withCmdline(t, crash, "elfcorehdr=0x7f000000 "+l.cmdline)
	unpackHandoff(t, l.initrd, rep.Image, crash)
	prod := &flagLoader{}
	rr, err := crashpath.Recover(ctx, crashpath.Config{Root: crash, StateDir: t.TempDir(), MachineOptions: fastreboot.Options{
		Loader: prod, Probe: func() error { return errors.New("probe must not run in tests") },
	}}, crashpath.RecoverOptions{})
	if err != nil {
		t.Fatalf("Recover: %v", err)
	}
	if !bytes.HasPrefix(prod.initrd, im.Initrds[0].Data) {
		t.Error("production was restaged without its own initrd pieces")
	}
	h := handoffOf(t, prod.initrd, rr.Staged)
	var got crashpath.Initrd
	if err := json.Unmarshal(h.Extra[crashpath.ExtraCrashInitrd], &got); err != nil || got != crashpath.InitrdMinimal {
		t.Errorf("production's handoff names crash initrd %q (%v), want minimal", got, err)
	}
}

// TestCrashInitrdDefault: a request that names no crash initrd gets the
// minimal one in two-stage mode (also when it names no mode) and
// production's in direct mode, while a re-arm (--auto, or any request
// without --initrd in two-stage mode) keeps the choice the handoff records.
// Whatever was chosen is what the crash image's handoff names.
func TestCrashInitrdDefault(t *testing.T) {
	im, _ := testimage.Update()
	_, p := im.WriteTemp(t)
	for _, tc := range []struct {
		name string
		// handoffMode and handoffInitrd are what the previous
		// generation's handoff records ("": no handoff / not recorded).
		handoffMode   crashhandler.Mode
		handoffInitrd crashpath.Initrd
		req           agent.CrashArmRequest
		want          crashpath.Initrd
	}{
		{name: "two-stage", req: agent.CrashArmRequest{Mode: crashhandler.ModeTwoStage}, want: crashpath.InitrdMinimal},
		{name: "no mode: two-stage", want: crashpath.InitrdMinimal},
		{name: "direct", req: agent.CrashArmRequest{Mode: crashhandler.ModeDirect}, want: crashpath.InitrdImage},
		{name: "two-stage, image named", req: agent.CrashArmRequest{Mode: crashhandler.ModeTwoStage, Initrd: crashpath.InitrdImage}, want: crashpath.InitrdImage},
		{name: "auto keeps the handoff's image", handoffMode: crashhandler.ModeTwoStage, handoffInitrd: crashpath.InitrdImage,
			req: agent.CrashArmRequest{Auto: true}, want: crashpath.InitrdImage},
		{name: "auto keeps the handoff's minimal", handoffMode: crashhandler.ModeTwoStage, handoffInitrd: crashpath.InitrdMinimal,
			req: agent.CrashArmRequest{Auto: true}, want: crashpath.InitrdMinimal},
		{name: "auto, handoff names no initrd: the mode's default", handoffMode: crashhandler.ModeTwoStage,
			req: agent.CrashArmRequest{Auto: true}, want: crashpath.InitrdMinimal},
		{name: "auto in direct mode", handoffMode: crashhandler.ModeDirect, handoffInitrd: crashpath.InitrdImage,
			req: agent.CrashArmRequest{Auto: true}, want: crashpath.InitrdImage},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := crashRoot(t, 384<<20)
			if tc.handoffMode != "" {
				h := fastreboot.Handoff{Version: fastreboot.HandoffVersion, Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: *im.Manifest(),
					Extra: map[string]json.RawMessage{}}
				h.Extra[crashpath.ExtraCrashMode], _ = json.Marshal(tc.handoffMode)
				if tc.handoffInitrd != "" {
					h.Extra[crashpath.ExtraCrashInitrd], _ = json.Marshal(tc.handoffInitrd)
				}
				b, err := json.Marshal(h)
				if err != nil {
					t.Fatal(err)
				}
				writeRootFile(t, root, fastreboot.HandoffFile, string(b))
			}
			l := &flagLoader{}
			a := newCrashAgent(t, root, l)
			req := tc.req
			req.Manifest = p
			rep, err := a.CrashArm(context.Background(), req)
			if err != nil || !rep.Armed {
				t.Fatalf("CrashArm(%+v) = %+v, %v; want armed", req, rep, err)
			}
			h := handoffOf(t, l.initrd, rep.Image)
			var named crashpath.Initrd
			json.Unmarshal(h.Extra[crashpath.ExtraCrashInitrd], &named)
			if rep.Initrd != tc.want || named != tc.want {
				t.Errorf("crash initrd: report %q, crash handoff %q; want %q", rep.Initrd, named, tc.want)
			}
		})
	}
}
