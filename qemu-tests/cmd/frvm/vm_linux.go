package main

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/preserve"
)

// runDir holds the firmware, QEMU's sockets, pid file and log: on the
// guest's tmpfs, gone with the generation (the area and the stream are
// what is kept).
const runDir = "/tmp/frvm"

var (
	qmpSock   = filepath.Join(runDir, "qmp.sock")
	migSock   = filepath.Join(runDir, "migrate.sock")
	pidFile   = filepath.Join(runDir, "qemu.pid")
	qemuLog   = filepath.Join(runDir, "qemu.log")
	fwPath    = filepath.Join(runDir, "counter.bin")
	stateHead = []byte("FRVMSTAT")
)

// stateOffset is where the migration stream starts in its area, after a
// header: "FRVMSTAT", its length (8 bytes, little-endian), its SHA-256.
const stateOffset = 4096

// launch starts QEMU (through the copied dynamic loader) with loop as the
// guest's RAM, in a session of its own so that it outlives frvm.
func launch(qdir, loop string, extra ...string) (*exec.Cmd, error) {
	if err := os.MkdirAll(runDir, 0o755); err != nil {
		return nil, err
	}
	if err := os.WriteFile(fwPath, Firmware(), 0o644); err != nil {
		return nil, err
	}
	os.Remove(qmpSock)
	log, err := os.OpenFile(qemuLog, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close()
	args := append([]string{
		"--library-path", filepath.Join(qdir, "lib"), filepath.Join(qdir, "qemu-system-x86_64"),
		"-L", filepath.Join(qdir, "share"), "-nodefaults", "-display", "none",
		"-machine", "pc,memory-backend=mem", "-accel", "tcg,tb-size=32", "-m", "64M",
		"-object", "memory-backend-file,id=mem,size=64M,mem-path=" + loop + ",share=on",
		"-bios", fwPath, "-qmp", "unix:" + qmpSock + ",server=on,wait=off",
	}, extra...)
	cmd := exec.Command(filepath.Join(qdir, "lib/ld-linux-x86-64.so.2"), args...)
	cmd.Env = append(os.Environ(), "QEMU_MODULE_DIR="+filepath.Join(qdir, "modules"))
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	fmt.Fprintf(log, "frvm: %s\n", strings.Join(cmd.Args, " "))
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting QEMU: %w", err)
	}
	if err := os.WriteFile(pidFile, []byte(strconv.Itoa(cmd.Process.Pid)), 0o644); err != nil {
		return nil, err
	}
	return cmd, nil
}

// connect waits for QEMU's QMP socket, failing at once when QEMU exits.
func connect(cmd *exec.Cmd) (*qmp, error) {
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	type res struct {
		q   *qmp
		err error
	}
	got := make(chan res, 1)
	go func() {
		q, err := dialQMP(qmpSock, 5*time.Minute)
		got <- res{q, err}
	}()
	select {
	case r := <-got:
		return r.q, r.err
	case err := <-exited:
		b, _ := os.ReadFile(qemuLog)
		return nil, fmt.Errorf("QEMU exited (%v) before its QMP socket answered: %s", err, lastLines(b, 6))
	}
}

func lastLines(b []byte, n int) string {
	l := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// loopCounter reads the counter from the loop device: the area's bytes,
// what the region holds (or the page cache over it).
func loopCounter(loop string) (uint32, error) {
	f, err := os.Open(loop)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var b [4]byte
	if _, err := f.ReadAt(b[:], CounterAddr); err != nil {
		return 0, fmt.Errorf("pread %s at %#x: %w", loop, CounterAddr, err)
	}
	return binary.LittleEndian.Uint32(b[:]), nil
}

func ms(d time.Duration) int64 { return d.Milliseconds() }

func start(qdir, loop string) error {
	// A counter from zero: the area holds whatever was there before.
	f, err := os.OpenFile(loop, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteAt(make([]byte, 4), CounterAddr)
	if err == nil {
		err = f.Sync()
	}
	f.Close()
	if err != nil {
		return fmt.Errorf("zeroing the counter on %s: %w", loop, err)
	}
	t0 := time.Now()
	cmd, err := launch(qdir, loop)
	if err != nil {
		return err
	}
	q, err := connect(cmd)
	if err != nil {
		return err
	}
	defer q.Close()
	if err := q.waitStatus("running", time.Minute); err != nil {
		return err
	}
	ready := time.Since(t0)
	c1, c2, err := q.counterTwice()
	if err != nil {
		return err
	}
	lc, err := loopCounter(loop)
	if err != nil {
		return err
	}
	if c2 <= c1 || lc == 0 {
		return fmt.Errorf("the guest's counter does not run: %d then %d a second later, %d on %s", c1, c2, lc, loop)
	}
	fmt.Printf("FRVM start pid=%d ready_ms=%d counter=%d counter_later=%d loop_counter=%d\n", cmd.Process.Pid, ms(ready), c1, c2, lc)
	return nil
}

func suspend(areaName string) error {
	t0 := time.Now()
	q, err := dialQMP(qmpSock, 10*time.Second)
	if err != nil {
		return err
	}
	defer q.Close()
	running, err := q.counter()
	if err != nil {
		return err
	}
	if _, err := q.do("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}); err != nil {
		return err
	}
	os.Remove(migSock)
	ln, err := net.Listen("unix", migSock)
	if err != nil {
		return err
	}
	defer ln.Close()
	type res struct {
		b   []byte
		err error
	}
	got := make(chan res, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- res{nil, err}
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		got <- res{b, err}
	}()
	tm := time.Now()
	if _, err := q.do("migrate", map[string]string{"uri": "unix:" + migSock}); err != nil {
		return err
	}
	for {
		r, err := q.do("query-migrate", nil)
		if err != nil {
			return err
		}
		var m struct {
			Status    string `json:"status"`
			ErrorDesc string `json:"error-desc"`
		}
		if err := json.Unmarshal(r, &m); err != nil {
			return err
		}
		if m.Status == "completed" {
			break
		}
		if m.Status == "failed" || m.Status == "cancelled" {
			return fmt.Errorf("migration %s: %s", m.Status, m.ErrorDesc)
		}
		time.Sleep(20 * time.Millisecond)
	}
	stopped := time.Now() // the migration's last step stops the guest
	var stream res
	select {
	case stream = <-got:
	case <-time.After(time.Minute):
		return errors.New("the migration completed but its stream did not end")
	}
	if stream.err != nil {
		return fmt.Errorf("reading the migration stream: %w", stream.err)
	}
	migrated := time.Since(tm)
	// Paused since the migration completed: this is the value it resumes
	// from.
	count, err := q.counter()
	if err != nil {
		return err
	}
	st, _ := q.status()
	q.do("quit", nil) // QEMU may close the socket before it answers
	pid, err := readPid()
	if err != nil {
		return err
	}
	if err := waitExit(pid, time.Minute); err != nil {
		return err
	}
	if err := writeState(areaName, stream.b); err != nil {
		return err
	}
	// since_stop_ms dates the stop from this line's time on the console.
	fmt.Printf("FRVM suspend counter_running=%d counter=%d status=%s state_bytes=%d migrate_ms=%d total_ms=%d since_stop_ms=%d\n",
		running, count, st, len(stream.b), ms(migrated), ms(time.Since(t0)), ms(time.Since(stopped)))
	return nil
}

func readPid() (int, error) {
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// waitExit waits until pid is gone or a zombie.
func waitExit(pid int, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return nil
		}
		if i := bytes.LastIndexByte(b, ')'); i > 0 && len(b) > i+2 && b[i+2] == 'Z' {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("QEMU (pid %d) still runs %v after quit", pid, timeout)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// openArea opens the running system's preserved area name.
func openArea(name string) (*keptmem.FileDevice, preserve.Area, error) {
	loc, err := preserve.Find("/")
	if err != nil {
		return nil, preserve.Area{}, err
	}
	dev, err := keptmem.OpenFileDevice(loc.Device)
	if err != nil {
		return nil, preserve.Area{}, err
	}
	t, err := preserve.OpenLayout(dev, loc.Layout)
	if err != nil {
		dev.Close()
		return nil, preserve.Area{}, err
	}
	a, err := t.Area(name)
	if err != nil {
		dev.Close()
		return nil, preserve.Area{}, err
	}
	return dev, a, nil
}

// writeState writes the migration stream into the area, after its
// header, and syncs the device.
func writeState(name string, b []byte) error {
	dev, a, err := openArea(name)
	if err != nil {
		return err
	}
	defer dev.Close()
	if int64(len(b)) > a.Size-stateOffset {
		return fmt.Errorf("the migration stream (%d bytes) does not fit area %q (%d bytes)", len(b), name, a.Size)
	}
	head := make([]byte, 48)
	copy(head, stateHead)
	binary.LittleEndian.PutUint64(head[8:], uint64(len(b)))
	sum := sha256.Sum256(b)
	copy(head[16:], sum[:])
	if _, err := dev.WriteAt(b, a.Offset+stateOffset); err != nil {
		return err
	}
	if _, err := dev.WriteAt(head, a.Offset); err != nil {
		return err
	}
	return dev.Sync()
}

// readState reads the stream writeState wrote and checks its SHA-256.
func readState(name string) ([]byte, error) {
	dev, a, err := openArea(name)
	if err != nil {
		return nil, err
	}
	defer dev.Close()
	head := make([]byte, 48)
	if _, err := dev.ReadAt(head, a.Offset); err != nil {
		return nil, err
	}
	n := binary.LittleEndian.Uint64(head[8:])
	if !bytes.Equal(head[:8], stateHead) || n > uint64(a.Size-stateOffset) {
		return nil, fmt.Errorf("area %q holds no migration stream (header %x)", name, head[:16])
	}
	b := make([]byte, n)
	if _, err := dev.ReadAt(b, a.Offset+stateOffset); err != nil {
		return nil, err
	}
	if sum := sha256.Sum256(b); !bytes.Equal(sum[:], head[16:48]) {
		return nil, fmt.Errorf("area %q: the migration stream's SHA-256 does not match its header", name)
	}
	return b, nil
}

func resume(qdir, loop, areaName string) error {
	t0 := time.Now()
	state, err := readState(areaName)
	if err != nil {
		return err
	}
	kept, err := loopCounter(loop)
	if err != nil {
		return err
	}
	inSock := filepath.Join(runDir, "incoming.sock")
	os.Remove(inSock)
	cmd, err := launch(qdir, loop, "-incoming", "defer")
	if err != nil {
		return err
	}
	q, err := connect(cmd)
	if err != nil {
		return err
	}
	defer q.Close()
	if _, err := q.do("migrate-set-capabilities", map[string]any{
		"capabilities": []map[string]any{{"capability": "x-ignore-shared", "state": true}},
	}); err != nil {
		return err
	}
	if _, err := q.do("migrate-incoming", map[string]string{"uri": "unix:" + inSock}); err != nil {
		return err
	}
	c, err := net.Dial("unix", inSock)
	if err != nil {
		return err
	}
	_, err = c.Write(state)
	c.Close()
	if err != nil {
		return fmt.Errorf("sending the migration stream: %w", err)
	}
	if err := q.waitStatus("running", 2*time.Minute); err != nil {
		b, _ := os.ReadFile(qemuLog)
		return fmt.Errorf("%w: %s", err, lastLines(b, 6))
	}
	runs := time.Now()
	resumed := runs.Sub(t0)
	c1, c2, err := q.counterTwice()
	if err != nil {
		return err
	}
	// since_run_ms dates the resumption from this line's time on the
	// console.
	fmt.Printf("FRVM resume loop_counter=%d counter=%d counter_later=%d state_bytes=%d resume_ms=%d pid=%d since_run_ms=%d\n",
		kept, c1, c2, len(state), ms(resumed), cmd.Process.Pid, ms(time.Since(runs)))
	return nil
}
