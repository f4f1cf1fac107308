package bootentry

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// bootDirs are the directories that may hold loader/entries: /boot, a boot
// partition or ESP given as the root, an ESP at /efi or /boot/efi.
var bootDirs = []string{"boot", ".", "efi", "boot/efi"}

// loaderDefault is loader.conf's default and the file that said it.
type loaderDefault struct{ pattern, file string }

// scanBLS reads the Type #1 entries of every boot directory, sorted in the
// specification's order, and loader.conf's default.
func scanBLS(root string, env grubenv, l *List) ([]Entry, loaderDefault) {
	var out []Entry
	var def loaderDefault
	seen := map[string]bool{}
	for _, d := range bootDirs {
		boot := filepath.Join(root, d)
		files, _ := filepath.Glob(filepath.Join(boot, "loader", "entries", "*.conf"))
		if len(files) == 0 {
			continue
		}
		if real, err := filepath.EvalSymlinks(boot); err == nil {
			if seen[real] {
				continue
			}
			seen[real] = true
		}
		if def.pattern == "" {
			conf := filepath.Join(boot, "loader", "loader.conf")
			if vals, err := parseBLSFile(conf); err == nil {
				if v := vals["default"]; len(v) > 0 {
					def = loaderDefault{v[len(v)-1], conf}
				}
			}
		}
		for _, f := range files {
			e := parseBLSEntry(boot, f, env)
			if seenID(out, e.ID) {
				l.Problems = append(l.Problems, fmt.Errorf("%s: entry id %q already found in another boot directory: ignored", f, e.ID))
				continue
			}
			out = append(out, e)
		}
	}
	sortBLS(out)
	return out, def
}

func seenID(es []Entry, id string) bool {
	for _, e := range es {
		if e.ID == id {
			return true
		}
	}
	return false
}

// parseBLSFile reads "key value" lines; # starts a comment line. Keys may
// repeat (initrd, options).
func parseBLSFile(path string) (map[string][]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	vals := map[string][]string{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, val := line, ""
		if i := strings.IndexAny(line, " \t"); i >= 0 {
			key, val = line[:i], line[i+1:]
		}
		vals[key] = append(vals[key], strings.TrimSpace(val))
	}
	return vals, sc.Err()
}

// parseBLSEntry turns one .conf into an entry; paths are relative to boot.
func parseBLSEntry(boot, path string, env grubenv) Entry {
	id := strings.TrimSuffix(filepath.Base(path), ".conf")
	e := Entry{ID: id, Source: SourceBLS, Config: path}
	vals, err := parseBLSFile(path)
	if err != nil {
		e.Err = entryErr(SourceBLS, id, path, ErrMissingFile, "reading it: %v", err)
		return e
	}
	last := func(k string) string {
		if v := vals[k]; len(v) > 0 {
			return v[len(v)-1]
		}
		return ""
	}
	e.Title, e.Version, e.sortKey, e.machineID = last("title"), last("version"), last("sort-key"), last("machine-id")
	if e.Title == "" {
		e.Title = id
	}
	switch {
	case len(vals["devicetree"]) > 0:
		e.Err = entryErr(SourceBLS, id, path, ErrUnsupported, "devicetree %s: the kernel needs a device tree, which is not staged", last("devicetree"))
		return e
	case last("linux") == "" && last("efi") != "":
		e.Err = entryErr(SourceBLS, id, path, ErrUnsupported, "an EFI program (efi %s), not a Linux kernel", last("efi"))
		return e
	case last("linux") == "":
		e.Err = entryErr(SourceBLS, id, path, ErrMissingFile, "no linux line: the entry names no kernel")
		return e
	}
	e.Kernel = within(boot, last("linux"))
	for _, line := range vals["initrd"] {
		for _, p := range strings.Fields(line) {
			e.Initrds = append(e.Initrds, within(boot, p))
		}
	}
	var words []string
	for _, line := range vals["options"] {
		for _, w := range strings.Fields(line) {
			if strings.HasPrefix(w, "$") {
				v, ok := env.vars[strings.TrimPrefix(w, "$")]
				if !ok && w == "$kernelopts" {
					v, ok = env.vars["default_kernelopts"]
				}
				if !ok {
					e.Err = entryErr(SourceBLS, id, path, ErrUnsupported, "options word %s names a GRUB variable that no grubenv defines", w)
					return e
				}
				if v != "" {
					words = append(words, v)
				}
				continue
			}
			words = append(words, w)
		}
	}
	e.Cmdline = strings.Join(words, " ")
	e.checkFiles()
	return e
}

// sortBLS orders entries as the Boot Loader Specification says a menu is
// ordered: entries with a sort-key first, by sort-key, then machine-id,
// then version (newest first); then the entries without one, by id in
// descending version order.
func sortBLS(es []Entry) {
	sort.SliceStable(es, func(i, j int) bool {
		a, b := es[i], es[j]
		if (a.sortKey != "") != (b.sortKey != "") {
			return a.sortKey != ""
		}
		if a.sortKey != "" {
			if a.sortKey != b.sortKey {
				return a.sortKey < b.sortKey
			}
			if a.machineID != b.machineID {
				return a.machineID < b.machineID
			}
			if c := CompareVersions(a.Version, b.Version); c != 0 {
				return c > 0
			}
		}
		return CompareVersions(a.ID, b.ID) > 0
	})
}
