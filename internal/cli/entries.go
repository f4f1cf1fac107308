package cli

import (
	"context"
	"flag"
	"fmt"
	"log"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootentry"
)

// scanEntries lists the boot entries under root ("" is the global
// --root). u-root's grub parser logs every file it reads through the
// standard library's log package: that goes to the debug log (-v).
func scanEntries(ctx context.Context, e *env, root string) (*bootentry.List, error) {
	if root == "" {
		root = e.root
	}
	prev, flags := log.Writer(), log.Flags()
	log.SetOutput(slogWriter{e})
	log.SetFlags(0)
	defer func() { log.SetOutput(prev); log.SetFlags(flags) }()
	return bootentry.Scan(ctx, bootentry.Options{Root: root})
}

// slogWriter sends the standard logger's lines to the debug log.
type slogWriter struct{ e *env }

func (w slogWriter) Write(p []byte) (int, error) {
	w.e.log.Debug("grub parser: " + strings.TrimSpace(string(p)))
	return len(p), nil
}

func cmdEntries(ctx context.Context, e *env, args []string) error {
	fs := newFlags("entries")
	root := fs.String("root", "", "the root filesystem whose boot entries are read: its boot/ (or a boot partition or ESP) (default: the global --root, /)")
	asJSON := fs.Bool("json", false, "print the entries as one JSON document (docs/json.md)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("entries takes flags only, got %q", pos)
	}
	l, err := scanEntries(ctx, e, *root)
	if err != nil {
		return err
	}
	if *asJSON {
		return printJSON(e.stdout, entriesDoc(l))
	}
	w := e.stdout
	for i, en := range l.Entries {
		mark := " "
		if i == l.Default {
			mark = "*"
		}
		fmt.Fprintf(w, "%s %s (%s): %s\n", mark, en.ID, en.Source, en.Title)
		if en.Kernel != "" {
			fmt.Fprintf(w, "    kernel %s\n", en.Kernel)
		}
		for _, in := range en.Initrds {
			fmt.Fprintf(w, "    initrd %s\n", in)
		}
		switch {
		case en.CmdlineFromRunning:
			fmt.Fprintf(w, "    cmdline: the running one\n")
		case en.Kernel != "":
			fmt.Fprintf(w, "    cmdline %s\n", en.Cmdline)
		}
		if en.Err != nil {
			fmt.Fprintf(w, "    cannot be staged: %v\n", en.Err)
		}
	}
	if l.Default >= 0 {
		fmt.Fprintf(w, "default (--default): %s, by %s\n", l.Entries[l.Default].ID, l.DefaultReason)
	} else {
		fmt.Fprintln(w, "default (--default): none")
	}
	for _, p := range l.Problems {
		fmt.Fprintf(w, "problem: %v\n", p)
	}
	return nil
}

// entryFlags pick a boot entry as the image's source.
type entryFlags struct {
	id    string
	dflt  bool
	root  string
	entry *bootentry.Entry // the entry resolved, for the report
}

func addEntryFlags(fs *flag.FlagSet, f *entryFlags) {
	fs.StringVar(&f.id, "entry", "", "the boot entry `ID` to build the image from (fastreboot entries lists them)")
	fs.BoolVar(&f.dflt, "default", false, "build the image from the boot entry the boot loader boots by default (fastreboot entries says which and why)")
	fs.StringVar(&f.root, "root", "", "with --entry or --default: the root filesystem whose boot entries are read (default: the global --root, /)")
}

func (f *entryFlags) given() bool { return f.id != "" || f.dflt }

// resolve returns the entry --entry or --default names: an error naming
// the entry and its file when it cannot be booted.
func (f *entryFlags) resolve(ctx context.Context, e *env) (bootentry.Entry, error) {
	if f.id != "" && f.dflt {
		return bootentry.Entry{}, usagef("give --entry or --default, not both")
	}
	l, err := scanEntries(ctx, e, f.root)
	if err != nil {
		return bootentry.Entry{}, err
	}
	if f.dflt {
		en, err := l.DefaultEntry()
		if err == nil {
			fmt.Fprintf(e.stderr, "default boot entry: %s (%s), by %s\n", en.ID, en.Source, l.DefaultReason)
		}
		return en, err
	}
	return l.Lookup(f.id)
}
