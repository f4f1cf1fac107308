package main

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func writeFile(t *testing.T, p, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// fakeRoot is a guest root with /proc, /sys, the site release and modules.
func fakeRoot(t *testing.T) string {
	t.Helper()
	root := t.TempDir()
	writeFile(t, filepath.Join(root, "proc/uptime"), "2.31 7.80\n")
	writeFile(t, filepath.Join(root, "proc/meminfo"), "MemTotal:        2013644 kB\nMemFree:  1 kB\n")
	writeFile(t, filepath.Join(root, "sys/devices/system/cpu/online"), "0-3\n")
	writeFile(t, filepath.Join(root, "etc/fastreboot-release"), "v2\n")
	writeFile(t, filepath.Join(root, "etc/fastreboot/modules.load"),
		"kernel/virtio_ring.ko\nkernel/crc32c-intel.ko optional\nkernel/virtio_blk.ko\n")
	for _, m := range []string{"virtio_ring", "crc32c-intel", "virtio_blk"} {
		writeFile(t, filepath.Join(root, "lib/modules/6.1.0-test/kernel", m+".ko"), m)
	}
	return root
}

func testConfig(root string) config {
	return config{root: root, modulesList: "/etc/fastreboot/modules.load", daemon: "auto", daemonArgs: "daemon",
		socket: "/run/fastreboot/fastreboot.sock", daemonLog: "/var/log/fastreboot-daemon.log", daemonWait: 2 * time.Second}
}

// fakeSystem loads modules by recording their names; failing ones error.
func fakeSystem(loaded *[]string, failing map[string]error) system {
	return system{
		release: func() (string, error) { return "6.1.0-test", nil },
		loadModule: func(f *os.File) error {
			name := filepath.Base(f.Name())
			if err := failing[name]; err != nil {
				return err
			}
			*loaded = append(*loaded, name)
			return nil
		},
		lookPath: func(string) (string, error) { return "", exec.ErrNotFound },
		startBg:  func(*exec.Cmd) error { return errors.New("not in tests") },
		sleep:    sleepCtx,
	}
}

func TestRun(t *testing.T) {
	root := fakeRoot(t)
	var loaded []string
	var out strings.Builder
	sys := fakeSystem(&loaded, map[string]error{"crc32c-intel.ko": errors.New("no such device")})
	if err := run(context.Background(), &out, testConfig(root), sys); err != nil {
		t.Fatalf("run: %v", err)
	}
	if diff := cmp.Diff([]string{"virtio_ring.ko", "virtio_blk.ko"}, loaded); diff != "" {
		t.Errorf("load order (-want +got):\n%s", diff)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []*regexp.Regexp{
		regexp.MustCompile(`^FRGUEST_START uptime=2\.31$`),
		regexp.MustCompile(`^frguest: module kernel/crc32c-intel.ko \(optional\): no such device$`),
		regexp.MustCompile(`^frguest: modules loaded=2 failed=0 optional_failed=1 took=\d+\.\d\ds$`),
		regexp.MustCompile(`^FRGUEST_READY uptime=2\.31 release=v2 cpus=0-3 memtotal_kb=2013644 modules=2/3 daemon=absent$`),
	}
	if len(lines) != len(want) {
		t.Fatalf("output:\n%s\nwant %d lines", out.String(), len(want))
	}
	for i, re := range want {
		if !re.MatchString(lines[i]) {
			t.Errorf("line %d = %q, want match for %s", i, lines[i], re)
		}
	}
}

func TestRunRequiredModuleFails(t *testing.T) {
	root := fakeRoot(t)
	var loaded []string
	var out strings.Builder
	sys := fakeSystem(&loaded, map[string]error{"virtio_blk.ko": errors.New("exec format error")})
	err := run(context.Background(), &out, testConfig(root), sys)
	if err == nil || !strings.Contains(err.Error(), "virtio_blk.ko") {
		t.Errorf("run = %v, want an error naming virtio_blk.ko", err)
	}
	if !strings.Contains(out.String(), "modules=2/3") || !strings.Contains(out.String(), "failed=1") {
		t.Errorf("output does not report the failure:\n%s", out.String())
	}
}

func TestRunNoListNoSite(t *testing.T) {
	root := t.TempDir()
	var loaded []string
	var out strings.Builder
	if err := run(context.Background(), &out, testConfig(root), fakeSystem(&loaded, nil)); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "FRGUEST_READY uptime=? release=none cpus= memtotal_kb=0 modules=0/0 daemon=absent") {
		t.Errorf("output:\n%s", out.String())
	}
}

func TestStartDaemon(t *testing.T) {
	for _, tt := range []struct {
		name      string
		mode      string
		binary    bool
		socket    bool // the fake daemon creates the socket
		wantState string
		wantErr   bool
	}{
		{name: "off", mode: "off", binary: true, wantState: "off"},
		{name: "auto without binary", mode: "auto", wantState: "absent"},
		{name: "on without binary", mode: "on", wantState: "absent", wantErr: true},
		{name: "started", mode: "auto", binary: true, socket: true, wantState: "started"},
		{name: "exits without socket", mode: "auto", binary: true, wantState: "failed", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			root := t.TempDir()
			c := testConfig(root)
			c.daemon = tt.mode
			var loaded []string
			sys := fakeSystem(&loaded, nil)
			if tt.binary {
				sys.lookPath = func(string) (string, error) { return "/bin/true", nil }
			}
			sys.startBg = func(cmd *exec.Cmd) error {
				if tt.socket {
					writeFile(t, filepath.Join(root, c.socket), "")
					cmd.Path, cmd.Args = "/bin/sleep", []string{"sleep", "0.1"}
				}
				return cmd.Start()
			}
			var out strings.Builder
			state, err := startDaemon(context.Background(), &out, c, sys)
			if state != tt.wantState || (err != nil) != tt.wantErr {
				t.Errorf("startDaemon = %q, %v; want %q, error %v\n%s", state, err, tt.wantState, tt.wantErr, out.String())
			}
		})
	}
}
