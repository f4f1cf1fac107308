package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
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

// Handler serves s over HTTP.
func Handler(s Service) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+pathInfo, handle(func(ctx context.Context, _ empty) (*Info, error) { return s.Info(ctx) }))
	mux.Handle("POST "+pathSync, handle(s.Sync))
	mux.Handle("POST "+pathStage, handle(s.Stage))
	mux.Handle("POST "+pathCache, handle(func(ctx context.Context, _ empty) (*CacheListing, error) { return s.Cache(ctx) }))
	mux.Handle("POST "+pathVerify, handle(func(ctx context.Context, _ empty) (*modcache.VerifyReport, error) { return s.Verify(ctx) }))
	mux.Handle("POST "+pathEvict, handle(func(ctx context.Context, _ empty) (*modcache.EvictReport, error) { return s.Evict(ctx) }))
	crashRoutes(mux, s)
	return mux
}

func handle[Req, Resp any](fn func(context.Context, Req) (*Resp, error)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req Req
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			writeJSON(w, http.StatusBadRequest, errorBody{Error: fmt.Sprintf("bad request: %v", err)})
			return
		}
		resp, err := fn(r.Context(), req)
		if err != nil {
			body := errorBody{Error: err.Error(), Kinds: Kinds(err)}
			if resp != nil {
				body.Partial, _ = json.Marshal(resp)
			}
			writeJSON(w, http.StatusUnprocessableEntity, body)
			return
		}
		writeJSON(w, http.StatusOK, resp)
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// Serve runs a as the daemon on the unix socket at path until ctx ends. The
// socket is created mode 0600 (staging needs CAP_SYS_BOOT anyway); a stale
// socket left by a dead daemon is replaced, a live one is an error.
func Serve(ctx context.Context, a *Agent, path string) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
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
	// A daemon that died between listen and rename leaves the temporary
	// socket behind; binding to it would fail with EADDRINUSE.
	tmp := path + ".new"
	os.Remove(tmp)
	ln, err := net.Listen("unix", tmp)
	if err != nil {
		return fmt.Errorf("listen unix %s: %w", path, err)
	}
	// The socket is renamed below: closing the listener must not unlink
	// tmp, which may by then be another daemon's.
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	if err := os.Chmod(tmp, 0o600); err != nil {
		ln.Close()
		os.Remove(tmp)
		return fmt.Errorf("chmod %s: %w", tmp, err)
	}
	// Rename last, so that the socket appearing means the daemon is ready.
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		os.Remove(tmp)
		return fmt.Errorf("rename %s: %w", tmp, err)
	}
	defer os.Remove(path)
	a.mu.Lock()
	a.daemon = true
	a.mu.Unlock()
	srv := &http.Server{Handler: Handler(a), ReadHeaderTimeout: 10 * time.Second}
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
