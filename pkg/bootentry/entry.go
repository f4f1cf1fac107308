package bootentry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Source names where an entry was found.
type Source string

// The sources of entries.
const (
	SourceBLS         Source = "bls"
	SourceGrub        Source = "grub"
	SourceDebianLinks Source = "debian-links"
)

var (
	// ErrNoEntries means the tree has no boot entry of any source.
	ErrNoEntries = errors.New("bootentry: no boot entries")
	// ErrUnknownEntry means no entry has the id asked for.
	ErrUnknownEntry = errors.New("bootentry: no such entry")
	// ErrMissingFile means an entry's kernel or initrd does not exist.
	ErrMissingFile = errors.New("bootentry: missing file")
	// ErrNoInitrd means an entry names no initrd; fastreboot stages an
	// initrd in every image (its handoff rides on it).
	ErrNoInitrd = errors.New("bootentry: entry has no initrd")
	// ErrUnsupported means the entry uses a construct this package cannot
	// follow to a kernel and initrd (a GRUB variable or device in a path,
	// a configfile include, a devicetree, an EFI or multiboot entry).
	ErrUnsupported = errors.New("bootentry: construct not supported")
)

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"bootentry.no_entries":    ErrNoEntries,
		"bootentry.unknown_entry": ErrUnknownEntry,
		"bootentry.missing_file":  ErrMissingFile,
		"bootentry.no_initrd":     ErrNoInitrd,
		"bootentry.unsupported":   ErrUnsupported,
	}
}

// Entry is one bootable (or broken) boot entry.
type Entry struct {
	// ID identifies the entry for [List.Lookup]: a BLS entry's file name
	// without ".conf"; a GRUB entry's --id, else "grub-" and its number
	// in GRUB's menu ("grub-1.2" is GRUB's "1>2"); "debian" or
	// "debian-old".
	ID string
	// Title is what the boot menu shows.
	Title string
	// Version is the kernel version when the source says it (BLS
	// `version`, the suffix of Debian's vmlinuz target).
	Version string
	Source  Source
	// Kernel and Initrds are absolute paths of the files (under the
	// scanned root), initrds in the order they are unpacked.
	Kernel  string
	Initrds []string
	// Cmdline is the entry's kernel command line.
	Cmdline string
	// CmdlineFromRunning says the entry carries no command line (Debian's
	// links): the caller uses the running one.
	CmdlineFromRunning bool
	// Config is the file that defines the entry (a BLS .conf, grub.cfg
	// with its line, or the vmlinuz link).
	Config string
	// Err says why the entry cannot be booted; nil when it can.
	Err error

	// sort keys of BLS entries
	sortKey, machineID string
}

// List is the result of a scan.
type List struct {
	Entries []Entry
	// Default is the index in Entries of the entry a firmware boot would
	// pick, -1 when there is none; DefaultReason says which rule picked it
	// (see the package documentation).
	Default       int
	DefaultReason string
	// Problems are findings that are not an entry's: a file that could not
	// be read or parsed, a default that names no entry.
	Problems []error
}

// Options say what to scan.
type Options struct {
	// Root is the root filesystem holding boot/ (or a boot partition or
	// ESP mounted there); "" is "/".
	Root string
}

// Scan lists the boot entries under opts.Root and picks the default. An
// error is returned only when there is no entry at all (ErrNoEntries,
// with the problems found); broken entries are listed with Entry.Err.
func Scan(ctx context.Context, opts Options) (*List, error) {
	root := opts.Root
	if root == "" {
		root = "/"
	}
	root, err := filepath.Abs(root)
	if err != nil {
		return nil, err
	}
	l := &List{Default: -1}
	env := readGrubenv(root, l)
	bls, loaderDefault := scanBLS(root, env, l)
	grub := scanGrub(ctx, root, l)
	deb := scanDebian(root)
	l.Entries = append(append(append(l.Entries, bls...), grub.entries...), deb...)
	if len(l.Entries) == 0 {
		return l, fmt.Errorf("%w under %s (looked for loader/entries/*.conf, grub/grub.cfg, vmlinuz and initrd.img)%s", ErrNoEntries, root, problemsSuffix(l.Problems))
	}
	l.pickDefault(len(bls), grub, loaderDefault, env)
	return l, nil
}

func problemsSuffix(ps []error) string {
	if len(ps) == 0 {
		return ""
	}
	var s []string
	for _, p := range ps {
		s = append(s, p.Error())
	}
	return ": " + strings.Join(s, "; ")
}

// pickDefault applies the package's rule; nbls is the number of BLS
// entries, which come first in l.Entries, then the GRUB ones.
func (l *List) pickDefault(nbls int, g grubScan, loaderDefault loaderDefault, env grubenv) {
	set := func(i int, why string) bool {
		if i < 0 {
			return false
		}
		l.Default, l.DefaultReason = i, why
		return true
	}
	// 1. loader.conf default.
	if loaderDefault.pattern != "" {
		if set(l.matchBLS(nbls, loaderDefault.pattern), fmt.Sprintf("loader.conf default %q (%s)", loaderDefault.pattern, loaderDefault.file)) {
			return
		}
		l.Problems = append(l.Problems, fmt.Errorf("%s: default %q matches no entry", loaderDefault.file, loaderDefault.pattern))
	}
	// 2. grubenv next_entry, saved_entry.
	for _, v := range []struct {
		name string
		used bool
	}{{"next_entry", g.usesNextEntry}, {"saved_entry", g.usesSavedEntry}} {
		val := env.vars[v.name]
		if !v.used || val == "" {
			continue
		}
		if set(l.matchGrub(nbls, g, val), fmt.Sprintf("grubenv %s %q (%s)", v.name, val, env.file)) {
			return
		}
		l.Problems = append(l.Problems, fmt.Errorf("%s: %s %q matches no entry", env.file, v.name, val))
	}
	// 3. grub.cfg default.
	if len(g.entries) > 0 {
		if g.defaultValue != "" {
			if set(l.matchGrub(nbls, g, g.defaultValue), fmt.Sprintf("grub.cfg default %q (%s)", g.defaultValue, g.defaultLine)) {
				return
			}
			l.Problems = append(l.Problems, fmt.Errorf("%s: default %q matches no entry", g.defaultLine, g.defaultValue))
		} else if set(nbls, fmt.Sprintf("grub.cfg sets no default: GRUB boots its first entry (%s)", g.file)) {
			return
		}
	}
	// 4. newest BLS entry.
	if nbls > 0 {
		set(0, "newest BLS entry (sort-key, machine-id, version)")
		return
	}
	// 5. Debian's links.
	for i, e := range l.Entries {
		if e.ID == "debian" {
			link := strings.TrimSuffix(e.Config, " link")
			set(i, fmt.Sprintf("Debian's links %s and %s", link, filepath.Join(filepath.Dir(link), "initrd.img")))
			return
		}
	}
}

// matchBLS returns the first BLS entry whose id matches the glob.
func (l *List) matchBLS(nbls int, pattern string) int {
	for i := 0; i < nbls; i++ {
		if ok, _ := filepath.Match(pattern, l.Entries[i].ID); ok {
			return i
		}
	}
	return -1
}

// matchGrub finds what a GRUB default names: a GRUB entry's number path,
// id path or title path, or a BLS entry's id (blscfg).
func (l *List) matchGrub(nbls int, g grubScan, v string) int {
	for i, ge := range g.meta {
		if v == ge.numPath || v == ge.idPath || v == ge.titlePath || (!strings.Contains(v, ">") && (v == ge.id || v == ge.title) && !strings.Contains(ge.numPath, ">")) {
			return nbls + i
		}
	}
	for i := 0; i < nbls; i++ {
		if l.Entries[i].ID == v {
			return i
		}
	}
	return -1
}

// DefaultEntry returns the entry --default stages: an error when there is
// none, or the entry's own error when it cannot be booted.
func (l *List) DefaultEntry() (Entry, error) {
	if l.Default < 0 {
		return Entry{}, fmt.Errorf("%w: none of the entries is a default%s", ErrNoEntries, problemsSuffix(l.Problems))
	}
	e := l.Entries[l.Default]
	if e.Err != nil {
		return e, fmt.Errorf("default entry (%s): %w", l.DefaultReason, e.Err)
	}
	return e, nil
}

// Lookup returns the entry with this id: ErrUnknownEntry naming the ids
// there are, or the entry's own error when it cannot be booted.
func (l *List) Lookup(id string) (Entry, error) {
	var ids []string
	for _, e := range l.Entries {
		if e.ID == id {
			return e, e.Err
		}
		ids = append(ids, e.ID)
	}
	return Entry{}, fmt.Errorf("%w %q (entries: %s)", ErrUnknownEntry, id, strings.Join(ids, ", "))
}

// entryErr builds an entry's error: the entry, the file, what is wrong.
func entryErr(source Source, id, config string, kind error, format string, args ...any) error {
	return fmt.Errorf("%s entry %q (%s): %s: %w", source, id, config, fmt.Sprintf(format, args...), kind)
}

// checkFiles sets e.Err when a file is missing or there is no initrd.
func (e *Entry) checkFiles() {
	if e.Err != nil {
		return
	}
	for i, p := range append([]string{e.Kernel}, e.Initrds...) {
		what := "kernel"
		if i > 0 {
			what = "initrd"
		}
		fi, err := os.Stat(p)
		if err != nil {
			var pe *fs.PathError
			if errors.As(err, &pe) {
				err = pe.Err
			}
			e.Err = entryErr(e.Source, e.ID, e.Config, ErrMissingFile, "%s %s: %v", what, p, err)
			return
		}
		if !fi.Mode().IsRegular() {
			e.Err = entryErr(e.Source, e.ID, e.Config, ErrMissingFile, "%s %s is not a regular file", what, p)
			return
		}
	}
	if len(e.Initrds) == 0 {
		e.Err = entryErr(e.Source, e.ID, e.Config, ErrNoInitrd, "kernel %s has no initrd", e.Kernel)
	}
}

// within joins p to dir, keeping the result inside dir ("../" cannot climb
// out of the scanned tree).
func within(dir, p string) string {
	return filepath.Join(dir, filepath.Clean("/"+p))
}
