package agent

import (
	"context"
	"fmt"
	"net/http"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// The agent's crash path is a crashpath.Path over its cache; these are the
// routes and the requests that name manifests by file.

// CrashArmRequest says what to arm: a manifest file (or inline), or
// nothing for the image this generation runs, served from the cache. The
// other fields are crashpath.ArmOptions'.
type CrashArmRequest struct {
	Manifest     string                  `json:"manifest,omitempty"`
	Inline       *bootimage.Manifest     `json:"inline,omitempty"`
	Mode         crashhandler.Mode       `json:"mode,omitempty"`
	Auto         bool                    `json:"auto,omitempty"`
	Append       []string                `json:"append,omitempty"`
	PanicTimeout int                     `json:"panic_timeout,omitempty"`
	NoFaults     bool                    `json:"no_faults,omitempty"`
	AllowNoRearm bool                    `json:"allow_no_rearm,omitempty"`
	Load         crashhandler.LoadMethod `json:"load,omitempty"`
	Initrd       crashpath.Initrd        `json:"initrd,omitempty"`
}

// CrashEstimateRequest names the image to estimate: a manifest file (or
// inline), or neither for the armed image (its recorded sizing), else the
// image this generation runs. The other fields are
// crashpath.EstimateOptions'.
type CrashEstimateRequest struct {
	Manifest string                  `json:"manifest,omitempty"`
	Inline   *bootimage.Manifest     `json:"inline,omitempty"`
	Mode     crashhandler.Mode       `json:"mode,omitempty"`
	Load     crashhandler.LoadMethod `json:"load,omitempty"`
	Initrd   crashpath.Initrd        `json:"initrd,omitempty"`
}

// crashConfig is the crashpath configuration of an agent with these
// options (Cache, Machine, State, Current and Lock are the agent's own).
func crashConfig(opts Options) crashpath.Config {
	return crashpath.Config{
		Root: opts.Root, StateDir: opts.StateDir, Logger: opts.Logger,
		MachineOptions: opts.Machine, Pstore: opts.Pstore, CrashInit: opts.CrashInit,
	}
}

// target resolves a request's manifest file or inline manifest (checking
// its signature under a trust root); neither is the running image, served
// from the cache alone (under a trust root, only if its manifest's carried
// signature verified). A manifest's modules are read into the cache here
// (Machine.Prefetch), before the crash path takes the operation lock,
// under which the target reads nothing.
//
// An estimate (arm false) of the running image needs no trust: it loads
// nothing.
func (a *Agent) target(ctx context.Context, path string, inline *bootimage.Manifest, arm bool) (crashpath.Target, error) {
	if path == "" && inline == nil {
		_, origin, err := a.runningImage()
		if err != nil && a.opts.Trust != nil && arm {
			return crashpath.Target{}, err
		}
		// The boot assessment may decide that a crash of the running
		// image boots last-known-good or the fallback instead.
		a.prefetchGood(ctx)
		// crashpath finds the running image itself (Config.Current, or it
		// says it is unknown); the estimate of an armed image needs none.
		return crashpath.Target{Source: noStorage{}, Origin: origin}, nil
	}
	m, src, origin, err := a.resolve(path, inline)
	if err != nil {
		return crashpath.Target{}, err
	}
	if _, err := a.mc.Prefetch(ctx, m, src); err != nil {
		return crashpath.Target{}, err
	}
	return crashpath.Target{Manifest: m, Source: evictedMeanwhile{}, Label: path, Origin: origin}, nil
}

// CrashArm implements Service (crashpath.Path.Arm).
func (a *Agent) CrashArm(ctx context.Context, req CrashArmRequest) (*crashpath.ArmReport, error) {
	t, err := a.target(ctx, req.Manifest, req.Inline, true)
	if err != nil {
		return nil, fmt.Errorf("crash arm: %w", err)
	}
	rep, err := a.crash.Arm(ctx, crashpath.ArmOptions{
		Target: t, Mode: req.Mode, Auto: req.Auto, Append: req.Append, PanicTimeout: req.PanicTimeout,
		NoFaults: req.NoFaults, AllowNoRearm: req.AllowNoRearm, Load: req.Load, Initrd: req.Initrd,
	})
	firmware := rep != nil && rep.Decision != nil && rep.Decision.Action == rollback.ActionFirmware
	if err == nil && rep != nil && (rep.Armed || firmware) {
		// A bless arms again with the same request, and the mode armed:
		// an --auto arm would find the handoff's mode only.
		r := req
		r.Auto = false
		if rep.State != nil {
			r.Mode = rep.State.Mode
		}
		a.mu.Lock()
		a.lastArm = &r
		a.mu.Unlock()
	}
	if err == nil && rep != nil && (rep.Armed || firmware) {
		d := rep.Decision
		if d == nil {
			d = &rollback.Decision{Action: rollback.ActionCrash, Why: "armed with " + req.Manifest}
		}
		a.setArmed(d)
	}
	if err == nil && rep != nil && rep.Decision != nil && !rep.Decision.LoopEnds.IsZero() {
		a.rearmAt(rep.Decision.LoopEnds)
	}
	return rep, err
}

// CrashEstimate implements Service (crashpath.Path.Estimate).
func (a *Agent) CrashEstimate(ctx context.Context, req CrashEstimateRequest) (*crashpath.EstimateReport, error) {
	t, err := a.target(ctx, req.Manifest, req.Inline, false)
	if err != nil {
		return nil, fmt.Errorf("crash estimate: %w", err)
	}
	return a.crash.Estimate(ctx, crashpath.EstimateOptions{Target: t, Mode: req.Mode, Load: req.Load, Initrd: req.Initrd})
}

// CrashDisarm implements Service: it unloads the crash image, restores the
// sysctls and reports the crash path.
func (a *Agent) CrashDisarm(ctx context.Context) (*crashpath.StatusReport, error) {
	warnings, err := a.crash.Disarm(ctx)
	if err != nil {
		return nil, err
	}
	a.setArmed(nil)
	rep, err := a.crash.Status()
	if rep != nil {
		rep.Warnings = warnings
	}
	return rep, err
}

// CrashStatus implements Service.
func (a *Agent) CrashStatus(ctx context.Context) (*crashpath.StatusReport, error) {
	return a.crash.Status()
}

// LoadPstore loads ramoops for this generation (crashpath.Path.LoadPstore);
// the daemon calls it at start.
func (a *Agent) LoadPstore() (*crashhandler.RamoopsLoad, error) {
	return a.crash.LoadPstore()
}

// The crash path's API paths.
const (
	pathCrashArm      = "/v1/crash/arm"
	pathCrashDisarm   = "/v1/crash/disarm"
	pathCrashStatus   = "/v1/crash/status"
	pathCrashEstimate = "/v1/crash/estimate"
)

func crashRoutes(mux *http.ServeMux, s Service, lim limits) {
	mux.Handle("POST "+pathCrashArm, handle(lim, s.CrashArm))
	mux.Handle("POST "+pathCrashDisarm, handle(lim, func(ctx context.Context, _ empty) (*crashpath.StatusReport, error) { return s.CrashDisarm(ctx) }))
	mux.Handle("POST "+pathCrashStatus, handle(lim, func(ctx context.Context, _ empty) (*crashpath.StatusReport, error) { return s.CrashStatus(ctx) }))
	mux.Handle("POST "+pathCrashEstimate, handle(lim, s.CrashEstimate))
}

// CrashArm implements Service.
func (c *Client) CrashArm(ctx context.Context, req CrashArmRequest) (*crashpath.ArmReport, error) {
	return call[crashpath.ArmReport](ctx, c, pathCrashArm, req)
}

// CrashDisarm implements Service.
func (c *Client) CrashDisarm(ctx context.Context) (*crashpath.StatusReport, error) {
	return call[crashpath.StatusReport](ctx, c, pathCrashDisarm, empty{})
}

// CrashStatus implements Service.
func (c *Client) CrashStatus(ctx context.Context) (*crashpath.StatusReport, error) {
	return call[crashpath.StatusReport](ctx, c, pathCrashStatus, empty{})
}

// CrashEstimate implements Service.
func (c *Client) CrashEstimate(ctx context.Context, req CrashEstimateRequest) (*crashpath.EstimateReport, error) {
	return call[crashpath.EstimateReport](ctx, c, pathCrashEstimate, req)
}
