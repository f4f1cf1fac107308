package cli

import (
	"context"
	"fmt"
	"os/signal"
	"syscall"

	"github.com/fastreboot/fastreboot/internal/agent"
)

// cmdDaemon runs the agent that holds this generation's cache: it resumes
// from the handoff (rehydrating the cache without reading storage), then
// serves the other commands until SIGTERM or SIGINT.
func cmdDaemon(ctx context.Context, e *env, args []string) error {
	fs := newFlags("daemon")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("daemon takes no arguments, got %q", pos)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	a, err := agent.New(ctx, agent.Options{Root: e.root, StateDir: e.stateDir, Logger: e.log, Resume: true, Machine: e.cfg.machine})
	if err != nil {
		return err
	}
	defer a.Close()
	// A crash of this generation leaves its log in pstore only if the
	// backend is registered: load ramoops for the region the command
	// line names (a warning if that fails, never fatal).
	if ld, err := a.LoadPstore(); err != nil {
		fmt.Fprintf(e.stderr, "fastreboot daemon: warning: %v\n", err)
	} else if len(ld.Loaded) > 0 {
		fmt.Fprintf(e.stderr, "fastreboot daemon: pstore backend %s registered (ramoops %s)\n", ld.Backend, ld.Params)
	}
	st := a.State()
	fmt.Fprintf(e.stderr, "fastreboot daemon: generation %d (%s), %d modules rehydrated (%s) in %s, socket %s\n",
		st.Generation, st.Reason, st.Rehydrated.Modules, human(st.Rehydrated.Bytes), ms(st.RehydrateTime), e.socket)
	if st.RehydrateError != "" {
		fmt.Fprintf(e.stderr, "fastreboot daemon: rehydration incomplete: %s\n", st.RehydrateError)
	}
	if a.PrepareKernelELF(ctx) {
		fmt.Fprintf(e.stderr, "fastreboot daemon: re-deriving the decompressed kernel for --load=segments in the background\n")
	}
	return agent.Serve(ctx, a, e.socket)
}
