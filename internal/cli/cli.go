package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Exit codes.
const (
	ExitOK      = 0 // success
	ExitFailed  = 1 // the operation failed; the message says why
	ExitUsage   = 2 // bad command line
	ExitProblem = 3 // status --check found a problem
)

const usageText = `fastreboot: reboot Linux through kexec without the firmware, keeping the
boot image's modules in a verified in-RAM cache.

Usage: fastreboot [global flags] COMMAND [flags] [args]

Commands:
  status [--json] [--check]        kexec support, what is loaded, generation,
                                   last boot reason and timeline, cache stats
  stage MANIFEST                   read the modules that changed, build the next
  stage --current                  image from the cache and load it (kexec_file_load);
  stage --kernel K --initrd I...   --current restages what this generation runs
        [--cmdline C | --append A] from the cache alone
  stage --default | --entry ID     the image of a boot entry (BLS, grub.cfg or
        [--root DIR]               Debian's vmlinuz/initrd.img links): --default
                                   the one the boot loader boots by default
        [--dry-run] [--reason R] [--json]
        [--carry auto|kept|initrd|none]
                                   how the cache reaches the next kernel: auto
                                   (default) writes it to the kept memory region
                                   when this system keeps one (fastreboot kept),
                                   else into the initrd; none reads storage
                                   (--no-carry is --carry none)
        [--load file|segments]     file (default): kexec_file_load; segments:
                                   kexec_load of the kernel decompressed once and
                                   cached, no digest check at reboot (refused
                                   under lockdown / Secure Boot)
        [--trial-deadline D] [--health CMD] [--health-timeout D]
                                   an image other than last-known-good boots on
                                   trial: a crash boots last-known-good until
                                   bless; its daemon rolls back after D without a
                                   bless, or when CMD fails (default: no deadline,
                                   no command: on trial until bless)
        [--max-crashes K] [--crash-window D]
                                   crash-loop policy: the K-th crash of one image
                                   within D boots the fallback image, or the
                                   firmware (default 3 within 15m)
  reboot [--dry-run] [--force] [--fallback refuse|firmware] [--stop-cpus kernel|hotplug] [MANIFEST]
                                   jump into the staged image (stage MANIFEST first
                                   if given); under systemd through systemctl kexec
                                   (services stopped, file systems unmounted, then
                                   the loaded image), else (or with --force) at once:
                                   sync(2) then reboot(LINUX_REBOOT_CMD_KEXEC);
                                   --stop-cpus hotplug (direct) takes the other CPUs offline
                                   first and brings them back if the reboot fails
                                   (default kernel: the kernel stops them itself)
  bless [--json]                   make the running generation's image, on trial,
                                   last-known-good (refused when nothing is on
                                   trial); re-arm the crash path with it
  rollback [--why TEXT] [--reboot] [--json]
                                   end the trial: stage last-known-good (reason
                                   rollback); --reboot jumps into it at once
  cache ls|verify|evict [--json]   list, re-hash, or drop unreferenced cached modules
  cache sync MANIFEST [--json]     read into the cache what MANIFEST needs
  manifest create --kernel K --initrd I... [--cmdline C | --append A] [--name N] [-o FILE]
  manifest create --entry ID | --default [--root DIR] [-o FILE]
  entries [--json] [--root DIR]    the boot entries of /boot (BLS, grub.cfg,
                                   Debian's links), the default and why
  manifest diff OLD NEW [--json]   name added, removed and changed modules
  manifest validate [--content] M  check a manifest (and with --content its files)
  kept plan --size SIZE [--preserve SIZE] [--json]
                                   where a kept memory region goes: the
                                   memmap=SIZE!START word to add to the boot
                                   loader's command line (the module cache then
                                   crosses kexec in place, not in the initrd)
  kept status [--json]             the running region, its /dev/pmemN, its index
  crash arm [MANIFEST] [--mode two-stage|direct] [--auto] [--append W]...
        [--load segments|file]     build the crash image from the cache and load it
        [--allow-no-rearm]         (segments, the default: kexec_load ON_CRASH of the
                                   kernel decompressed ahead of time, file under
                                   lockdown; file: kexec_file_load ON_CRASH); route
                                   faults to panic. Images keep the running
                                   crashkernel= unless the manifest sets one; refused
                                   when the generation booted after a crash could not
                                   re-arm (no or too small crashkernel=) unless
                                   --allow-no-rearm
        [--initrd minimal|image]   the crash image's initrd: minimal (two-stage's
                                   default) just the fastreboot binary as /init
                                   and the carried modules: it recovers and kexecs
                                   into production as PID 1, with any production
                                   initramfs, in a smaller reservation; image the
                                   production initrd, whose init must run crash
                                   recover (direct mode's only choice: its crash
                                   kernel is production); --auto keeps the choice
                                   the handoff records
  crash estimate [MANIFEST] [--mode M] [--load L] [--initrd I] [--json]
                                   the crashkernel= the armed image (or MANIFEST)
                                   needs, the current reservation, whether it fits
  crash disarm|status [--json]     unload it / show it and the last crash
  crash last [--save DIR] [--json] the evidence of the last crash (log, reason, CPU)
  crash recover [--evidence-dir D] in a crash kernel: keep the evidence; two-stage:
                                   restage production and kexec into it
  daemon [--group G]               hold the cache for this generation: adopt it
        [--request-timeout D]      from the handoff (verified in the background at
        [--max-request-bytes N]    low priority, and before any use) and serve the
                                   other commands, to root and the members of
                                   --group G (SO_PEERCRED), each request bounded
                                   in time and size
  preserve create NAME --size SIZE [--cgroup PATH]
                                   a named area of the kept region's areas part
                                   (fastreboot.preserve=SIZE) that a workload maps
                                   (/dev/pmemN at its offset) and finds again after
                                   a fast reboot, which freezes PATH and syncs first
  preserve ls [--json] | rm NAME   list the areas (device, offset, size, cgroup,
                                   generation) / remove one
  preserve attach|detach NAME      a loop device (/dev/loopN) over the area, for
                                   a program that maps a whole file (QEMU's
                                   memory-backend-file) / sync and release it
  key gen -o PREFIX                make an ed25519 key pair: PREFIX.key (0600), PREFIX.pub
  key sign -k KEY MANIFEST         write MANIFEST.sig, a signature over the manifest's
                                   exact bytes (which name every module by SHA-256)
  key verify [-p PUB] MANIFEST [--json]
                                   check MANIFEST.sig against PUB (or the trust root)
  help [COMMAND]                   this text, or a command's usage and flags
                                   (also COMMAND -h)

Without a daemon, stage and cache commands work on a cache that lives only as
long as the command: everything is read from storage (cache sync, which
would keep nothing, is refused).

With --json, a command prints one JSON document whose "schema" names its
shape and version (docs/json.md). One that fails before printing its report
prints instead {"schema": "fastreboot.error.v1", "error": {"command",
"message", "kinds", "exit_code"}} on stdout (the message is also on stderr); kinds name the kind of failure (e.g.
"modcache.digest_mismatch", "crashhandler.reservation_too_small").

Exit codes:
  0  success
  1  the operation failed (the message names the input and what is wrong)
  2  bad command line
  3  status --check found a problem (a failed preflight check, modules the
     handoff carried that could not be rehydrated, a CPU online before the
     jump that did not come back, an armed crash path or a staged image whose
     next generation could not re-arm for lack of crashkernel=)
`

// globalFlags returns the flags before the command, which set e's fields,
// and -v.
func globalFlags(e *env) (*flag.FlagSet, *bool) {
	fs := flag.NewFlagSet("fastreboot", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&e.socket, "socket", agent.DefaultSocket, "the daemon's socket")
	fs.StringVar(&e.stateDir, "state-dir", fastreboot.DefaultStateDir, "where the generation's state is saved")
	fs.StringVar(&e.root, "root", "/", "the directory holding proc/, sys/ and the handoff (for tests)")
	fs.StringVar(&e.trust, "trust", "", "the trust root: a public key file or a directory of *.pub files; with one, only manifests one of its keys signed are staged, synced or armed (default "+manifestsig.DefaultTrustRoot+" under --root when it exists)")
	fs.BoolVar(&e.noDaemon, "no-daemon", false, "do not use the daemon: stage and cache commands work on a cache of this process only")
	fs.DurationVar(&e.timeout, "timeout", agent.DefaultClientTimeout, "how long to wait for the daemon's answer to one request (the daemon gives up on its own after its --request-timeout)")
	fs.Var(ratioFlag{&e.cfg.machine.InitrdLimits.MaxRatio}, "initrd-max-ratio", fmt.Sprintf("`N`: a compressed initrd piece may unpack to N times its size, or %s if more (default %d; -1: no limit); the daemon keeps the limits it was started with",
		memmap.FormatSize(bootimage.InitrdRatioFloor), bootimage.DefaultInitrdMaxRatio))
	fs.Var(sizeFlag{&e.cfg.machine.InitrdLimits.MaxUnpacked}, "initrd-max-unpacked", fmt.Sprintf("`SIZE` (e.g. 2G): what all initrd pieces of an image may unpack to together (default %s; -1: no limit)",
		memmap.FormatSize(bootimage.DefaultInitrdMaxUnpacked)))
	verbose := fs.Bool("v", false, "log what the library does to stderr")
	return fs, verbose
}

// ratioFlag is --initrd-max-ratio: a positive integer, or -1.
type ratioFlag struct{ v *int64 }

func (f ratioFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return ""
	}
	return strconv.FormatInt(*f.v, 10)
}

func (f ratioFlag) Set(s string) error {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n == 0 || n < -1 {
		return fmt.Errorf("want a positive number or -1, got %q", s)
	}
	*f.v = n
	return nil
}

// sizeFlag is --initrd-max-unpacked: a size as the kernel's memparse reads
// it (4G, 512M, 1073741824), or -1.
type sizeFlag struct{ v *int64 }

func (f sizeFlag) String() string {
	if f.v == nil || *f.v <= 0 {
		return ""
	}
	return memmap.FormatSize(uint64(*f.v))
}

func (f sizeFlag) Set(s string) error {
	if s == "-1" {
		*f.v = -1
		return nil
	}
	n, rest, ok := memmap.ParseSize(s)
	if !ok || rest != "" || n == 0 {
		return fmt.Errorf("want a size such as 4G, or -1, got %q", s)
	}
	*f.v = int64(n)
	return nil
}

// printMainUsage prints `fastreboot help`: the commands, then the global
// flags with their usage.
func printMainUsage(w io.Writer) {
	fmt.Fprint(w, usageText)
	fs, _ := globalFlags(&env{})
	printFlags(w, "Global flags", fs)
}

// env is what every command gets: parsed global flags and the writers.
type env struct {
	stdout, stderr io.Writer
	socket         string
	stateDir       string
	root           string
	noDaemon       bool
	timeout        time.Duration
	trust          string
	log            *slog.Logger
	cfg            config
}

// config is what Main fixes and tests replace.
type config struct {
	// machine is the template of every fastreboot.Machine the command
	// makes, in process or as the daemon: tests set its Loader, Rebooter
	// and Probe to fakes. (Root, Logger, DryRun, Fallback, Carry and
	// Generation are set from the command line and the agent.) The zero
	// value is the real system.
	machine fastreboot.Options
	// systemctl, when set, replaces running systemctl (reboot through
	// systemd); tests record the call.
	systemctl func(ctx context.Context, args ...string) error
	// now is the clock of the stat index's runs (nil: time.Now); tests
	// move it ahead so that files they just wrote are not racy.
	now func() time.Time
}

// now returns the command's clock.
func (e *env) now() time.Time {
	if e.cfg.now != nil {
		return e.cfg.now()
	}
	return time.Now()
}

// usageError is a bad command line: exit code 2.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, args ...any) error { return usageError{fmt.Sprintf(format, args...)} }

// problemError is a finding of status --check: exit code 3.
type problemError struct{ err error }

func (e problemError) Error() string { return e.err.Error() }
func (e problemError) Unwrap() error { return e.err }

type command func(ctx context.Context, e *env, args []string) error

var commands = map[string]command{
	"status":   cmdStatus,
	"stage":    cmdStage,
	"reboot":   cmdReboot,
	"cache":    cmdCache,
	"manifest": cmdManifest,
	"daemon":   cmdDaemon,
	"crash":    cmdCrash,
	"key":      cmdKey,
	"entries":  cmdEntries,
	"bless":    cmdBless,
	"rollback": cmdRollback,
	"kept":     cmdKept,
	"preserve": cmdPreserve,
}

// Main runs the command line args and returns the exit code.
//
// Run as PID 1 without arguments (the /init of a minimal crash
// initramfs), it is the crash stage instead: see CrashInit.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 && isInit() {
		return CrashInit(ctx, stdout)
	}
	return run(ctx, args, stdout, stderr, config{})
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer, cfg config) int {
	e := &env{stdout: stdout, stderr: stderr, cfg: cfg}
	fs, verbose := globalFlags(e)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printMainUsage(stdout)
			return ExitOK
		}
		fmt.Fprintf(stderr, "fastreboot: %v\n\n", err)
		printMainUsage(stderr)
		return ExitUsage
	}
	level := slog.LevelWarn
	if *verbose {
		level = slog.LevelDebug
	}
	e.log = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))

	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintf(stderr, "fastreboot: no command given\n\n")
		printMainUsage(stderr)
		return ExitUsage
	}
	if rest[0] == "help" || rest[0] == "-h" || rest[0] == "--help" {
		var words []string
		if rest[0] == "help" {
			words = rest[1:]
		}
		if err := printHelp(ctx, e, stdout, words); err != nil {
			fmt.Fprintf(stderr, "fastreboot help: %v\n", err)
			return ExitUsage
		}
		return ExitOK
	}
	cmd, ok := commands[rest[0]]
	if !ok {
		fmt.Fprintf(stderr, "fastreboot: unknown command %q (commands: %s)\n", rest[0], strings.Join(commandNames(), ", "))
		return ExitUsage
	}
	if _, group := commandGroups[rest[0]]; group && len(rest) > 1 && isHelpWord(rest[1]) {
		printHelp(ctx, e, stdout, rest[:1])
		return ExitOK
	}
	out := &countingWriter{w: stdout}
	e.stdout = out
	err := cmd(ctx, e, rest[1:])
	var ue usageError
	var pe problemError
	code := ExitFailed
	switch {
	case err == nil:
		return ExitOK
	case errors.Is(err, flag.ErrHelp):
		var he helpError
		if errors.As(err, &he) {
			printUsage(stdout, he.fs)
		} else {
			printMainUsage(stdout)
		}
		return ExitOK
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fastreboot %s: %v (see fastreboot help)\n", rest[0], err)
		code = ExitUsage
	case errors.As(err, &pe):
		fmt.Fprintf(stderr, "fastreboot %s: %v\n", rest[0], err)
		code = ExitProblem
	default:
		fmt.Fprintf(stderr, "fastreboot %s: %v\n", rest[0], err)
	}
	// A program that asked for --json reads one JSON document on stdout
	// whatever happened: when the command failed before printing its
	// report, that document is the error.
	if wantsJSON(rest[1:]) && out.n == 0 {
		printJSON(stdout, errorDoc(rest[0], err.Error(), agent.Kinds(err), code))
	}
	return code
}

// isHelpWord reports whether a command's first argument asks for its help.
func isHelpWord(a string) bool {
	return a == "-h" || a == "--help" || a == "-help" || a == "help"
}

// wantsJSON reports whether a subcommand's arguments ask for --json (before
// any "--").
func wantsJSON(args []string) bool {
	for _, a := range args {
		switch a {
		case "--":
			return false
		case "--json", "-json", "--json=true", "-json=true":
			return true
		}
	}
	return false
}

// countingWriter counts what a command wrote to stdout.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// Unwrap returns the writer c counts for.
func (c *countingWriter) Unwrap() io.Writer { return c.w }

// fileOf returns the *os.File w writes to, looking through writers that
// wrap another (Unwrap() io.Writer), or nil.
func fileOf(w io.Writer) *os.File {
	for {
		switch v := w.(type) {
		case *os.File:
			return v
		case interface{ Unwrap() io.Writer }:
			w = v.Unwrap()
		default:
			return nil
		}
	}
}

func commandNames() []string {
	var names []string
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// newFlags returns a flag set for a subcommand whose errors become usage
// errors.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parse parses args allowing flags after positional arguments too
// ("stage m.json --json"); everything after "--" is positional.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, helpError{fs}
			}
			return nil, usagef("%v", err)
		}
		rest := fs.Args()
		// fs.Parse consumes a "--" and stops after it.
		if n := len(args) - len(rest); n > 0 && args[n-1] == "--" {
			return append(pos, rest...), nil
		}
		if len(rest) == 0 {
			return pos, nil
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

// service returns the daemon's client, or an in-process agent when no daemon
// runs (or --no-daemon). The second result closes what was opened.
func (e *env) service(ctx context.Context) (agent.Service, func(), error) {
	if !e.noDaemon {
		c, err := e.dial()
		if err == nil {
			return c, func() {}, nil
		}
		if !errors.Is(err, agent.ErrNoDaemon) {
			return nil, nil, err
		}
		e.log.Info("no daemon, using an in-process cache", "socket", e.socket)
	}
	trust, err := e.trustRoot()
	if err != nil {
		return nil, nil, err
	}
	a, err := agent.New(ctx, agent.Options{Root: e.root, StateDir: e.stateDir, Logger: e.log, Machine: e.cfg.machine, Trust: trust, Reboot: e.rebootFunc()})
	if err != nil {
		return nil, nil, err
	}
	return a, func() { a.Close() }, nil
}

// dial connects to the daemon with the --timeout of every request.
func (e *env) dial() (*agent.Client, error) {
	return agent.DialWith(e.socket, agent.ClientOptions{Timeout: e.timeout})
}

func printJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// stringList is a repeatable flag.
type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// human formats a byte count.
func human(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
