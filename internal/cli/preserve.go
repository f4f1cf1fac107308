package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/preserve"
)

// cgroupMount is where the cgroup v2 hierarchy is mounted, under --root.
const cgroupMount = "sys/fs/cgroup"

// cmdPreserve is `fastreboot preserve create|ls|rm`: the areas workloads
// keep across a fast reboot (pkg/preserve). It runs in this process, not
// through the daemon: the table is on the kept region's device, which
// outlives every process, so the daemon holds nothing the command needs.
func cmdPreserve(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("preserve needs a subcommand: create NAME --size SIZE [--cgroup PATH], ls, rm NAME, attach NAME, detach NAME")
	}
	sub := args[0]
	fs := newFlags("preserve " + sub)
	var size, cgroup *string
	var asJSON *bool
	want := 1
	switch sub {
	case "create":
		size = fs.String("size", "", "`SIZE` of the area (e.g. 256M): a multiple of 4 KiB")
		cgroup = fs.String("cgroup", "", "`PATH`: the workload's cgroup v2 directory (/sys/fs/cgroup/work or /work), frozen before a fast reboot")
	case "ls":
		asJSON = fs.Bool("json", false, "print the areas as one JSON document (docs/json.md)")
		want = 0
	case "rm", "attach", "detach":
	default:
		return usagef("unknown preserve subcommand %q (create, ls, rm, attach, detach)", sub)
	}
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	if len(pos) != want {
		return usagef("preserve %s takes %d argument(s), got %q", sub, want, pos)
	}
	var n int64
	var cg string
	if sub == "create" {
		v, rest, ok := memmap.ParseSize(*size)
		if *size == "" || !ok || rest != "" || v == 0 {
			return usagef("preserve create: --size %q: want a size such as 256M", *size)
		}
		n = int64(v)
		if cg, err = cgroupPath(e.root, *cgroup); err != nil {
			return usagef("preserve create: --cgroup: %v", err)
		}
	}
	if sub != "ls" {
		unlock, err := lockPreserve(e)
		if err != nil {
			return err
		}
		defer unlock()
	}
	loc, t, done, err := openPreserved(e)
	if err != nil {
		return err
	}
	defer done()
	w := e.stdout
	switch sub {
	case "create":
		a, err := t.Create(pos[0], n, cg, currentGeneration(e))
		if err != nil {
			return err
		}
		fmt.Fprintf(w, "created %s: %s at offset %d (%#x) of %s", a.Name, memmap.FormatSize(uint64(a.Size)), a.Offset, a.Offset, loc.Device)
		if a.Cgroup != "" {
			fmt.Fprintf(w, ", cgroup %s frozen before a fast reboot", a.Cgroup)
		}
		fmt.Fprintln(w)
	case "rm":
		a, err := t.Area(pos[0])
		if err != nil {
			return err
		}
		// A loop device would go on mapping a range that a later area
		// can take.
		loops, err := preserve.Loops(e.root, loc.Device)
		if err != nil {
			return err
		}
		for _, l := range loops {
			if l.Maps(a) {
				return fmt.Errorf("preserve rm %s: %s maps it (fastreboot preserve detach %s first)", a.Name, l.Device, a.Name)
			}
		}
		if err := t.Remove(pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(w, "removed %s\n", pos[0])
	case "attach":
		a, err := t.Area(pos[0])
		if err != nil {
			return err
		}
		loop, err := preserve.Attach(e.root, loc.Device, a)
		if err != nil {
			return err
		}
		// The device alone, for a script: LOOP=$(fastreboot preserve attach vm).
		fmt.Fprintln(w, loop)
	case "detach":
		a, err := t.Area(pos[0])
		if err != nil {
			return err
		}
		loops, err := preserve.Detach(e.root, loc.Device, a)
		if err != nil {
			return err
		}
		if len(loops) == 0 {
			fmt.Fprintf(w, "%s: no loop device maps it\n", a.Name)
			return nil
		}
		fmt.Fprintf(w, "detached %s: %s synced and released\n", a.Name, strings.Join(loops, " "))
	case "ls":
		l := preserveListing{Location: loc, Areas: t.List()}
		l.Free, l.LargestFree = t.Free()
		if *asJSON {
			return printJSON(w, preserveLsDoc(&l))
		}
		lay := loc.Layout
		fmt.Fprintf(w, "%s: areas part %s at offset %d (%#x), %s free\n", loc.Device,
			memmap.FormatSize(uint64(lay.AreasSize)), lay.CacheSize, lay.CacheSize, memmap.FormatSize(uint64(l.Free)))
		if len(l.Areas) == 0 {
			return nil
		}
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tOFFSET\tSIZE\tCGROUP\tGENERATION\tCREATED")
		for _, a := range l.Areas {
			fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%d\t%s\n", a.Name, a.Offset, memmap.FormatSize(uint64(a.Size)),
				orDash(a.Cgroup), a.Generation, a.Created.Format(time.RFC3339))
		}
		return tw.Flush()
	}
	return nil
}

// preserveListing is what `preserve ls` reports.
type preserveListing struct {
	Location    preserve.Location
	Areas       []preserve.Area
	Free        int64
	LargestFree int64
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// cgroupPath turns --cgroup into the path under the cgroup v2 root that the
// table keeps: /sys/fs/cgroup/work (under --root) and /work are both
// "/work".
func cgroupPath(root, p string) (string, error) {
	if p == "" {
		return "", nil
	}
	mount := filepath.Join("/", cgroupMount)
	for _, m := range []string{filepath.Join(root, cgroupMount), mount} {
		if rest, ok := strings.CutPrefix(filepath.Clean(p), m); ok && (rest == "" || rest[0] == '/') {
			p = rest
			break
		}
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%q: want a path under %s such as %s/work", p, mount, mount)
	}
	return p, nil
}

// lockPreserve serializes the commands that change the area table (two
// at once would each write a table without the other's change): an
// exclusive flock(2) on preserve.lock in the state directory.
func lockPreserve(e *env) (func(), error) {
	if err := os.MkdirAll(e.stateDir, 0o755); err != nil {
		return nil, err
	}
	p := filepath.Join(e.stateDir, "preserve.lock")
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := lockExclusive(f); err != nil {
		f.Close()
		return nil, fmt.Errorf("flock %s: %w", p, err)
	}
	return func() { f.Close() }, nil
}

// currentGeneration is the running generation (the state the daemon
// saved), 1 when none was saved.
func currentGeneration(e *env) int {
	if st, err := fastreboot.LoadState(e.stateDir); err == nil {
		return st.Generation
	}
	return 1
}

// openPreserved finds the running system's areas part and opens its
// table; done closes the device.
func openPreserved(e *env) (preserve.Location, *preserve.Table, func(), error) {
	loc, err := preserve.Find(e.root)
	if err != nil {
		return loc, nil, nil, err
	}
	dev, err := keptmem.OpenFileDevice(loc.Device)
	if err != nil {
		return loc, nil, nil, err
	}
	t, err := preserve.OpenLayout(dev, loc.Layout)
	if err != nil {
		dev.Close()
		return loc, nil, nil, err
	}
	return loc, t, func() { dev.Close() }, nil
}

// freezePreserved is the last step of a fast reboot before the jump when
// the running command line keeps preserved areas: it freezes their
// workloads' cgroups, so that nothing writes to the areas any more, and
// fsyncs the region's device, so that what they wrote through their
// mappings is in the region and not only in the page cache. The returned
// thaw undoes the freeze, for a reboot that comes back.
//
// Nothing to do (no areas part, no areas) returns at once. A failure (the
// device or the table cannot be read, a cgroup does not freeze, the sync
// fails) thaws what was frozen and refuses the reboot; with force it is a
// warning on stderr and the reboot goes on.
func freezePreserved(ctx context.Context, e *env, force bool) (thaw func(), err error) {
	thaw = func() {}
	refuse := func(err error) (func(), error) {
		if force {
			fmt.Fprintf(e.stderr, "fastreboot: warning: rebooting anyway (--force): the preserved areas may not be kept intact: %v\n", err)
			return thaw, nil
		}
		return thaw, fmt.Errorf("reboot refused, nothing done: the preserved areas would not be kept intact (--force reboots anyway): %w", err)
	}
	loc, t, done, err := openPreserved(e)
	if errors.Is(err, preserve.ErrNoAreas) {
		return thaw, nil
	}
	if err != nil {
		return refuse(err)
	}
	defer done()
	areas := t.List()
	if len(areas) == 0 {
		return thaw, nil
	}
	start := time.Now()
	frozen, err := preserve.Freeze(ctx, filepath.Join(e.root, cgroupMount), areas, preserve.FreezeOptions{})
	if err != nil {
		return refuse(err)
	}
	froze := time.Since(start)
	// Loop devices over the region (preserve attach) first: their page
	// cache is their own, and their fsync writes it to the region's.
	loops, err := preserve.SyncLoops(e.root, loc.Device)
	if err == nil {
		err = t.Sync()
	}
	if err != nil {
		if terr := frozen.Thaw(); terr != nil {
			err = fmt.Errorf("%w (and thawing: %w)", err, terr)
		}
		return refuse(err)
	}
	us := func(d time.Duration) string { return d.Round(time.Microsecond).String() }
	viaLoops := ""
	if len(loops) > 0 {
		viaLoops = " (with " + strings.Join(loops, " ") + ")"
	}
	fmt.Fprintf(e.stderr, "fastreboot: %d preserved area(s) on %s: froze %s in %s, synced%s in %s\n", len(areas), loc.Device,
		orDash(strings.Join(frozen.Cgroups, " ")), us(froze), viaLoops, us(time.Since(start)-froze))
	return func() {
		if err := frozen.Thaw(); err != nil {
			fmt.Fprintf(e.stderr, "fastreboot: %v\n", err)
		}
	}, nil
}
