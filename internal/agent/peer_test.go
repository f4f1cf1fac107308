package agent_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

const peerHelperEnv = "FASTREBOOT_TEST_PEER_SOCKET"

// TestPeerHelper is the client a test runs as another user: it asks the
// daemon on the socket the environment names for Info and prints "ok" or
// the error. It does nothing in a normal test run.
func TestPeerHelper(t *testing.T) {
	sock := os.Getenv(peerHelperEnv)
	if sock == "" {
		t.Skip("helper process only")
	}
	c, err := agent.Dial(sock)
	if err == nil {
		_, err = c.Info(context.Background())
	}
	if err != nil {
		fmt.Printf("error: %v (not authorized: %v)\n", err, errors.Is(err, agent.ErrNotAuthorized))
		os.Exit(0)
	}
	fmt.Println("ok")
	os.Exit(0)
}

// asUser runs TestPeerHelper against sock as uid/gid with the given
// supplementary groups and returns what it printed.
func asUser(t *testing.T, bin, sock string, uid, gid uint32, groups ...uint32) string {
	t.Helper()
	cmd := exec.Command(bin, "-test.run=^TestPeerHelper$")
	cmd.Env = append(os.Environ(), peerHelperEnv+"="+sock)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uid, Gid: gid, Groups: groups}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("helper as uid %d: %v\n%s", uid, err, out)
	}
	return string(out)
}

// sharedCopy copies the test binary where another user can run it, and
// makes the socket's directory reachable by others.
func sharedCopy(t *testing.T, sock string) string {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "frpeer")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bin := filepath.Join(dir, "agent.test")
	if err := os.WriteFile(bin, b, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{dir, filepath.Dir(sock)} {
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	return bin
}

// TestPeerAuthorization: the daemon serves root, and the members of the
// group it is given; another user is refused by the socket's mode and, if
// the mode lets it connect anyway, by the SO_PEERCRED check. The socket
// carries its final mode from the moment it appears.
func TestPeerAuthorization(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("SO_PEERCRED is Linux-only")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test runs the client as another user (syscall.Credential)")
	}
	const nobody, member, group = 65534, 65533, 4242

	t.Run("root only", func(t *testing.T) {
		a, _ := newAgent(t, agent.Options{})
		sock := socketPath(t)
		stop := serveAt(t, a, sock)
		t.Cleanup(func() { stop() })
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Type() != fs.ModeSocket || fi.Mode().Perm() != 0o600 || fi.Sys().(*syscall.Stat_t).Uid != 0 {
			t.Errorf("socket mode %v, owner %d; want a root socket of mode 0600", fi.Mode(), fi.Sys().(*syscall.Stat_t).Uid)
		}
		bin := sharedCopy(t, sock)
		if out := asUser(t, bin, sock, nobody, nobody); !strings.Contains(out, "permission denied") || !strings.Contains(out, "not authorized: true") {
			t.Errorf("another user through the socket's mode: %q, want permission denied (ErrNotAuthorized)", out)
		}
		// A socket whose mode lets anyone connect (changed by hand, or a
		// daemon of old): the peer check still refuses.
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		out := asUser(t, bin, sock, nobody, nobody)
		if !strings.Contains(out, "not authorized: true") || !strings.Contains(out, fmt.Sprintf("uid %d is not root", nobody)) {
			t.Errorf("another user past the socket's mode: %q, want refused by SO_PEERCRED naming its uid", out)
		}
		if out := asUser(t, bin, sock, 0, 0); out != "ok\n" {
			t.Errorf("root: %q", out)
		}
	})

	t.Run("group", func(t *testing.T) {
		a, _ := newAgent(t, agent.Options{})
		sock := socketPath(t)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- agent.Serve(ctx, a, sock, agent.ServeOptions{Group: fmt.Sprint(group)}) }()
		t.Cleanup(func() { cancel(); <-done })
		waitSocket(t, sock, done)
		fi, err := os.Lstat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != group {
			t.Errorf("socket mode %v, group %d; want 0660 and group %d", fi.Mode(), st.Gid, group)
		}
		bin := sharedCopy(t, sock)
		if out := asUser(t, bin, sock, member, nobody, group); out != "ok\n" {
			t.Errorf("a member of group %d (supplementary): %q", group, out)
		}
		if out := asUser(t, bin, sock, member, group); out != "ok\n" {
			t.Errorf("a member of group %d (primary): %q", group, out)
		}
		if out := asUser(t, bin, sock, nobody, nobody); !strings.Contains(out, "permission denied") {
			t.Errorf("a non-member: %q, want permission denied", out)
		}
		if err := os.Chmod(sock, 0o666); err != nil {
			t.Fatal(err)
		}
		if out := asUser(t, bin, sock, nobody, nobody); !strings.Contains(out, "not authorized: true") || !strings.Contains(out, fmt.Sprintf("member of group %d", group)) {
			t.Errorf("a non-member past the socket's mode: %q, want refused by SO_PEERCRED", out)
		}
	})
}

// waitSocket waits until a daemon answers on sock.
func waitSocket(t *testing.T, sock string, done <-chan error) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		select {
		case err := <-done:
			t.Fatalf("Serve returned early: %v", err)
		default:
		}
		if c, err := agent.Dial(sock); err == nil {
			if _, err := c.Info(context.Background()); err == nil {
				return
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("daemon on %s did not answer in time", sock)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSocketModeFromTheStart: while the daemon starts, nothing another
// user could connect to ever appears in the socket's directory: no socket
// of a wider mode (even under umask 0), no directory but mode 0700 ones.
// The socket used to be bound beside its path under the process's umask and
// chmod'ed after listen(2).
func TestSocketModeFromTheStart(t *testing.T) {
	old := syscall.Umask(0)
	defer syscall.Umask(old)
	for i := 0; i < 20; i++ {
		sock := socketPath(t)
		dir := filepath.Dir(sock)
		a, _ := newAgent(t, agent.Options{})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- agent.Serve(ctx, a, sock, agent.ServeOptions{}) }()
		var bad []string
		for {
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				fi, err := os.Lstat(filepath.Join(dir, e.Name()))
				if err != nil {
					continue
				}
				switch {
				case fi.Mode().Type() == fs.ModeSocket && fi.Mode().Perm() != 0o600,
					fi.IsDir() && fi.Mode().Perm() != 0o700:
					bad = append(bad, fmt.Sprintf("%s %v", e.Name(), fi.Mode()))
				}
			}
			if fi, err := os.Lstat(sock); err == nil && fi.Mode().Type() == fs.ModeSocket {
				break
			}
			select {
			case err := <-done:
				t.Fatalf("Serve returned: %v", err)
			default:
			}
		}
		cancel()
		if err := <-done; err != nil {
			t.Fatal(err)
		}
		if len(bad) > 0 {
			t.Fatalf("start %d: reachable while the daemon started: %v", i, bad)
		}
	}
}

// TestRequestLimits: a request larger than the daemon's limit is refused
// with a clear error; one that runs past the daemon's deadline is answered
// with ErrRequestTimeout; a client that waits longer than its timeout
// gives up with an error naming the socket and the request.
func TestRequestLimits(t *testing.T) {
	ctx := context.Background()
	im1, _ := testimage.Update()
	m1, p1 := im1.WriteTemp(t)
	entered, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	a, _ := newAgent(t, agent.Options{Storage: func(dir string) modcache.Source {
		return blocking{dir: modcache.DirSource(dir), entered: entered, once: &once, release: release}
	}})
	sock := socketPath(t)
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- agent.Serve(ctx, a, sock, agent.ServeOptions{MaxRequestBytes: 4096, RequestTimeout: 300 * time.Millisecond})
	}()
	t.Cleanup(func() { close(release); cancel(); <-done })
	waitSocket(t, sock, done)
	c, err := agent.Dial(sock)
	if err != nil {
		t.Fatal(err)
	}

	big := *m1
	for i := 0; i < 100; i++ {
		mod := m1.Modules[1]
		mod.Name = fmt.Sprintf("piece-%d", i)
		big.Modules = append(big.Modules, mod)
	}
	_, err = c.Stage(ctx, agent.StageRequest{Inline: &big, DryRun: true})
	if !errors.Is(err, agent.ErrRequestTooLarge) || !strings.Contains(err.Error(), "4096 bytes") {
		t.Errorf("oversized stage request: %v, want ErrRequestTooLarge naming the limit", err)
	}
	// The same, announced by its Content-Length, straight over HTTP.
	hc := &http.Client{Transport: &http.Transport{DialContext: unixDialer(sock)}}
	resp, err := hc.Post("http://fastreboot/v1/stage", "application/json", bytes.NewReader(bytes.Repeat([]byte(" "), 1<<20)))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(b), "request too large") {
		t.Errorf("1 MiB body: %s %s", resp.Status, b)
	}

	// The stage's source blocks: the daemon's deadline answers.
	t0 := time.Now()
	_, err = c.Stage(ctx, agent.StageRequest{Manifest: p1, DryRun: true})
	if !errors.Is(err, agent.ErrRequestTimeout) || !strings.Contains(err.Error(), "/v1/stage") {
		t.Errorf("stage past the daemon's deadline: %v, want ErrRequestTimeout naming the request", err)
	}
	if took := time.Since(t0); took > 5*time.Second {
		t.Errorf("the deadline of 300ms answered after %v", took)
	}
	<-entered

	// A client with a shorter timeout than the daemon's gives up first.
	slow, err := agent.DialWith(sock, agent.ClientOptions{Timeout: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	_, err = slow.Stage(ctx, agent.StageRequest{Manifest: p1, DryRun: true})
	if !errors.Is(err, agent.ErrClientTimeout) || !strings.Contains(err.Error(), sock) || !strings.Contains(err.Error(), "/v1/stage") {
		t.Errorf("client timeout: %v, want ErrClientTimeout naming %s and /v1/stage", err, sock)
	}
	// Requests that fit still answer.
	if _, err := c.Info(ctx); err != nil {
		t.Errorf("Info: %v", err)
	}
}

// blocking is a Source whose every Open blocks until release is closed,
// ignoring its context.
type blocking struct {
	dir     modcache.Source
	entered chan struct{}
	once    *sync.Once
	release chan struct{}
}

func (b blocking) Open(ctx context.Context, m bootimage.Module) (io.ReadCloser, error) {
	b.once.Do(func() { close(b.entered) })
	<-b.release
	return b.dir.Open(ctx, m)
}

func unixDialer(sock string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sock)
	}
}
