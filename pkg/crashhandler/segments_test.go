package crashhandler

import (
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// fakeSegments is a SegmentsImage: it records the command lines it was
// loaded with and sets kexec_crash_loaded like the kernel.
type fakeSegments struct {
	t     *testing.T
	root  string
	bytes int64
	err   error
	calls []string
}

func (s *fakeSegments) ReservationBytes(Mode, int) int64 { return s.bytes }

func (s *fakeSegments) LoadOnCrash(cmdline string) error {
	s.calls = append(s.calls, cmdline)
	if s.err != nil {
		return s.err
	}
	writeFile(s.t, filepath.Join(s.root, "sys/kernel/kexec_crash_loaded"), "1\n")
	return nil
}

func TestArmLoadMethod(t *testing.T) {
	forbidden := fmt.Errorf("%w: kexec_load(...) = EPERM", ErrKexecLoadForbidden)
	tests := []struct {
		name        string
		reservation int64
		mode        Mode
		load        LoadMethod
		lockdown    string // content of sys/kernel/security/lockdown; "" none
		noSegments  bool
		segErr      error
		segBytes    int64
		// want
		wantLoad     LoadMethod
		wantFallback string // substring
		wantSegCalls int
		wantFile     int
		wantErr      error
		wantErrText  []string
	}{
		{name: "segments in direct mode", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			wantLoad: LoadSegments, wantSegCalls: 1},
		{name: "lockdown none", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			lockdown: "[none] integrity confidentiality\n", wantLoad: LoadSegments, wantSegCalls: 1},
		{name: "lockdown integrity falls back before building", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments,
			lockdown: "none [integrity] confidentiality\n", noSegments: true,
			wantLoad: LoadFile, wantFallback: `is "integrity"`, wantFile: 1},
		{name: "EPERM falls back", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20, segErr: forbidden,
			wantLoad: LoadFile, wantFallback: "EPERM", wantSegCalls: 1, wantFile: 1},
		{name: "EPERM and the file image does not fit", reservation: 96 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20, segErr: forbidden,
			wantSegCalls: 1, wantErr: ErrReservationTooSmall, wantErrText: []string{"after kexec_load failed", "EPERM", "crashkernel="}},
		{name: "reservation too small for segments", reservation: 64 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			wantErr: ErrReservationTooSmall, wantErrText: []string{"64 MiB", "needs 80 MiB", "kexec_load segments 70 MiB", "crashkernel=80M"}},
		{name: "planning refused", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			segErr: fmt.Errorf("%w: no room for the kernel", ErrReservationTooSmall), wantSegCalls: 1, wantErr: ErrReservationTooSmall},
		{name: "kexec_load failed: armed with the file image", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			segErr: fmt.Errorf("%w: %w", ErrKexecLoadFailed, syscall.EADDRNOTAVAIL), wantLoad: LoadFile, wantFallback: "cannot assign", wantSegCalls: 1, wantFile: 1},
		{name: "other error before the call", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, segBytes: 70 << 20,
			segErr: errors.New("mmap: no memory"), wantSegCalls: 1, wantErrText: []string{"kexec_load(ON_CRASH)", "mmap"}},
		{name: "two-stage", reservation: 512 << 20, mode: ModeTwoStage, load: LoadSegments, segBytes: 70 << 20,
			wantLoad: LoadSegments, wantSegCalls: 1},
		{name: "two-stage: runtime and reload count", reservation: 256 << 20, mode: ModeTwoStage, load: LoadSegments, segBytes: 70 << 20,
			wantErr: ErrReservationTooSmall, wantErrText: []string{"crash kernel runtime", "reloading the production image"}},
		{name: "segments without a prepared image", reservation: 128 << 20, mode: ModeDirect, load: LoadSegments, noSegments: true,
			wantErr: ErrInvalidImage, wantErrText: []string{"Image.Segments"}},
		{name: "file", reservation: 128 << 20, mode: ModeDirect, load: LoadFile, segBytes: 70 << 20, wantLoad: LoadFile, wantFile: 1},
		{name: "bad method", reservation: 128 << 20, mode: ModeDirect, load: "kexec", wantErrText: []string{`"kexec"`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, tt.reservation)
			if tt.lockdown != "" {
				writeFile(t, filepath.Join(e.root, kexecsys.LockdownPath), tt.lockdown)
			}
			// The production line asks for the reservation it has, so that the
			// re-arm check passes wherever the reservation does.
			img := e.image(t, fmt.Sprintf("console=ttyS0 crashkernel=%dM", tt.reservation>>20))
			seg := &fakeSegments{t: t, root: e.root, bytes: tt.segBytes, err: tt.segErr}
			if !tt.noSegments {
				img.Segments = seg
			}
			e.opts.Mode, e.opts.Load = tt.mode, tt.load
			st, err := Arm(img, e.opts)
			if len(seg.calls) != tt.wantSegCalls || len(e.kernel.calls) != tt.wantFile {
				t.Errorf("kexec_load calls %d, kexec_file_load calls %d; want %d, %d", len(seg.calls), len(e.kernel.calls), tt.wantSegCalls, tt.wantFile)
			}
			if tt.wantErr != nil || tt.wantErrText != nil {
				if err == nil || (tt.wantErr != nil && !errors.Is(err, tt.wantErr)) {
					t.Fatalf("Arm: %v, want %v", err, tt.wantErr)
				}
				for _, w := range tt.wantErrText {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("Arm error %q lacks %q", err, w)
					}
				}
				if v := e.sysctl(t, SysctlPanicOnOops); v != "0" {
					t.Errorf("panic_on_oops = %s after a refused arm, want 0 (restored)", v)
				}
				if prev, _ := ReadState(e.state); prev != nil {
					t.Errorf("state written after a refused arm: %+v", prev)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if st.Load != tt.wantLoad || !strings.Contains(st.LoadFallback, tt.wantFallback) || (tt.wantFallback == "") != (st.LoadFallback == "") {
				t.Errorf("state load %q fallback %q; want %q fallback containing %q", st.Load, st.LoadFallback, tt.wantLoad, tt.wantFallback)
			}
			if tt.wantSegCalls > 0 && seg.calls[0] != st.Cmdline {
				t.Errorf("kexec_load command line %q, state says %q", seg.calls[0], st.Cmdline)
			}
			wantSizing := SegmentsSizing(tt.segBytes, ImageSize{debianKernelBytes, findingsInitrdBytes, debianInitSize, debianKernelAlign, 0, 4, 16, 0, false}, tt.mode)
			if st.Load == LoadFile {
				wantSizing = st.Sizing // the file sizing is TestArm's
			}
			if d := cmp.Diff(wantSizing, st.Sizing); d != "" {
				t.Errorf("sizing (-want +got):\n%s", d)
			}
			if e.loaded(t) != "1" {
				t.Error("kexec_crash_loaded is not 1")
			}
		})
	}
}

func TestKexecLoadForbidden(t *testing.T) {
	tests := []struct {
		name, content string
		forbidden     bool
	}{
		{"no file", "", false},
		{"none", "[none] integrity confidentiality\n", false},
		{"integrity", "none [integrity] confidentiality\n", true},
		{"confidentiality", "none integrity [confidentiality]\n", true},
		{"no active mode", "none integrity\n", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			if tt.content != "" {
				writeFile(t, filepath.Join(root, kexecsys.LockdownPath), tt.content)
			}
			err := KexecLoadForbidden(root)
			if (err != nil) != tt.forbidden {
				t.Fatalf("KexecLoadForbidden = %v, want forbidden %v", err, tt.forbidden)
			}
			if err != nil && (!errors.Is(err, ErrKexecLoadForbidden) || !errors.Is(err, ErrNotPermitted) || !strings.Contains(err.Error(), kexecsys.LockdownPath)) {
				t.Errorf("error %q: want ErrKexecLoadForbidden, ErrNotPermitted and the file named", err)
			}
		})
	}
}

func TestSegmentsSizing(t *testing.T) {
	img := ImageSize{debianKernelBytes, findingsInitrdBytes, debianInitSize, debianKernelAlign, 0, 4, 16, 0, false}
	s := SegmentsSizing(70<<20+1, img, ModeDirect)
	want := Sizing{Mode: ModeDirect, Method: LoadSegments, Load: 70<<20 + 1, Total: 80 << 20}
	if d := cmp.Diff(want, s); d != "" {
		t.Errorf("(-want +got):\n%s", d)
	}
	if !strings.Contains(s.Advice(), "crashkernel=80M") || !strings.Contains(s.Breakdown(), "kexec_load segments") {
		t.Errorf("advice %q, breakdown %q", s.Advice(), s.Breakdown())
	}
	// Two-stage: the file method's runtime and reload on top of the
	// segments, with their struct pages; never more than the file method
	// needs for an image whose segments are no larger than its load.
	file := RequiredReservation(img, ModeTwoStage)
	s = SegmentsSizing(file.Load, img, ModeTwoStage)
	if s.Runtime != file.Runtime || s.Reload != file.Reload || s.Total > file.Total || s.Total < file.Total-ReservationAlign {
		t.Errorf("two-stage segments sizing %+v against the file method's %+v", s, file)
	}
}
