package fastreboot

import (
	"errors"
	"maps"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/fastreboot/fastreboot/internal/kexecsys"
)

// goodTree is a /proc and /sys of a machine that can kexec.
var goodTree = map[string]string{
	pathLoadDisabled: "0\n",
	pathLoadLimit:    "-1\n",
	pathLockdown:     "[none] integrity confidentiality\n",
	pathStatus:       "Name:\tfastreboot\nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\nCapEff:\t000001ffffffffff\n",
	pathKexecLoaded:  "0\n",
	pathCrashLoaded:  "0\n",
}

// fakeTree writes files (relative path -> content; "" content removes the
// file from the map's defaults) under a new temporary root.
func fakeTree(t *testing.T, files map[string]string) string {
	t.Helper()
	root := t.TempDir()
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return root
}

// tree returns goodTree with changes applied; a "-" value deletes a file.
func tree(changes map[string]string) map[string]string {
	m := maps.Clone(goodTree)
	for k, v := range changes {
		if v == "-" {
			delete(m, k)
		} else {
			m[k] = v
		}
	}
	return m
}

const capEffNoBoot = "Name:\tx\nCapEff:\t000001ffffbfffff\n" // bit 22 clear

func TestPreflight(t *testing.T) {
	for _, tc := range []struct {
		name          string
		files         map[string]string
		probeErr      error
		requireLoaded bool
		wantFailed    []string
		wantProbed    bool
		wantLockdown  string
		wantDetail    map[string]string // check name -> substring of its detail
	}{
		{
			name: "ready", files: goodTree, probeErr: syscall.EBADF, wantProbed: true, wantLockdown: "none",
			wantDetail: map[string]string{CheckKexecFileLoad: "present", CheckKexecLoaded: "no image loaded"},
		},
		{
			name: "reboot needs a loaded image", files: goodTree, probeErr: syscall.EBADF, requireLoaded: true,
			wantProbed: true, wantLockdown: "none", wantFailed: []string{CheckKexecLoaded},
		},
		{
			name: "loaded", files: tree(map[string]string{pathKexecLoaded: "1\n", pathCrashLoaded: "1\n"}), probeErr: syscall.EBADF,
			requireLoaded: true, wantProbed: true, wantLockdown: "none",
			wantDetail: map[string]string{CheckKexecLoaded: "an image is loaded", CheckKexecCrashLoaded: "a crash image is loaded"},
		},
		{
			name: "no CAP_SYS_BOOT: present but not permitted", files: tree(map[string]string{pathStatus: capEffNoBoot}),
			probeErr: syscall.EPERM, wantProbed: true, wantLockdown: "none", wantFailed: []string{CheckCapSysBoot},
			wantDetail: map[string]string{CheckKexecFileLoad: "EPERM"},
		},
		{
			name: "syscall missing", files: goodTree, probeErr: syscall.ENOSYS, wantProbed: true, wantLockdown: "none",
			wantFailed: []string{CheckKexecFileLoad},
		},
		{
			name: "not on this platform", files: goodTree, probeErr: ErrNotSupported, wantProbed: true, wantLockdown: "none",
			wantFailed: []string{CheckKexecFileLoad},
		},
		{
			name: "busy", files: goodTree, probeErr: syscall.EBUSY, wantProbed: true, wantLockdown: "none",
			wantDetail: map[string]string{CheckKexecFileLoad: "EBUSY"},
		},
		{
			name: "loads disabled", files: tree(map[string]string{pathLoadDisabled: "1\n"}), probeErr: syscall.EPERM,
			wantProbed: true, wantLockdown: "none", wantFailed: []string{CheckKexecLoadOff},
		},
		{
			name: "limit used up: no probe", files: tree(map[string]string{pathLoadLimit: "0\n"}),
			wantLockdown: "none", wantFailed: []string{CheckKexecLoadLimit},
			wantDetail: map[string]string{CheckKexecFileLoad: "not probed"},
		},
		{
			name: "finite limit: no probe", files: tree(map[string]string{pathLoadLimit: "3\n"}), wantLockdown: "none",
			wantDetail: map[string]string{CheckKexecLoadLimit: "3 loads left", CheckKexecFileLoad: "not probed"},
		},
		{
			name: "kernel before 6.2: no limit file", files: tree(map[string]string{pathLoadLimit: "-"}), probeErr: syscall.EBADF,
			wantProbed: true, wantLockdown: "none", wantDetail: map[string]string{CheckKexecLoadLimit: "no limit"},
		},
		{
			name: "lockdown integrity", files: tree(map[string]string{pathLockdown: "none [integrity] confidentiality\n"}),
			probeErr: syscall.EBADF, wantProbed: true, wantLockdown: "integrity",
			wantDetail: map[string]string{CheckLockdown: "signed"},
		},
		{
			name: "lockdown confidentiality", files: tree(map[string]string{pathLockdown: "none integrity [confidentiality]\n"}),
			probeErr: syscall.EBADF, wantProbed: true, wantLockdown: "confidentiality",
		},
		{
			name: "lockdown unreadable", files: tree(map[string]string{pathLockdown: "-"}), probeErr: syscall.EBADF,
			wantProbed: true, wantDetail: map[string]string{CheckLockdown: "unknown"},
		},
		{
			name: "lockdown garbage", files: tree(map[string]string{pathLockdown: "what\n"}), probeErr: syscall.EBADF,
			wantProbed: true, wantFailed: []string{CheckLockdown},
		},
		{
			name: "empty tree", files: map[string]string{}, probeErr: syscall.EBADF, wantProbed: true,
			wantFailed: []string{CheckKexecLoadOff, CheckCapSysBoot, CheckKexecLoaded},
		},
		{
			name: "garbage values", files: tree(map[string]string{pathLoadDisabled: "x\n", pathKexecLoaded: "yes\n", pathStatus: "CapEff:\tzz\n"}),
			probeErr: syscall.EBADF, wantProbed: true, wantLockdown: "none",
			wantFailed: []string{CheckKexecLoadOff, CheckCapSysBoot, CheckKexecLoaded},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			root := fakeTree(t, tc.files)
			probed := false
			r := Preflight(PreflightOptions{
				Root:          root,
				RequireLoaded: tc.requireLoaded,
				Probe:         func() error { probed = true; return tc.probeErr },
			})
			var names, failed []string
			for _, c := range r.Checks {
				names = append(names, c.Name)
				if !c.OK {
					failed = append(failed, c.Name)
				}
			}
			wantNames := []string{CheckKexecLoadLimit, CheckKexecFileLoad, CheckKexecLoadOff, CheckLockdown, CheckCapSysBoot, CheckKexecLoaded, CheckKexecCrashLoaded}
			if diff := cmp.Diff(wantNames, names); diff != "" {
				t.Errorf("check names (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tc.wantFailed, failed); diff != "" {
				t.Errorf("failed checks (-want +got):\n%s\nreport: %+v", diff, r.Checks)
			}
			if probed != tc.wantProbed {
				t.Errorf("probed = %v, want %v", probed, tc.wantProbed)
			}
			if r.Lockdown != tc.wantLockdown {
				t.Errorf("Lockdown = %q, want %q", r.Lockdown, tc.wantLockdown)
			}
			for name, sub := range tc.wantDetail {
				c, ok := r.Check(name)
				if !ok || !strings.Contains(c.Detail, sub) {
					t.Errorf("check %s = %+v, want detail containing %q", name, c, sub)
				}
			}
			err := r.Err()
			if (err == nil) != (len(tc.wantFailed) == 0) || r.OK() != (err == nil) {
				t.Fatalf("Err() = %v, OK() = %v with failed %v", err, r.OK(), tc.wantFailed)
			}
			if err != nil {
				if !errors.Is(err, ErrPreflight) {
					t.Errorf("Err() = %v, does not wrap ErrPreflight", err)
				}
				for _, name := range tc.wantFailed {
					if !strings.Contains(err.Error(), name+": ") {
						t.Errorf("Err() = %q, does not name %s", err, name)
					}
				}
			}
		})
	}
}

// TestJudgeProbeENOSYSOnce: the likely causes of a missing kexec_file_load
// are said once, whether the probe's error already names them (a
// kexecsys.KexecError) or is a bare ENOSYS.
func TestJudgeProbeENOSYSOnce(t *testing.T) {
	for _, err := range []error{
		kexecsys.Classify(kexecsys.OpFileLoad, `-1, -1, "", 0x0`, syscall.ENOSYS),
		syscall.ENOSYS,
	} {
		ok, detail := judgeProbe(err)
		if ok || strings.Count(detail, "seccomp") != 1 || strings.Count(detail, "CONFIG_KEXEC_FILE") != 1 {
			t.Errorf("judgeProbe(%v) = %v, %q; want not available, the causes said once", err, ok, detail)
		}
	}
}
