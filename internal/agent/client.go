package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"syscall"
	"time"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// ErrNoDaemon is returned by Dial when no daemon listens on the socket.
var ErrNoDaemon = errors.New("no fastreboot daemon")

// ErrClientTimeout is returned by a Client's call that got no answer
// within ClientOptions.Timeout.
var ErrClientTimeout = errors.New("no answer from the daemon in time")

// DefaultClientTimeout is how long a Client waits for an answer by default:
// a minute more than the daemon's DefaultRequestTimeout, so that a daemon
// that gives up first says so itself.
const DefaultClientTimeout = DefaultRequestTimeout + time.Minute

// ClientOptions configure DialWith.
type ClientOptions struct {
	// Timeout bounds each call, from connecting to reading the answer;
	// 0 means DefaultClientTimeout.
	Timeout time.Duration
}

// Client is a Service served by a daemon.
type Client struct {
	socket  string
	timeout time.Duration
	http    *http.Client
}

// Dial is DialWith with the default options.
func Dial(socket string) (*Client, error) {
	return DialWith(socket, ClientOptions{})
}

// DialWith connects to the daemon at socket. It returns an error wrapping
// ErrNoDaemon when the socket does not exist or nobody listens on it, and
// one wrapping ErrNotAuthorized when the socket's mode refuses this user.
func DialWith(socket string, opts ClientOptions) (*Client, error) {
	if opts.Timeout <= 0 {
		opts.Timeout = DefaultClientTimeout
	}
	c, err := net.DialTimeout("unix", socket, opts.Timeout)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			return nil, fmt.Errorf("%w on %s", ErrNoDaemon, socket)
		}
		if errors.Is(err, os.ErrPermission) {
			return nil, fmt.Errorf("%w: dial %s: %w (the daemon serves root, its own user and the members of its --group)", ErrNotAuthorized, socket, err)
		}
		return nil, fmt.Errorf("dial %s: %w", socket, err)
	}
	c.Close()
	return &Client{socket: socket, timeout: opts.Timeout, http: &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", socket)
		},
	}}}, nil
}

// call posts req to path and decodes the answer into a new Resp. A failed
// operation's partial report, if the daemon sent one, is returned with the
// error.
func call[Resp any](ctx context.Context, c *Client, path string, req any) (*Resp, error) {
	body, err := json.Marshal(req)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeoutCause(ctx, c.timeout, ErrClientTimeout)
	defer cancel()
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://fastreboot"+path, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	hr.Header.Set("Content-Type", "application/json")
	resp, err := c.http.Do(hr)
	if err != nil {
		if errors.Is(context.Cause(ctx), ErrClientTimeout) {
			return nil, fmt.Errorf("daemon %s %s: %w within %s (--timeout): %w", c.socket, path, ErrClientTimeout, c.timeout, err)
		}
		return nil, fmt.Errorf("daemon %s %s: %w", c.socket, path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var eb errorBody
		if err := json.NewDecoder(resp.Body).Decode(&eb); err != nil {
			return nil, fmt.Errorf("daemon %s %s: %s", c.socket, path, resp.Status)
		}
		var partial *Resp
		if len(eb.Partial) > 0 {
			partial = new(Resp)
			if json.Unmarshal(eb.Partial, partial) != nil {
				partial = nil
			}
		}
		return partial, &RemoteError{Msg: eb.Error, Kinds: eb.Kinds}
	}
	out := new(Resp)
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		if errors.Is(context.Cause(ctx), ErrClientTimeout) {
			return nil, fmt.Errorf("daemon %s %s: %w within %s (--timeout): %w", c.socket, path, ErrClientTimeout, c.timeout, err)
		}
		return nil, fmt.Errorf("daemon %s %s: decoding answer: %w", c.socket, path, err)
	}
	return out, nil
}

// Info implements Service.
func (c *Client) Info(ctx context.Context) (*Info, error) {
	return call[Info](ctx, c, pathInfo, empty{})
}

// Sync implements Service.
func (c *Client) Sync(ctx context.Context, req SyncRequest) (*modcache.SyncReport, error) {
	return call[modcache.SyncReport](ctx, c, pathSync, req)
}

// Stage implements Service.
func (c *Client) Stage(ctx context.Context, req StageRequest) (*fastreboot.StageReport, error) {
	return call[fastreboot.StageReport](ctx, c, pathStage, req)
}

// Cache implements Service.
func (c *Client) Cache(ctx context.Context) (*CacheListing, error) {
	return call[CacheListing](ctx, c, pathCache, empty{})
}

// Verify implements Service.
func (c *Client) Verify(ctx context.Context) (*modcache.VerifyReport, error) {
	return call[modcache.VerifyReport](ctx, c, pathVerify, empty{})
}

// Evict implements Service.
func (c *Client) Evict(ctx context.Context) (*modcache.EvictReport, error) {
	return call[modcache.EvictReport](ctx, c, pathEvict, empty{})
}
