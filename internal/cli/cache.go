package cli

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/internal/agent"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

func cmdCache(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return usagef("cache needs a subcommand: ls, verify, sync MANIFEST, evict")
	}
	sub := args[0]
	fs := newFlags("cache " + sub)
	asJSON := fs.Bool("json", false, "print the report as one JSON document (docs/json.md)")
	pos, err := parse(fs, args[1:])
	if err != nil {
		return err
	}
	want := 0
	if sub == "sync" {
		want = 1
	}
	switch sub {
	case "ls", "verify", "sync", "evict":
	default:
		return usagef("unknown cache subcommand %q (ls, verify, sync, evict)", sub)
	}
	if len(pos) != want {
		return usagef("cache %s takes %d argument(s), got %q", sub, want, pos)
	}
	svc, done, err := e.service(ctx)
	if err != nil {
		return err
	}
	defer done()
	if _, daemon := svc.(*agent.Client); sub == "sync" && !daemon {
		return syncWithoutDaemon(e, pos[0])
	}
	w := e.stdout
	switch sub {
	case "ls":
		l, err := svc.Cache(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, cacheLsDoc(l))
		}
		for _, m := range l.Modules {
			fmt.Fprintf(w, "%s  %10s  %-8s %s\n", m.Digest, human(m.Size), m.Origin, strings.Join(m.Names, ","))
		}
		s := l.Stats
		fmt.Fprintf(w, "%d modules, %s held (+%s overhead)\n", s.Modules, human(s.BytesHeld), human(s.OverheadBytes))
	case "verify":
		r, err := svc.Verify(ctx)
		if *asJSON && r != nil {
			if perr := printJSON(w, cacheVerifyDoc(r)); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(w, "verified %d modules (%s): all digests match\n", r.Modules, human(r.Bytes))
		}
	case "sync":
		p, err := filepath.Abs(pos[0])
		if err != nil {
			return err
		}
		r, err := svc.Sync(ctx, agentSync(p))
		if *asJSON && r != nil {
			if perr := printJSON(w, cacheSyncDoc(r)); perr != nil {
				return perr
			}
		}
		if err != nil {
			return err
		}
		if !*asJSON {
			fmt.Fprintf(w, "synced %s: read %s from storage (%d modules: %s), %d already cached\n",
				pos[0], human(r.BytesRead), r.Misses, strings.Join(r.Read, ", "), r.Hits)
			for _, warn := range r.Warnings {
				fmt.Fprintf(w, "warning: %s\n", warn)
			}
		}
	case "evict":
		r, err := svc.Evict(ctx)
		if err != nil {
			return err
		}
		if *asJSON {
			return printJSON(w, cacheEvictDoc(r))
		}
		fmt.Fprintf(w, "evicted %d modules (%s)\n", r.Modules, human(r.Bytes))
	}
	return nil
}

// syncWithoutDaemon is `cache sync` when no daemon serves: the cache is
// the daemon's memory, and one of this process alone would die with it, so
// nothing would be kept. It checks the manifest (an error names it) and
// refuses, wrapping agent.ErrNoDaemon.
func syncWithoutDaemon(e *env, manifest string) error {
	if _, err := bootimage.Load(manifest); err != nil {
		return err
	}
	where := "--no-daemon given"
	if !e.noDaemon {
		where = "none listens on " + e.socket
	}
	return fmt.Errorf("%s: nothing synced: the cache lives in `fastreboot daemon`'s memory and %w (%s); start the daemon, or check the files with `fastreboot manifest validate --content %s`",
		manifest, agent.ErrNoDaemon, where, manifest)
}
