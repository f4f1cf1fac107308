package harness

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// DefaultTimeout is the wait used when a timeout argument is 0: generous,
// because under TCG on a shared 2-core host a boot to userspace can take
// tens of seconds.
const DefaultTimeout = 120 * time.Second

// DefaultCmdline is put before Options.Cmdline: the serial console, and
// panic=-1 so that an unexpected panic ends the VM at once (with
// -no-reboot) instead of a wait running into its timeout.
const DefaultCmdline = "console=ttyS0 panic=-1"

// Disk is a raw disk image attached as a virtio-blk PCI device (/dev/vda,
// /dev/vdb, ... in attach order).
type Disk struct {
	Path     string
	ReadOnly bool
	// BootOrder, when not 0, makes the disk a firmware boot device: 1 is
	// the first SeaBIOS tries (QEMU's bootindex=0), 2 the next. SeaBIOS
	// also numbers the BIOS drives in that order (the first is 0x80).
	BootOrder int
}

// DefaultAccel is single-threaded TCG: the vCPUs take turns on one host
// thread. Multi-threaded TCG (QEMU's default, "tcg") is faster when several
// vCPUs are busy, but under it Debian's 6.1 kernel hung about once in a
// hundred boots on this 2-core host while patching its own text (a static key
// flipped right after "clocksource: Switched to clocksource hpet"): one vCPU
// kept trapping on an INT3 that the patching CPU had already replaced in
// memory, so the other waited for it forever (an RCU stall, then a soft
// lockup in text_poke_bp_batch; seen on cold boots and on kexec boots). One
// vCPU executing code that memory no longer holds is the emulator's, not the
// guest's. Set FASTREBOOT_QEMU_ACCEL=tcg to get multi-threaded TCG back.
const DefaultAccel = "tcg,thread=single"

// Options configures a VM. Zero values give q35, single-threaded TCG
// (DefaultAccel), 2048 MiB, 4 CPUs, no network, -no-reboot.
type Options struct {
	// Name labels the log; default "vm".
	Name string
	// Kernel (bzImage) and Initrd (one file: see Concat) to boot.
	Kernel, Initrd string
	// Cmdline is appended to DefaultCmdline (unless NoDefaultCmdline).
	Cmdline          string
	NoDefaultCmdline bool
	// Disks are attached in order.
	Disks []Disk
	// MemoryMB defaults to 2048, CPUs to 4.
	MemoryMB, CPUs int
	// MaxCPUs, when above CPUs, is QEMU's -smp maxcpus=: the firmware
	// lists the difference as hot-pluggable CPUs, and Linux counts them as
	// possible. With more than 8 possible CPUs an x86 kernel without
	// x2APIC routes interrupts in physical destination mode (physflat)
	// instead of flat logical mode, where every kernel's boot CPU has the
	// logical APIC id 1 (see CrashVMMaxCPUs).
	MaxCPUs int
	// Machine defaults to "q35"; Accel to FASTREBOOT_QEMU_ACCEL or
	// DefaultAccel; CPUModel to QEMU's default.
	Machine, Accel, CPUModel string
	// AllowReboot lets a guest reboot through the firmware; by default QEMU
	// runs with -no-reboot and exits instead.
	AllowReboot bool
	// ExtraArgs are appended to the QEMU command line.
	ExtraArgs []string
	// LogPath is where the timestamped console log is written; default a
	// new file in LogDir(). QEMU's own debug log (CPU resets with every
	// CPU's registers, triple faults, guest errors) goes next to it, in
	// DebugLogPath(LogPath).
	LogPath string
	// Echo, if set, also receives every console line as it arrives.
	Echo io.Writer
	// Logger receives harness events; default discards.
	Logger *slog.Logger
}

// VM is a running QEMU guest driven through its serial console and QMP.
type VM struct {
	opts    Options
	args    []string
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	console *Console
	qmp     *qmpClient
	start   time.Time
	logFile *os.File
	sockDir string
	runN    atomic.Int64

	exited  chan struct{} // closed when QEMU has exited and output is drained
	exitErr error

	closeOnce sync.Once
	closeErr  error
}

// LogDir returns FASTREBOOT_LOGDIR or $TMPDIR/fastreboot-qemu-logs.
func LogDir() string {
	if d := os.Getenv(EnvLogDir); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "fastreboot-qemu-logs")
}

func (o *Options) defaults() {
	if o.Name == "" {
		o.Name = "vm"
	}
	if o.MemoryMB == 0 {
		o.MemoryMB = 2048
	}
	if o.CPUs == 0 {
		o.CPUs = 4
	}
	if o.Machine == "" {
		o.Machine = "q35"
	}
	if o.Accel == "" {
		o.Accel = os.Getenv(EnvAccel)
	}
	if o.Accel == "" {
		o.Accel = DefaultAccel
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
}

// QEMUArgs returns the QEMU command line for o (without the QMP socket).
func (o Options) QEMUArgs() []string {
	o.defaults()
	args := []string{QEMUBinary(),
		"-nodefaults", "-no-user-config", "-display", "none",
		"-machine", o.Machine, "-accel", o.Accel,
		"-m", strconv.Itoa(o.MemoryMB), "-smp", smp(o.CPUs, o.MaxCPUs),
		"-serial", "stdio",
	}
	if o.CPUModel != "" {
		args = append(args, "-cpu", o.CPUModel)
	}
	if !o.AllowReboot {
		args = append(args, "-no-reboot")
	}
	if o.Kernel != "" {
		args = append(args, "-kernel", o.Kernel)
		cmdline := o.Cmdline
		if !o.NoDefaultCmdline {
			cmdline = strings.TrimSpace(DefaultCmdline + " " + o.Cmdline)
		}
		args = append(args, "-append", cmdline)
	}
	if o.Initrd != "" {
		args = append(args, "-initrd", o.Initrd)
	}
	for i, d := range o.Disks {
		drive := fmt.Sprintf("file=%s,if=none,id=disk%d,format=raw,cache=unsafe", qemuEscape(d.Path), i)
		if d.ReadOnly {
			drive += ",readonly=on"
		}
		dev := fmt.Sprintf("virtio-blk-pci,drive=disk%d", i)
		if d.BootOrder > 0 {
			dev += fmt.Sprintf(",bootindex=%d", d.BootOrder-1)
		}
		args = append(args, "-drive", drive, "-device", dev)
	}
	return append(args, o.ExtraArgs...)
}

// qemuEscape doubles commas, QEMU's escape inside option values.
func qemuEscape(s string) string { return strings.ReplaceAll(s, ",", ",,") }

// Start starts QEMU. The caller must Close the VM.
func Start(o Options) (*VM, error) {
	o.defaults()
	sockDir, err := os.MkdirTemp("", "frvm-")
	if err != nil {
		return nil, err
	}
	qmpPath := filepath.Join(sockDir, "qmp.sock")
	args := append(o.QEMUArgs(), "-qmp", "unix:"+qemuEscape(qmpPath)+",server=on,wait=off")

	if o.LogPath == "" {
		if err := os.MkdirAll(LogDir(), 0o755); err != nil {
			os.RemoveAll(sockDir)
			return nil, err
		}
		o.LogPath = filepath.Join(LogDir(), fmt.Sprintf("%s-%s.log", sanitize(o.Name), time.Now().Format("20060102-150405.000")))
	}
	logFile, err := os.Create(o.LogPath)
	if err != nil {
		os.RemoveAll(sockDir)
		return nil, err
	}
	args = append(args, debugArgs(o.LogPath)...)
	fmt.Fprintf(logFile, "## %s\n", shellQuote(args))

	cmd := exec.Command(args[0], args[1:]...)
	setPdeathsig(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}

	vm := &VM{opts: o, args: args, cmd: cmd, stdin: stdin, logFile: logFile, sockDir: sockDir, exited: make(chan struct{})}
	vm.start = time.Now()
	vm.console = NewConsole(vm.start, logFile)
	if o.Echo != nil {
		vm.console.Echo(o.Echo)
	}
	if err := cmd.Start(); err != nil {
		logFile.Close()
		os.RemoveAll(sockDir)
		return nil, fmt.Errorf("start %s: %w", args[0], err)
	}
	o.Logger.Info("QEMU started", "name", o.Name, "pid", cmd.Process.Pid, "log", o.LogPath)

	var drained sync.WaitGroup
	drained.Add(2)
	go func() {
		defer drained.Done()
		io.Copy(vm.console, stdout)
	}()
	go func() {
		defer drained.Done()
		s := bufio.NewScanner(stderr)
		for s.Scan() {
			vm.console.Logf("qemu stderr: %s", s.Text())
		}
		io.Copy(io.Discard, stderr)
	}()
	go func() {
		drained.Wait()
		err := cmd.Wait()
		vm.exitErr = err
		if n := countTripleFaults(DebugLogPath(o.LogPath)); n > 0 {
			vm.console.Logf("QEMU: the guest triple-faulted (%d times; CPU state in %s)", n, DebugLogPath(o.LogPath))
		}
		vm.console.Logf("QEMU exited: %v", exitString(err))
		vm.console.Close(fmt.Errorf("QEMU %s", exitString(err)))
		close(vm.exited)
	}()

	q, err := dialQMP(qmpPath, vm.start, 30*time.Second)
	if err != nil {
		vm.Close()
		return nil, fmt.Errorf("%w (console log %s)", err, o.LogPath)
	}
	vm.qmp = q
	return vm, nil
}

// DebugLogPath is where a VM whose console log is logPath has QEMU write
// its debug log (-d cpu_reset,guest_errors -D).
func DebugLogPath(logPath string) string {
	return strings.TrimSuffix(logPath, ".log") + ".qemu.log"
}

// countTripleFaults counts the triple faults QEMU logged in its debug log
// at path (0 when the file cannot be read).
func countTripleFaults(path string) int {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	return bytes.Count(b, []byte("Triple fault"))
}

func exitString(err error) string {
	if err == nil {
		return "exit status 0"
	}
	return err.Error()
}

// StartBootT is StartBoot for a test: it fails t if QEMU does not start or
// the cold boot fails, logs a stalled first attempt, closes the VM at the
// end of the test, and when the test failed logs the console log's path and
// last lines.
func StartBootT(t testing.TB, o Options, timeout time.Duration) (*VM, *Boot) {
	t.Helper()
	if o.Name == "" {
		o.Name = t.Name()
	}
	if o.Logger == nil {
		// Warnings (a line lost before a jump) belong in the test's log.
		o.Logger = slog.New(slog.NewTextHandler(tbWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	}
	vm, b, stalled, err := StartBoot(o, timeout)
	if stalled != "" {
		t.Logf("VM %s: the first cold boot stalled and was retried on a fresh QEMU: %s", o.Name, stalled)
	}
	if vm != nil {
		t.Logf("VM %s: console log %s", o.Name, vm.LogPath())
		closeT(t, o.Name, vm)
	}
	if err != nil {
		t.Fatalf("VM %s: %v", o.Name, err)
	}
	return vm, b
}

// tbWriter writes to a test's log.
type tbWriter struct{ t testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// failedTail is how many console lines closeT logs for a failed test: a
// few, so that the test's own failure message (a Fatal's is logged just
// before) stays in view at the end of a CI log; the console log file has
// the rest.
const failedTail = 8

// closeT closes vm at the end of the test and, when the test failed, logs
// the console log's path and last lines.
func closeT(t testing.TB, name string, vm *VM) {
	t.Cleanup(func() {
		if t.Failed() {
			if st, err := vm.CPUState(); err == nil {
				t.Logf("VM %s failed; its vCPUs: %s", name, st)
			}
		}
		if err := vm.Close(); err != nil {
			t.Logf("close VM %s: %v", name, err)
		}
		if t.Failed() {
			t.Logf("VM %s failed; QEMU: %s\nfull console log %s, QEMU debug log %s; last console lines:\n%s",
				name, shellQuote(vm.args), vm.LogPath(), DebugLogPath(vm.LogPath()), vm.console.Tail(failedTail))
		}
	})
}

// LogPath is the timestamped console log.
func (vm *VM) LogPath() string { return vm.opts.LogPath }

// Options returns the options the VM was started with, defaults filled in.
func (vm *VM) Options() Options { return vm.opts }

// Args is the QEMU command line.
func (vm *VM) Args() []string { return append([]string(nil), vm.args...) }

// StartTime is when QEMU was started; all timestamps count from it.
func (vm *VM) StartTime() time.Time { return vm.start }

// Console gives access to the console text, lines and timestamps.
func (vm *VM) Console() *Console { return vm.console }

// Expect waits (0 means DefaultTimeout) for a complete console line after the
// cursor that matches re; see Console.Expect.
func (vm *VM) Expect(timeout time.Duration, re *regexp.Regexp) (*Match, error) {
	return vm.console.Expect(orDefault(timeout), re)
}

// ExpectString is Expect with a regexp compiled from s.
func (vm *VM) ExpectString(timeout time.Duration, s string) (*Match, error) {
	re, err := regexp.Compile(s)
	if err != nil {
		return nil, err
	}
	return vm.Expect(timeout, re)
}

// ExpectRaw waits for re in the raw stream; see Console.ExpectRaw.
func (vm *VM) ExpectRaw(timeout time.Duration, re *regexp.Regexp) (*Match, error) {
	return vm.console.ExpectRaw(orDefault(timeout), re)
}

// LineTime returns when the first console line matching re arrived (host
// time since QEMU started).
func (vm *VM) LineTime(re *regexp.Regexp) (time.Duration, bool) { return vm.console.LineTime(re) }

// Lines returns the console lines so far.
func (vm *VM) Lines() []Line { return vm.console.Lines() }

// Elapsed is the host time since QEMU started.
func (vm *VM) Elapsed() time.Duration { return time.Since(vm.start) }

func orDefault(d time.Duration) time.Duration {
	if d <= 0 {
		return DefaultTimeout
	}
	return d
}

// Send writes s to the serial console as typed input.
func (vm *VM) Send(s string) error {
	select {
	case <-vm.exited:
		return fmt.Errorf("send: %w", ErrExited)
	default:
	}
	if _, err := io.WriteString(vm.stdin, s); err != nil {
		return fmt.Errorf("send to serial console: %w", err)
	}
	return nil
}

// SendLine sends s and a newline (a command the shell runs without Run's
// end marker, e.g. one that reboots the guest).
func (vm *VM) SendLine(s string) error {
	vm.console.Logf("send: %s", s)
	return vm.Send(s + "\n")
}

// promptRE matches gosh's prompt at the start of a line.
var promptRE = regexp.MustCompile(`(?m)^\$ `)

// WaitPrompt waits (0 means DefaultTimeout) for the shell prompt after the
// cursor. WaitBoot calls it; use it after starting a shell by other means.
func (vm *VM) WaitPrompt(timeout time.Duration) error {
	_, err := vm.ExpectRaw(timeout, promptRE)
	return err
}

// maxLine keeps a command well under the tty's 4095-byte canonical line.
const maxLine = 1024

// Run types cmd into the guest shell (which must be at its prompt, e.g.
// after the frguest ready marker) followed by an end marker carrying the
// exit status: `{ cmd; } 2>&1; echo __FR_DONE_<n>_$?`. It waits (0 means
// DefaultTimeout) for the marker and returns cmd's output (the lines
// between the echoed command and the marker) and exit status. cmd must be a
// complete command list on one line.
//
// cmd's stderr is sent to its stdout: u-root's init gives the shell two
// pipes (its multi-TTY writers are not files), each copied to the console
// by its own goroutine, so under load a command's stderr could reach the
// console after the marker its stdout carried.
func (vm *VM) Run(cmd string, timeout time.Duration) (string, int, error) {
	if strings.ContainsAny(cmd, "\n\r") {
		return "", -1, fmt.Errorf("run %q: multi-line commands are not supported", cmd)
	}
	n := vm.runN.Add(1)
	marker := fmt.Sprintf("__FR_DONE_%d_", n)
	tail := "echo " + marker + "$?"
	line := groupStderr(cmd) + "; " + tail
	if len(line) > maxLine {
		return "", -1, fmt.Errorf("run: command of %d bytes too long for the console (max %d)", len(line), maxLine)
	}
	from := vm.console.Cursor()
	if err := vm.SendLine(line); err != nil {
		return "", -1, err
	}
	deadline := time.Now().Add(orDefault(timeout))
	re := regexp.MustCompile(regexp.QuoteMeta(marker) + `(\d+)\n`)
	m, err := vm.ExpectRaw(time.Until(deadline), re)
	if err != nil {
		return "", -1, fmt.Errorf("run %q: %w", cmd, err)
	}
	code, _ := strconv.Atoi(m.Groups[1])
	// Output = after the echo of the typed line, up to the marker.
	seg := vm.console.Since(from)
	seg = seg[:strings.LastIndex(seg, m.Text)]
	// The shell prints its prompt after the marker: consume it, so that the
	// next command is not typed before it and echoed around it.
	if _, err := vm.ExpectRaw(time.Until(deadline), promptRE); err != nil {
		return seg, code, fmt.Errorf("run %q: no shell prompt after it: %w", cmd, err)
	}
	if i := strings.Index(seg, tail); i >= 0 {
		seg = seg[i+len(tail):]
		if j := strings.IndexByte(seg, '\n'); j >= 0 {
			seg = seg[j+1:]
		} else {
			seg = ""
		}
	}
	return seg, code, nil
}

// groupStderr wraps cmd in a group whose stderr goes to its stdout. A
// command list ending in & (started in the background) keeps it: `{ cmd & }`.
func groupStderr(cmd string) string {
	cmd = strings.TrimRight(cmd, " \t;")
	if strings.HasSuffix(cmd, "&") && !strings.HasSuffix(cmd, "&&") {
		return "{ " + cmd + " } 2>&1"
	}
	return "{ " + cmd + "; } 2>&1"
}

// RunOK is Run that fails unless cmd exits 0.
func (vm *VM) RunOK(cmd string, timeout time.Duration) (string, error) {
	out, code, err := vm.Run(cmd, timeout)
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("run %q: exit status %d: %s", cmd, code, strings.TrimSpace(out))
	}
	return out, nil
}

// Monitor runs a human monitor command through QMP ("nmi", "system_reset",
// "info registers", ...) and returns its output.
func (vm *VM) Monitor(cmd string) (string, error) {
	vm.console.Logf("monitor: %s", cmd)
	return vm.qmp.HumanCommand(cmd, 30*time.Second)
}

// QMP runs a QMP command (e.g. "query-status") and returns its "return" value.
func (vm *VM) QMP(cmd string, args any) (json.RawMessage, error) {
	return vm.qmp.Execute(cmd, args, 30*time.Second)
}

// Events returns the QMP events so far (RESET, SHUTDOWN, GUEST_PANICKED, ...).
func (vm *VM) Events() []Event { return vm.qmp.Events() }

// Exited is closed when QEMU has exited and its output is drained.
func (vm *VM) Exited() <-chan struct{} { return vm.exited }

// Wait waits (0 means DefaultTimeout) for QEMU to exit by itself (guest
// poweroff, or a reboot/panic under -no-reboot) and returns its exit error.
func (vm *VM) Wait(timeout time.Duration) error {
	select {
	case <-vm.exited:
		return vm.exitErr
	case <-time.After(orDefault(timeout)):
		return fmt.Errorf("waiting for QEMU to exit: %w", ErrTimeout)
	}
}

// Kill stops QEMU at once.
func (vm *VM) Kill() error {
	select {
	case <-vm.exited:
		return nil
	default:
	}
	err := vm.cmd.Process.Kill()
	<-vm.exited
	return err
}

// Close quits QEMU (QMP "quit", then a kill after 10 s) and releases the
// VM's resources. The console stays readable.
func (vm *VM) Close() error {
	vm.closeOnce.Do(func() {
		select {
		case <-vm.exited:
		default:
			if vm.qmp == nil {
				vm.closeErr = vm.Kill()
				break
			}
			vm.qmp.Execute("quit", nil, 5*time.Second) // QEMU may exit before replying
			select {
			case <-vm.exited:
			case <-time.After(10 * time.Second):
				vm.closeErr = errors.Join(errors.New("QEMU did not quit; killed"), vm.Kill())
			}
		}
		if vm.qmp != nil {
			vm.qmp.Close()
		}
		vm.stdin.Close()
		vm.logFile.Close()
		os.RemoveAll(vm.sockDir)
	})
	return vm.closeErr
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
			return r
		}
		return '_'
	}, s)
}

func shellQuote(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\n'\"$\\;&|<>()*?") {
			out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		} else {
			out[i] = a
		}
	}
	return strings.Join(out, " ")
}

// debugArgs asks QEMU for its debug log next to the console log: CPU resets
// and guest errors, the -d items of FASTREBOOT_QEMU_DEBUG and the trace
// events of FASTREBOOT_QEMU_TRACE.
func debugArgs(logPath string) []string {
	items := "cpu_reset,guest_errors"
	if extra := os.Getenv(EnvDebug); extra != "" {
		items += "," + extra
	}
	return append([]string{"-d", items, "-D", qemuEscape(DebugLogPath(logPath))}, traceArgs(os.Getenv(EnvTrace))...)
}

// traceArgs turns FASTREBOOT_QEMU_TRACE's comma-separated event patterns
// into QEMU -trace options (their output joins the QEMU debug log).
func traceArgs(patterns string) []string {
	var args []string
	for _, p := range strings.Split(patterns, ",") {
		if p = strings.TrimSpace(p); p != "" {
			args = append(args, "-trace", "enable="+qemuEscape(p))
		}
	}
	return args
}

func smp(cpus, maxCPUs int) string {
	if maxCPUs > cpus {
		return fmt.Sprintf("%d,maxcpus=%d", cpus, maxCPUs)
	}
	return strconv.Itoa(cpus)
}

// CrashVMMaxCPUs is the MaxCPUs of the VMs that crash: 16 possible CPUs, so
// that Debian's kernel uses physical destination mode. In flat logical mode
// the boot CPU of the crashed kernel, halted with interrupts off where the
// panic stopped it, shares logical id 1 with the boot CPU of the kernel the
// crash path starts on another CPU, and receives its interrupts; QEMU TCG
// then woke it now and then (always that CPU, always while the new kernel
// calibrated its APIC timer on a stream of timer interrupts), and it ran
// memory the new kernel was reusing: a triple fault or a corrupted kernel
// (crash soak, direct mode). On x86 only an NMI, SMI, INIT or reset may
// end such a halt. Physical mode gives the emulator nothing to deliver to
// it.
const CrashVMMaxCPUs = 16
