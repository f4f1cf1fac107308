// Command frguest is the uinit of fastreboot's QEMU test guests: it loads the
// kernel modules listed by the kmods piece, prints what the host-side tests
// assert on (a marker with the uptime, the CPUs online, MemTotal, the site
// release), optionally starts `fastreboot daemon` and waits for its socket,
// then returns so u-root's init starts the shell on the console.
//
// Output lines (one each, in this order):
//
//	FRGUEST_START uptime=2.31
//	frguest: module kernel/crypto/crc32c_intel.ko (optional): no such device
//	frguest: modules loaded=11 failed=0 optional_failed=1 took=0.42s
//	frguest: daemon=started socket=/run/fastreboot/fastreboot.sock took=0.30s
//	FRGUEST_READY uptime=3.10 release=v1 cpus=0-3 memtotal_kb=2014204 modules=11/12 daemon=started
//
// Flags may also come from the kernel command line (uroot.uinitargs=...).
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/qemu-tests/internal/loadlist"
)

// Markers the host-side harness matches.
const (
	StartMarker = "FRGUEST_START"
	ReadyMarker = "FRGUEST_READY"
)

type config struct {
	root        string // prefix for /proc, /sys, /etc, /lib/modules (tests)
	modulesList string
	daemon      string // auto, on, off
	daemonArgs  string
	socket      string
	daemonLog   string
	daemonWait  time.Duration
}

// system is what frguest needs from the kernel; tests fake it.
type system struct {
	release    func() (string, error)       // uname -r
	loadModule func(f *os.File) error       // finit_module(2)
	lookPath   func(string) (string, error) // exec.LookPath
	startBg    func(*exec.Cmd) error        // start in its own session
	mount      func(dev, target, fstype string) error
	sleep      func(context.Context, time.Duration) error
}

func main() {
	var c config
	flag.StringVar(&c.modulesList, "modules", "/"+loadlist.Path, "module load list (paths relative to /lib/modules/<release>, dependency order)")
	flag.StringVar(&c.daemon, "daemon", "auto", "start `fastreboot daemon`: auto (if the binary exists), on (fail if absent), off")
	flag.StringVar(&c.daemonArgs, "daemon-args", "daemon", "arguments for the fastreboot binary, space separated")
	flag.StringVar(&c.socket, "socket", "/run/fastreboot/fastreboot.sock", "daemon socket to wait for")
	flag.StringVar(&c.daemonLog, "daemon-log", "/var/log/fastreboot-daemon.log", "daemon stdout/stderr (kept off the console so shell output stays clean)")
	flag.DurationVar(&c.daemonWait, "daemon-wait", 60*time.Second, "how long to wait for the daemon socket")
	flag.Parse()
	c.root = "/"

	if err := run(context.Background(), os.Stdout, c, hostSystem()); err != nil {
		fmt.Fprintf(os.Stdout, "frguest: error: %v\n", err)
		// Return anyway: init then starts the shell, which the tests need to
		// look around. The marker says what failed.
	}
	// u-root's init runs us as a session leader owning the console. A
	// session leader's exit hangs up its controlling tty (disassociate_ctty
	// -> tty_vhangup_session), which would kill the console fds init has
	// already opened for the shell: give the tty up first.
	if err := releaseTTY(); err != nil {
		fmt.Fprintf(os.Stdout, "frguest: release console: %v\n", err)
	}
}

func run(ctx context.Context, w io.Writer, c config, sys system) error {
	fmt.Fprintf(w, "%s uptime=%s\n", StartMarker, uptime(c.root))
	mode, inCrash := crashhandler.CrashModeOf(strings.TrimSpace(readString(c.root, "proc/cmdline")))
	if inCrash && mode != crashhandler.ModeDirect {
		crashStage(ctx, w, c, sys)
	}

	loaded, total, modErr := loadModules(w, c, sys)
	if inCrash && mode == crashhandler.ModeDirect {
		// After the modules: a pstore backend (ramoops) may hold the
		// evidence a direct crash kernel cannot read from /proc/vmcore.
		crashStage(ctx, w, c, sys)
	}
	persistErr := mountPersist(w, c, sys)
	daemonState, daemonErr := startDaemon(ctx, w, c, sys)
	if daemonState == "started" {
		rearm(ctx, w, c, sys)
	}

	release := strings.TrimSpace(readString(c.root, "etc/fastreboot-release"))
	if release == "" {
		release = "none"
	}
	cpus := strings.TrimSpace(readString(c.root, "sys/devices/system/cpu/online"))
	fmt.Fprintf(w, "%s uptime=%s release=%s cpus=%s memtotal_kb=%d modules=%d/%d daemon=%s\n",
		ReadyMarker, uptime(c.root), release, cpus, memTotalKB(c.root), loaded, total, daemonState)
	orphanAtStart(w, c, sys)
	return errors.Join(modErr, persistErr, daemonErr)
}

// loadModules loads every module of the list in order. It returns how many
// are loaded (or were already) and how many were listed.
func loadModules(w io.Writer, c config, sys system) (loaded, total int, err error) {
	list, err := os.ReadFile(filepath.Join(c.root, c.modulesList))
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintf(w, "frguest: no module list %s\n", c.modulesList)
		return 0, 0, nil
	}
	if err != nil {
		return 0, 0, err
	}
	entries, err := loadlist.ParseBytes(list)
	if err != nil {
		return 0, 0, fmt.Errorf("%s: %w", c.modulesList, err)
	}
	rel, err := sys.release()
	if err != nil {
		return 0, len(entries), fmt.Errorf("uname: %w", err)
	}
	start := time.Now()
	var failed, optFailed int
	var errs []error
	for _, e := range entries {
		p := filepath.Join(c.root, "lib", "modules", rel, e.Path)
		lerr := loadFile(p, sys)
		if lerr == nil {
			loaded++
			continue
		}
		if e.Optional {
			optFailed++
			fmt.Fprintf(w, "frguest: module %s (optional): %v\n", e.Path, lerr)
			continue
		}
		failed++
		fmt.Fprintf(w, "frguest: module %s: %v\n", e.Path, lerr)
		errs = append(errs, fmt.Errorf("module %s: %w", e.Path, lerr))
	}
	fmt.Fprintf(w, "frguest: modules loaded=%d failed=%d optional_failed=%d took=%.2fs\n",
		loaded, failed, optFailed, time.Since(start).Seconds())
	return loaded, len(entries), errors.Join(errs...)
}

func loadFile(p string, sys system) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	return sys.loadModule(f)
}

// startDaemon starts `fastreboot daemon` in its own session (so it survives
// this process and the shell's job control) and waits for its socket.
func startDaemon(ctx context.Context, w io.Writer, c config, sys system) (string, error) {
	if c.daemon == "off" {
		return "off", nil
	}
	bin, err := sys.lookPath("fastreboot")
	if err != nil {
		if c.daemon == "on" {
			fmt.Fprintf(w, "frguest: daemon=absent: %v\n", err)
			return "absent", fmt.Errorf("fastreboot binary: %w", err)
		}
		return "absent", nil
	}
	if err := os.MkdirAll(filepath.Dir(filepath.Join(c.root, c.daemonLog)), 0o755); err != nil {
		return "failed", err
	}
	logf, err := os.OpenFile(filepath.Join(c.root, c.daemonLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return "failed", err
	}
	defer logf.Close()
	cmd := exec.Command(bin, strings.Fields(c.daemonArgs)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	start := time.Now()
	if err := sys.startBg(cmd); err != nil {
		fmt.Fprintf(w, "frguest: daemon=failed: %v\n", err)
		return "failed", fmt.Errorf("start %s: %w", bin, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()

	sock := filepath.Join(c.root, c.socket)
	deadline := time.Now().Add(c.daemonWait)
	for {
		if _, err := os.Stat(sock); err == nil {
			fmt.Fprintf(w, "frguest: daemon=started pid=%d socket=%s took=%.2fs\n", cmd.Process.Pid, c.socket, time.Since(start).Seconds())
			return "started", nil
		}
		select {
		case err := <-exited:
			fmt.Fprintf(w, "frguest: daemon=failed: exited: %v (log %s)\n", err, c.daemonLog)
			for _, l := range strings.Split(strings.TrimSpace(readString(c.root, c.daemonLog)), "\n") {
				fmt.Fprintf(w, "frguest: daemon log: %s\n", l)
			}
			return "failed", fmt.Errorf("%s %s exited before creating %s: %v", bin, c.daemonArgs, c.socket, err)
		default:
		}
		if time.Now().After(deadline) {
			fmt.Fprintf(w, "frguest: daemon=timeout: no %s after %v (log %s)\n", c.socket, c.daemonWait, c.daemonLog)
			return "timeout", fmt.Errorf("no %s after %v", c.socket, c.daemonWait)
		}
		if err := sys.sleep(ctx, 50*time.Millisecond); err != nil {
			return "failed", err
		}
	}
}

func readString(root, p string) string {
	b, err := os.ReadFile(filepath.Join(root, p))
	if err != nil {
		return ""
	}
	return string(b)
}

// uptime returns the first field of /proc/uptime ("2.31"), or "?".
func uptime(root string) string {
	f := strings.Fields(readString(root, "proc/uptime"))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// memTotalKB returns MemTotal from /proc/meminfo in kB, or 0.
func memTotalKB(root string) int64 {
	for _, line := range strings.Split(readString(root, "proc/meminfo"), "\n") {
		if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
			f := strings.Fields(rest)
			if len(f) > 0 {
				n, _ := strconv.ParseInt(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}
