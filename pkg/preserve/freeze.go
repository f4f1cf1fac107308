package preserve

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// DefaultFreezeTimeout is how long Freeze waits for a cgroup to say it is
// frozen when FreezeOptions.Timeout is 0.
const DefaultFreezeTimeout = 10 * time.Second

// FreezeOptions tune Freeze.
type FreezeOptions struct {
	// Timeout bounds the wait for each cgroup (0: DefaultFreezeTimeout).
	Timeout time.Duration
	// Poll is how often cgroup.events is read while waiting (0: 5ms).
	Poll time.Duration
}

// Frozen is the cgroups a Freeze froze.
type Frozen struct {
	// Cgroups are the cgroups written "1" to, in order.
	Cgroups []string
	root    string
}

// Freeze freezes the cgroups of areas, each once, in the cgroup v2
// hierarchy mounted at cgroupRoot (/sys/fs/cgroup on a running system):
// it writes "1" to <cgroup>/cgroup.freeze and waits until
// <cgroup>/cgroup.events says "frozen 1" (the kernel's word that no task
// of the cgroup runs any more). Areas without a cgroup are skipped. A
// cgroup frozen already is left frozen by Thaw.
//
// It is all or nothing: when a cgroup cannot be frozen (no cgroup.freeze:
// not a cgroup v2 directory, a failed write, not frozen within the
// timeout, ctx done) it thaws what it froze and returns an error wrapping
// ErrFreeze that names the cgroup.
func Freeze(ctx context.Context, cgroupRoot string, areas []Area, o FreezeOptions) (*Frozen, error) {
	if o.Timeout <= 0 {
		o.Timeout = DefaultFreezeTimeout
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Millisecond
	}
	f := &Frozen{root: cgroupRoot}
	seen := map[string]bool{}
	for _, a := range areas {
		if a.Cgroup == "" || seen[a.Cgroup] {
			continue
		}
		seen[a.Cgroup] = true
		if err := f.freeze(ctx, a, o); err != nil {
			if terr := f.Thaw(); terr != nil {
				err = fmt.Errorf("%w (and thawing: %w)", err, terr)
			}
			return nil, err
		}
	}
	return f, nil
}

func (f *Frozen) freeze(ctx context.Context, a Area, o FreezeOptions) error {
	dir := filepath.Join(f.root, filepath.FromSlash(a.Cgroup))
	ctl := filepath.Join(dir, "cgroup.freeze")
	old, err := os.ReadFile(ctl)
	if err != nil {
		return fmt.Errorf("%w: cgroup %s of area %q: %w (is it a cgroup v2 directory under %s?)", ErrFreeze, a.Cgroup, a.Name, err, f.root)
	}
	if strings.TrimSpace(string(old)) != "1" {
		if err := os.WriteFile(ctl, []byte("1"), 0); err != nil {
			return fmt.Errorf("%w: cgroup %s of area %q: writing 1 to %s: %w", ErrFreeze, a.Cgroup, a.Name, ctl, err)
		}
		f.Cgroups = append(f.Cgroups, a.Cgroup)
	}
	events := filepath.Join(dir, "cgroup.events")
	deadline := time.Now().Add(o.Timeout)
	for {
		frozen, err := readFrozen(events)
		if err != nil {
			return fmt.Errorf("%w: cgroup %s of area %q: %w", ErrFreeze, a.Cgroup, a.Name, err)
		}
		if frozen {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%w: cgroup %s of area %q: %s still says frozen 0 after %s", ErrFreeze, a.Cgroup, a.Name, events, o.Timeout)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w: cgroup %s of area %q: %w", ErrFreeze, a.Cgroup, a.Name, ctx.Err())
		case <-time.After(o.Poll):
		}
	}
}

// readFrozen reads the "frozen" key of a cgroup.events file.
func readFrozen(path string) (bool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return false, err
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		k, v, _ := strings.Cut(sc.Text(), " ")
		if k == "frozen" {
			return strings.TrimSpace(v) == "1", nil
		}
	}
	return false, fmt.Errorf("%s has no frozen key", path)
}

// Thaw writes "0" to the cgroup.freeze of every cgroup Freeze froze, in
// reverse order, and forgets them; it tries each and joins the errors.
func (f *Frozen) Thaw() error {
	if f == nil {
		return nil
	}
	var errs []error
	for i := len(f.Cgroups) - 1; i >= 0; i-- {
		ctl := filepath.Join(f.root, filepath.FromSlash(f.Cgroups[i]), "cgroup.freeze")
		if err := os.WriteFile(ctl, []byte("0"), 0); err != nil {
			errs = append(errs, fmt.Errorf("preserve: thawing %s: %w", f.Cgroups[i], err))
		}
	}
	f.Cgroups = nil
	return errors.Join(errs...)
}
