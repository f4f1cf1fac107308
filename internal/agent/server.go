package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"syscall"
	"time"

	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// The API: every call is a POST of a JSON request to /v1/<name>, answered by
// a JSON response, or by an errorBody with a non-2xx status.
const (
	pathInfo   = "/v1/info"
	pathSync   = "/v1/sync"
	pathStage  = "/v1/stage"
	pathCache  = "/v1/cache"
	pathVerify = "/v1/verify"
	pathEvict  = "/v1/evict"
)

type errorBody struct {
	Error string `json:"error"`
	// Kinds name the sentinel errors Error wraps (see errorKinds).
	Kinds []string `json:"kinds,omitempty"`
	// Partial is the operation's report when it failed part-way (a sync
	// that read some modules), so the client can still show it.
	Partial json.RawMessage `json:"partial,omitempty"`
}

type empty struct{}

// Limits of the daemon's requests (ServeOptions).
const (
	// DefaultRequestTimeout bounds a request's work in the daemon: a stage
	// reads at most the manifest's modules and loads an image, seconds on
	// real hardware and a few minutes under emulation.
	DefaultRequestTimeout = 10 * time.Minute
	// DefaultMaxRequestBytes bounds a request's body: the largest is an
	// inline manifest, about 300 bytes a module.
	DefaultMaxRequestBytes = 1 << 20
	// maxHeaderBytes bounds a request's headers (the client sends a few).
	maxHeaderBytes = 16 << 10
)

// Errors of the daemon's protocol.
var (
	// ErrNotAuthorized: the peer on the socket is neither root nor a
	// member of the group the daemon allows (ServeOptions.Group).
	ErrNotAuthorized = errors.New("not authorized to use the fastreboot daemon")
	// ErrRequestTooLarge: a request's body exceeds the daemon's limit.
	ErrRequestTooLarge = errors.New("request too large")
	// ErrRequestTimeout: the daemon gave up on a request after its
	// deadline (ServeOptions.RequestTimeout).
	ErrRequestTimeout = errors.New("request deadline exceeded")
)

// limits are what the handlers enforce on every request.
type limits struct {
	timeout  time.Duration
	maxBytes int64
}

// Handler serves s over HTTP, with the default limits: each request's
// body is at most DefaultMaxRequestBytes and its work is bounded by
// DefaultRequestTimeout. (Serve adds the peer check.)
func Handler(s Service) http.Handler {
	return handler(s, limits{timeout: DefaultRequestTimeout, maxBytes: DefaultMaxRequestBytes})
}

func handler(s Service, lim limits) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+pathInfo, handle(lim, func(ctx context.Context, _ empty) (*Info, error) { return s.Info(ctx) }))
	mux.Handle("POST "+pathSync, handle(lim, s.Sync))
	mux.Handle("POST "+pathStage, handle(lim, s.Stage))
	mux.Handle("POST "+pathCache, handle(lim, func(ctx context.Context, _ empty) (*CacheListing, error) { return s.Cache(ctx) }))
	mux.Handle("POST "+pathVerify, handle(lim, func(ctx context.Context, _ empty) (*modcache.VerifyReport, error) { return s.Verify(ctx) }))
	mux.Handle("POST "+pathEvict, handle(lim, func(ctx context.Context, _ empty) (*modcache.EvictReport, error) { return s.Evict(ctx) }))
	crashRoutes(mux, s, lim)
	mux.Handle("POST "+pathBless, handle(lim, s.Bless))
	mux.Handle("POST "+pathRollback, handle(lim, s.Rollback))
	return mux
}

// handle decodes a request of at most lim.maxBytes, runs fn under a
// deadline of lim.timeout and answers with its report or its error. When
// the deadline passes first, the client gets ErrRequestTimeout at once;
// fn, whose context is then done, finishes in the background.
func handle[Req, Resp any](lim limits, fn func(context.Context, Req) (*Resp, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.ContentLength > lim.maxBytes {
			writeError(w, http.StatusRequestEntityTooLarge, tooLarge(r, lim))
			return
		}
		var req Req
		if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, lim.maxBytes)).Decode(&req); err != nil {
			var mb *http.MaxBytesError
			if errors.As(err, &mb) {
				writeError(w, http.StatusRequestEntityTooLarge, tooLarge(r, lim))
				return
			}
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("bad request: %v", err)})
			return
		}
		ctx, cancel := context.WithTimeout(r.Context(), lim.timeout)
		defer cancel()
		type result struct {
			resp *Resp
			err  error
		}
		done := make(chan result, 1)
		go func() {
			resp, err := fn(ctx, req)
			done <- result{resp, err}
		}()
		var res result
		select {
		case res = <-done:
		case <-ctx.Done():
			if r.Context().Err() != nil {
				return // the client is gone
			}
			writeError(w, http.StatusGatewayTimeout, fmt.Errorf("%s: %w: no answer within %s (the daemon's --request-timeout); the operation stops at its next check of the deadline, or completes if it is past the last one (fastreboot status says what is staged)",
				r.URL.Path, ErrRequestTimeout, lim.timeout))
			return
		}
		if res.err != nil {
			body := errorBody{Error: res.err.Error(), Kinds: Kinds(res.err)}
			if res.resp != nil {
				body.Partial, _ = json.Marshal(res.resp)
			}
			writeJSON(w, http.StatusUnprocessableEntity, body)
			return
		}
		writeJSON(w, http.StatusOK, res.resp)
	})
}

func tooLarge(r *http.Request, lim limits) error {
	return fmt.Errorf("%s: %w: the body exceeds the daemon's limit of %d bytes", r.URL.Path, ErrRequestTooLarge, lim.maxBytes)
}

func writeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, errorBody{Error: err.Error(), Kinds: Kinds(err)})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// ServeOptions configure Serve. The zero value serves root and the
// daemon's own user alone, with the default limits.
type ServeOptions struct {
	// RequestTimeout bounds each request's work; 0 means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// MaxRequestBytes bounds each request's body; 0 means
	// DefaultMaxRequestBytes.
	MaxRequestBytes int64
	// Group, a group name or numeric ID, lets its members use the daemon
	// besides root: the socket is then mode 0660 and owned by that group.
	// "" serves root (and the daemon's user) alone (mode 0600).
	Group string
}

// Serve runs a as the daemon on the unix socket at path until ctx ends.
//
// The socket is created in a new directory of mode 0700 next to path,
// given its mode (0600, or 0660 and the group of opts.Group) and only then
// renamed to path: no one can connect to it before its mode is final, and
// its appearing at path means the daemon is ready. A stale socket left by
// a dead daemon is replaced, a live one is an error. Every connection's
// peer is checked with SO_PEERCRED: root, or a member of opts.Group
// (its primary group or a supplementary one), else the request is refused
// with ErrNotAuthorized (the daemon's own user is served too). Requests
// are bounded in size and time (opts).
func Serve(ctx context.Context, a *Agent, path string, opts ServeOptions) error {
	if opts.RequestTimeout <= 0 {
		opts.RequestTimeout = DefaultRequestTimeout
	}
	if opts.MaxRequestBytes <= 0 {
		opts.MaxRequestBytes = DefaultMaxRequestBytes
	}
	gid := -1
	if opts.Group != "" {
		var err error
		if gid, err = lookupGroup(opts.Group); err != nil {
			return fmt.Errorf("agent socket %s: %w", path, err)
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("agent socket dir: %w", err)
	}
	// connect(2) to a file that is not a socket also fails with
	// ECONNREFUSED: never take that for a stale socket and remove it.
	if fi, err := os.Lstat(path); err == nil && fi.Mode().Type() != os.ModeSocket {
		return fmt.Errorf("agent socket %s: exists and is not a socket (%s)", path, fi.Mode().Type())
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	switch {
	case err == nil:
		c.Close()
		return fmt.Errorf("agent socket %s: another daemon is listening", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		// A dead daemon's socket: nobody listens, replace it.
		if err := os.Remove(path); err != nil {
			return fmt.Errorf("removing stale agent socket: %w", err)
		}
	case errors.Is(err, os.ErrNotExist):
	default:
		// Not known to be stale (e.g. no permission to connect): leave it.
		return fmt.Errorf("agent socket %s: %w", path, err)
	}
	ln, err := listenPrivate(path, gid)
	if err != nil {
		return err
	}
	defer os.Remove(path)
	a.mu.Lock()
	a.daemon = true
	a.mu.Unlock()
	srv := &http.Server{
		Handler:           authorize(handler(a, limits{timeout: opts.RequestTimeout, maxBytes: opts.MaxRequestBytes}), gid, opts.Group),
		ConnContext:       withPeer,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       time.Minute,
		// The answer is written after the request's work, which its
		// deadline bounds.
		WriteTimeout:   opts.RequestTimeout + time.Minute,
		IdleTimeout:    2 * time.Minute,
		MaxHeaderBytes: maxHeaderBytes,
	}
	// Serve returns as soon as Shutdown starts; wait until the requests in
	// flight are answered, so that the caller may close the agent's cache.
	shutdown := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		defer close(shutdown)
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(shut)
	})
	err = srv.Serve(ln)
	if stop() {
		// ctx has not ended: Serve failed by itself.
		return fmt.Errorf("agent serve %s: %w", path, err)
	}
	<-shutdown
	return nil
}

// listenPrivate listens on a socket at path that no one but root (and
// gid's members, gid >= 0) could ever connect to: it binds in a new
// directory of mode 0700 beside path, sets the socket's mode and group
// there, and renames it to path.
func listenPrivate(path string, gid int) (net.Listener, error) {
	private, err := os.MkdirTemp(filepath.Dir(path), ".fastreboot-sock.")
	if err != nil {
		return nil, fmt.Errorf("agent socket %s: private directory: %w", path, err)
	}
	defer os.RemoveAll(private)
	tmp := filepath.Join(private, "s")
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return nil, fmt.Errorf("listen unix %s: %w", path, err)
	}
	// The socket is renamed below: closing the listener must not unlink
	// tmp, which may by then be another daemon's.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	fail := func(err error) (net.Listener, error) {
		ln.Close()
		os.Remove(tmp)
		return nil, fmt.Errorf("agent socket %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if gid >= 0 {
		if err := os.Lchown(tmp, -1, gid); err != nil {
			return fail(err)
		}
		mode = 0o660
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return fail(err)
	}
	// Rename last, so that the socket appearing means the daemon is ready.
	if err := os.Rename(tmp, path); err != nil {
		return fail(err)
	}
	return ln, nil
}

// lookupGroup resolves a group name or numeric ID.
func lookupGroup(name string) (int, error) {
	if id, err := strconv.Atoi(name); err == nil && id >= 0 {
		return id, nil
	}
	g, err := user.LookupGroup(name)
	if err != nil {
		return -1, fmt.Errorf("group %q: %w", name, err)
	}
	id, err := strconv.Atoi(g.Gid)
	if err != nil {
		return -1, fmt.Errorf("group %q: ID %q: %w", name, g.Gid, err)
	}
	return id, nil
}

// peer is the credentials of a connection's peer (SO_PEERCRED), or why
// they could not be read.
type peer struct {
	pid, uid, gid int
	err           error
}

type peerKey struct{}

// withPeer records the peer of c in the connection's context.
func withPeer(ctx context.Context, c net.Conn) context.Context {
	p := peer{err: errors.New("not a unix socket connection")}
	if uc, ok := c.(*net.UnixConn); ok {
		p = peerCred(uc)
	}
	return context.WithValue(ctx, peerKey{}, p)
}

// authorize refuses, with ErrNotAuthorized, the requests whose peer is
// neither root nor a member of gid (gid < 0: root alone).
func authorize(h http.Handler, gid int, group string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p, ok := r.Context().Value(peerKey{}).(peer)
		if !ok {
			p.err = errors.New("no peer credentials")
		}
		if err := p.allowed(gid, group); err != nil {
			writeError(w, http.StatusForbidden, err)
			return
		}
		h.ServeHTTP(w, r)
	})
}

// allowed says whether p may use the daemon: root, the daemon's own user
// (who could trace the daemon anyway: a daemon run by a user, on a test
// tree, serves that user), or (gid >= 0) a process whose group or
// supplementary groups include gid.
func (p peer) allowed(gid int, group string) error {
	if p.err != nil {
		return fmt.Errorf("%w: peer credentials (SO_PEERCRED): %v", ErrNotAuthorized, p.err)
	}
	if p.uid == 0 || p.uid == os.Geteuid() {
		return nil
	}
	if gid >= 0 {
		if p.gid == gid {
			return nil
		}
		groups, err := supplementaryGroups(p.pid)
		if err == nil && slices.Contains(groups, gid) {
			return nil
		}
		return fmt.Errorf("%w: peer pid %d uid %d gid %d is neither root nor a member of group %s (the daemon's --group)", ErrNotAuthorized, p.pid, p.uid, p.gid, group)
	}
	return fmt.Errorf("%w: peer pid %d uid %d is not root (start the daemon with --group to allow a group)", ErrNotAuthorized, p.pid, p.uid)
}
