package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// fakeLoader stands in for kexec_file_load.
type fakeLoader struct {
	mu      sync.Mutex
	calls   int
	cmdline string
	initrd  []byte // the last call's
}

func (l *fakeLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	var b []byte
	if initrd != nil { // nil: an unload
		var err error
		if b, err = io.ReadAll(io.NewSectionReader(initrd, 0, 1<<40)); err != nil {
			return err
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.calls++
	l.cmdline, l.initrd = cmdline, b
	return nil
}

// handoff returns the handoff of the image the last call loaded, whose
// handoff piece rep says the size of, unpacked into a new directory as the
// next kernel would.
func (l *fakeLoader) handoff(t *testing.T, rep *fastreboot.StageReport) *fastreboot.Handoff {
	t.Helper()
	l.mu.Lock()
	initrd := l.initrd
	l.mu.Unlock()
	if rep.HandoffBytes <= 0 || rep.HandoffBytes > int64(len(initrd)) {
		t.Fatalf("handoff piece of %d bytes in an initrd of %d", rep.HandoffBytes, len(initrd))
	}
	root := t.TempDir()
	piece := initrd[int64(len(initrd))-rep.HandoffBytes:]
	if err := cpio.ForEachRecord(cpio.Newc.Reader(bytes.NewReader(piece)), func(r cpio.Record) error {
		return cpio.CreateFileInRoot(r, root, false)
	}); err != nil {
		t.Fatalf("unpacking the handoff piece: %v", err)
	}
	h, err := fastreboot.ReadHandoff(root)
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func (l *fakeLoader) Calls() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.calls
}

// fakeRebooter stands in for sync(2) and reboot(2).
type fakeRebooter struct {
	mu    sync.Mutex
	calls []string
}

func (r *fakeRebooter) Sync() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, "sync")
	return nil
}

func (r *fakeRebooter) Reboot(cmd fastreboot.RebootCmd) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls = append(r.calls, cmd.String())
	return nil
}

func (r *fakeRebooter) Calls() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.calls...)
}

// goodRoot is the /proc and /sys of a machine that can kexec, with nothing
// loaded yet.
var goodRoot = map[string]string{
	"proc/cmdline":                            "BOOT_IMAGE=/boot/vmlinuz-6.1.0 root=/dev/vda ro quiet\n",
	"proc/uptime":                             "125.50 230.00\n",
	"proc/self/status":                        "Name:\tfastreboot\nCapEff:\t000001ffffffffff\n",
	"proc/sys/kernel/kexec_load_disabled":     "0\n",
	"proc/sys/kernel/kexec_load_limit_reboot": "-1\n",
	"sys/kernel/security/lockdown":            "[none] integrity confidentiality\n",
	"sys/kernel/kexec_loaded":                 "0\n",
	"sys/kernel/kexec_crash_loaded":           "0\n",
}

// harness runs the command line against a fake root, a state directory
// and a socket of its own, with a fake loader and rebooter: nothing it
// runs can load a kernel or reboot this machine.
type harness struct {
	t        *testing.T
	root     string
	stateDir string
	socket   string
	loader   *fakeLoader
	rebooter *fakeRebooter
	cfg      config
	// daemonErr is what the daemon startDaemon started wrote to stderr.
	daemonErr syncBuffer
}

func newHarness(t *testing.T) *harness {
	t.Helper()
	h := &harness{t: t, root: t.TempDir(), stateDir: t.TempDir(), loader: &fakeLoader{}, rebooter: &fakeRebooter{}}
	h.writeRoot(goodRoot)
	dir, err := os.MkdirTemp("", "fr") // socket paths must fit in 108 bytes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	h.socket = filepath.Join(dir, "s.sock")
	h.cfg = config{machine: fastreboot.Options{
		Loader:   h.loader,
		Rebooter: h.rebooter,
		// EBADF is what a kernel with kexec_file_load answers.
		Probe: func() error { return syscall.EBADF },
	}}
	return h
}

// writeRoot writes files (path relative to the fake root -> content).
func (h *harness) writeRoot(files map[string]string) {
	h.t.Helper()
	for rel, content := range files {
		p := filepath.Join(h.root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			h.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			h.t.Fatal(err)
		}
	}
}

type result struct {
	code           int
	stdout, stderr string
}

// run runs the command line with the harness's global flags first.
func (h *harness) run(args ...string) result {
	h.t.Helper()
	return h.runCtx(context.Background(), args...)
}

func (h *harness) runCtx(ctx context.Context, args ...string) result {
	h.t.Helper()
	var errw syncBuffer
	return h.runTo(ctx, &errw, args...)
}

// runTo is runCtx with stderr written to errw as well.
func (h *harness) runTo(ctx context.Context, errw *syncBuffer, args ...string) result {
	h.t.Helper()
	var out syncBuffer
	global := []string{"--root", h.root, "--state-dir", h.stateDir, "--socket", h.socket}
	code := run(ctx, append(global, args...), &out, errw, h.cfg)
	r := result{code, out.String(), errw.String()}
	h.t.Logf("fastreboot %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	return r
}

// startDaemon runs `fastreboot daemon` until the test ends and waits until
// it answers.
func (h *harness) startDaemon() { h.t.Helper(); h.startDaemonWith() }

// startDaemonWith is startDaemon with global flags for the daemon.
func (h *harness) startDaemonWith(global ...string) {
	h.t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan result, 1)
	go func() { done <- h.runTo(ctx, &h.daemonErr, append(global, "daemon")...) }()
	h.t.Cleanup(func() {
		cancel()
		select {
		case r := <-done:
			if r.code != ExitOK {
				h.t.Errorf("daemon exited %d: %s", r.code, r.stderr)
			}
		case <-time.After(10 * time.Second):
			h.t.Errorf("daemon did not stop")
		}
	})
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case r := <-done:
			h.t.Fatalf("daemon exited %d: %s", r.code, r.stderr)
		default:
		}
		if c, err := agent.Dial(h.socket); err == nil {
			if _, err := c.Info(ctx); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			h.t.Fatal("daemon did not answer in time")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// syncBuffer is a bytes.Buffer safe for a daemon's goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// decode parses the JSON output of a command into v.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	if r.code != ExitOK {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	decodeStdout(t, r, v)
}

// decodeStdout decodes the one JSON value r printed, whatever its exit
// code. Every --json document names its schema (docs/json.md); a test that
// decodes into a library type (the v1 documents keep the fields the
// library's types printed before the schemas existed) gets the document
// without its "schema", still strictly: a field the type does not know
// fails.
func decodeStdout(t *testing.T, r result, v any) {
	t.Helper()
	var doc map[string]json.RawMessage
	if err := json.Unmarshal([]byte(r.stdout), &doc); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	var schema string
	if err := json.Unmarshal(doc["schema"], &schema); err != nil || !strings.HasPrefix(schema, "fastreboot.") || !strings.HasSuffix(schema, ".v1") {
		t.Errorf("--json output without a schema \"fastreboot.*.v1\": %q", r.stdout)
	}
	in := r.stdout
	if !hasSchemaField(v) {
		delete(doc, "schema")
		b, err := json.Marshal(doc)
		if err != nil {
			t.Fatal(err)
		}
		in = string(b)
	}
	dec := json.NewDecoder(strings.NewReader(in))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decoding %q: %v", r.stdout, err)
	}
	if dec.More() {
		t.Errorf("more than one JSON value in %q", r.stdout)
	}
}

// jsonOf encodes a manifest without validating it, to write bad ones.
func jsonOf(m *bootimage.Manifest) ([]byte, error) { return json.MarshalIndent(m, "", "  ") }

// hasSchemaField reports whether *v is a struct with a "schema" field (a
// --json document type of this package).
func hasSchemaField(v any) bool {
	t := reflect.TypeOf(v)
	if t.Kind() != reflect.Pointer || t.Elem().Kind() != reflect.Struct {
		return false
	}
	f, ok := t.Elem().FieldByName("Schema")
	return ok && f.Tag.Get("json") == "schema"
}
