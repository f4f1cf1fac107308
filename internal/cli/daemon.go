package cli

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// verifyCarriedWord on the kernel command line is the daemon's
// --verify-carried=eager for a boot (what a test can set per generation).
const verifyCarriedWord = "fastreboot.verify_carried=eager"

// cmdDaemon runs the agent that holds this generation's cache: it resumes
// from the handoff (adopting the carried modules into the cache without
// reading storage; their digests are verified in the background at low
// priority, and before any use), then serves the other commands until
// SIGTERM or SIGINT.
//
// The hidden flag --verify-carried=eager (or the kernel command line word
// fastreboot.verify_carried=eager) hashes the carried modules before the
// socket is served instead, as fastreboot did before; it exists to measure
// the difference.
func cmdDaemon(ctx context.Context, e *env, args []string) error {
	fs := newFlags("daemon")
	var so agent.ServeOptions
	fs.DurationVar(&so.RequestTimeout, "request-timeout", agent.DefaultRequestTimeout, "the deadline of each request: past it the client gets an error and the operation stops at its next check")
	fs.Int64Var(&so.MaxRequestBytes, "max-request-bytes", agent.DefaultMaxRequestBytes, "the largest request body accepted (an inline manifest takes about 300 bytes a module)")
	fs.StringVar(&so.Group, "group", "", "a `GROUP` (name or ID) whose members may use the daemon besides root: the socket becomes mode 0660 owned by it; peers are checked with SO_PEERCRED (default: root only, mode 0600)")
	persist := fs.String("persist-dir", agent.DefaultPersistDir, "an existing `DIR` on the disk (under --root) where the daemon keeps a record of this boot's assessment, so that the cold boot after a crash loop that left for the firmware shows the chain of crashes; \"none\" keeps none")
	verify := fs.String("verify-carried", "", "lazy (adopt the carried modules at once, hash them in the background) or eager (hash them before serving); default lazy unless the command line has fastreboot.verify_carried=eager")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("daemon takes no arguments, got %q", pos)
	}
	var eager bool
	switch *verify {
	case "eager":
		eager = true
	case "lazy":
	case "":
		b, _ := os.ReadFile(filepath.Join(e.root, "proc/cmdline"))
		params, _ := bootimage.SplitCmdline(string(b))
		eager = slices.Contains(params, verifyCarriedWord)
	default:
		return usagef("--verify-carried %q: want lazy or eager", *verify)
	}
	ctx, stop := signal.NotifyContext(ctx, syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	trust, err := e.trustRoot()
	if err != nil {
		return err
	}
	// A trial's missed deadline or failed health command rolls back and
	// reboots the way `fastreboot reboot` does (systemctl kexec under
	// systemd).
	persistDir := ""
	if *persist != "none" && *persist != "" {
		persistDir = filepath.Join(e.root, *persist)
	}
	a, err := agent.New(ctx, agent.Options{Root: e.root, StateDir: e.stateDir, Logger: e.log, Resume: true, Machine: e.cfg.machine, EagerVerify: eager, Trust: trust, Reboot: e.rebootFunc(), PersistDir: persistDir})
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
	// A cold boot: the panic log pstore kept is the end of the previous
	// boot (a crash loop that left for the firmware); the ending says it.
	a.NotePreviousPanic()
	if in, err := a.Info(ctx); err == nil && in.Rollback != nil && in.Rollback.State.Previous != nil {
		fmt.Fprintf(e.stderr, "fastreboot daemon: %s\n", in.Rollback.State.Previous.Ending())
	}
	st := a.State()
	how := "verified"
	if st.Rehydrated.Unverified > 0 {
		how = fmt.Sprintf("adopted, %d to verify in the background", st.Rehydrated.Unverified)
	}
	fmt.Fprintf(e.stderr, "fastreboot daemon: generation %d (%s), %d modules rehydrated (%s) in %s (%s), socket %s\n",
		st.Generation, st.Reason, st.Rehydrated.Modules, human(st.Rehydrated.Bytes), ms(st.RehydrateTime), how, e.socket)
	if st.RehydrateError != "" {
		fmt.Fprintf(e.stderr, "fastreboot daemon: rehydration incomplete: %s\n", st.RehydrateError)
	}
	if st.CarriedLost > 0 {
		fmt.Fprintf(e.stderr, "fastreboot daemon: restarted within this boot: the %d carried modules an earlier daemon rehydrated died with its cache; a stage reads them from storage\n", st.CarriedLost)
	}
	a.VerifyCarried(ctx)
	if a.PrepareKernelELF(ctx) {
		fmt.Fprintf(e.stderr, "fastreboot daemon: re-deriving the decompressed kernel for --load=segments in the background\n")
	}
	if in, err := a.Info(ctx); err == nil && in.Rollback != nil && in.Rollback.OnTrial {
		fmt.Fprintf(e.stderr, "fastreboot daemon: generation %d on trial: %s\n", st.Generation, trialLine(in.Rollback))
	}
	a.RunTrial(ctx)
	return agent.Serve(ctx, a, e.socket, so)
}

// trialLine says what the generation on trial runs and what ends its
// trial: "image v2@..., last-known-good v1@..., deadline ... (10m0s), health
// command \"...\"".
func trialLine(r *agent.RollbackInfo) string {
	tr := r.State.Trial
	s := fmt.Sprintf("image %s, last-known-good %s", tr.Label(), r.State.Good.Label())
	if !r.Deadline.IsZero() {
		s += fmt.Sprintf(", deadline %s (%s)", r.Deadline.Format(time.RFC3339), tr.Deadline)
	} else {
		s += ", no deadline"
	}
	if len(tr.Health) > 0 {
		s += fmt.Sprintf(", health command %q", strings.Join(tr.Health, " "))
	} else {
		s += ", no health command"
	}
	if r.Deadline.IsZero() && len(tr.Health) == 0 {
		s += ": on trial until `fastreboot bless`"
	}
	return s
}
