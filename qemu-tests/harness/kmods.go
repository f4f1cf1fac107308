package harness

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/fastreboot/fastreboot/qemu-tests/internal/loadlist"
)

// ModulesLoadPath is where the kmods piece puts the module load list the
// guest helper frguest reads (format: package loadlist).
const ModulesLoadPath = loadlist.Path

// ErrUnknownModule means a requested module is neither in modules.dep, nor
// built in, nor an alias of one.
var ErrUnknownModule = errors.New("unknown kernel module")

// ModuleDB is what depmod wrote about a kernel's modules.
type ModuleDB struct {
	// Deps maps a module path (relative to lib/modules/<ver>) to its
	// dependencies' paths, as listed in modules.dep.
	Deps map[string][]string
	// ByName maps a module name ("virtio_pci", dashes as underscores) to its path.
	ByName map[string]string
	// Builtin holds the names of modules built into the kernel.
	Builtin map[string]bool
	// Aliases maps an alias (exact string, no wildcards) to module names.
	Aliases map[string][]string
	// SoftPre and SoftPost map a module name to softdep names (modules or aliases).
	SoftPre, SoftPost map[string][]string
}

// ModName returns the module name of a .ko path: base name without the
// .ko(.xz|.zst|.gz) suffix, dashes replaced by underscores.
func ModName(p string) string {
	b := path.Base(filepath.ToSlash(p))
	if i := strings.Index(b, ".ko"); i >= 0 {
		b = b[:i]
	}
	return strings.ReplaceAll(b, "-", "_")
}

// ParseModulesDep parses modules.dep ("path: dep dep ...").
func (db *ModuleDB) ParseModulesDep(r io.Reader) error {
	db.init()
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for n := 1; s.Scan(); n++ {
		line := strings.TrimSpace(s.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		mod, deps, ok := strings.Cut(line, ":")
		mod = strings.TrimSpace(mod)
		if !ok || mod == "" {
			return fmt.Errorf("modules.dep line %d: no \"module:\" in %q", n, line)
		}
		db.Deps[mod] = strings.Fields(deps)
		db.ByName[ModName(mod)] = mod
	}
	return s.Err()
}

// ParseBuiltin parses modules.builtin (one path per line).
func (db *ModuleDB) ParseBuiltin(r io.Reader) error {
	db.init()
	s := bufio.NewScanner(r)
	for s.Scan() {
		if line := strings.TrimSpace(s.Text()); line != "" && !strings.HasPrefix(line, "#") {
			db.Builtin[ModName(line)] = true
		}
	}
	return s.Err()
}

// ParseAliases parses modules.alias ("alias NAME MODULE") keeping only
// aliases without glob characters, which is what softdeps name.
func (db *ModuleDB) ParseAliases(r io.Reader) error {
	db.init()
	s := bufio.NewScanner(r)
	s.Buffer(make([]byte, 64<<10), 1<<20)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) != 3 || f[0] != "alias" || strings.ContainsAny(f[1], "*?[") {
			continue
		}
		mod := strings.ReplaceAll(f[2], "-", "_")
		if !slices.Contains(db.Aliases[f[1]], mod) {
			db.Aliases[f[1]] = append(db.Aliases[f[1]], mod)
		}
	}
	return s.Err()
}

// ParseSoftdeps parses modules.softdep ("softdep MOD pre: a b post: c").
func (db *ModuleDB) ParseSoftdeps(r io.Reader) error {
	db.init()
	s := bufio.NewScanner(r)
	for s.Scan() {
		f := strings.Fields(s.Text())
		if len(f) < 2 || f[0] != "softdep" {
			continue
		}
		mod := strings.ReplaceAll(f[1], "-", "_")
		dst := &db.SoftPre // softdeps without pre:/post: are "pre" for modprobe
		for _, w := range f[2:] {
			switch w {
			case "pre:":
				dst = &db.SoftPre
			case "post:":
				dst = &db.SoftPost
			default:
				(*dst)[mod] = append((*dst)[mod], w)
			}
		}
	}
	return s.Err()
}

func (db *ModuleDB) init() {
	if db.Deps == nil {
		db.Deps = map[string][]string{}
		db.ByName = map[string]string{}
		db.Builtin = map[string]bool{}
		db.Aliases = map[string][]string{}
		db.SoftPre = map[string][]string{}
		db.SoftPost = map[string][]string{}
	}
}

// LoadModuleDB reads modules.dep (required), modules.builtin, modules.alias
// and modules.softdep (optional) from a lib/modules/<ver> directory.
func LoadModuleDB(dir string) (*ModuleDB, error) {
	db := &ModuleDB{}
	db.init()
	for _, p := range []struct {
		name     string
		parse    func(io.Reader) error
		required bool
	}{
		{"modules.dep", db.ParseModulesDep, true},
		{"modules.builtin", db.ParseBuiltin, false},
		{"modules.alias", db.ParseAliases, false},
		{"modules.softdep", db.ParseSoftdeps, false},
	} {
		f, err := os.Open(filepath.Join(dir, p.name))
		if errors.Is(err, os.ErrNotExist) && !p.required {
			continue
		}
		if err != nil {
			return nil, err
		}
		err = p.parse(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", filepath.Join(dir, p.name), err)
		}
	}
	return db, nil
}

// LoadEntry is one module to load, in order.
type LoadEntry = loadlist.Entry

// Resolve returns the modules to load for names, dependencies first (the
// order modprobe uses: each module's modules.dep list walked from its end,
// softdep "pre" modules before, "post" after). Built-in modules are left
// out. A name may be a module name or an exact alias. Unknown names wrap
// ErrUnknownModule.
func (db *ModuleDB) Resolve(names ...string) ([]LoadEntry, error) {
	var (
		out   []LoadEntry
		state = map[string]int{} // 1 visiting, 2 done
		index = map[string]int{} // path -> position in out
	)
	var (
		visitPath    func(p string, optional, soft bool, stack []string) error
		visitName    func(n string, optional, soft bool, stack []string) error
		markRequired func(p string)
	)
	markRequired = func(p string) {
		if i, ok := index[p]; ok && out[i].Optional {
			out[i].Optional = false
			for _, d := range db.Deps[p] {
				markRequired(d)
			}
		}
	}
	visitPath = func(p string, optional, soft bool, stack []string) error {
		switch state[p] {
		case 2:
			if !optional {
				markRequired(p)
			}
			return nil
		case 1:
			if soft {
				return nil // modprobe breaks softdep loops the same way
			}
			return fmt.Errorf("dependency cycle: %s -> %s", strings.Join(stack, " -> "), p)
		}
		state[p] = 1
		stack = append(stack, ModName(p))
		name := ModName(p)
		for _, s := range db.SoftPre[name] {
			if err := visitName(s, optional, true, stack); err != nil {
				return err
			}
		}
		deps := db.Deps[p]
		for i := len(deps) - 1; i >= 0; i-- {
			if err := visitPath(deps[i], optional, false, stack); err != nil {
				return err
			}
		}
		state[p] = 2
		index[p] = len(out)
		out = append(out, LoadEntry{Path: p, Optional: optional})
		for _, s := range db.SoftPost[name] {
			if err := visitName(s, optional, true, stack); err != nil {
				return err
			}
		}
		return nil
	}
	visitName = func(n string, optional, soft bool, stack []string) error {
		mn := strings.ReplaceAll(n, "-", "_")
		if p, ok := db.ByName[mn]; ok {
			return visitPath(p, optional, soft, stack)
		}
		if db.Builtin[mn] {
			return nil
		}
		targets := db.Aliases[n]
		if len(targets) == 0 {
			if soft {
				return nil // modprobe ignores softdeps it cannot find
			}
			return fmt.Errorf("%w: %q", ErrUnknownModule, n)
		}
		for _, t := range targets {
			if db.Builtin[t] {
				return nil // the alias is satisfied by the kernel itself
			}
		}
		// Several modules provide the alias (e.g. crypto-crc32c: crc32c_intel,
		// crc32c_generic): load them all; only one has to work.
		for _, t := range targets {
			p, ok := db.ByName[t]
			if !ok {
				continue
			}
			if err := visitPath(p, optional || len(targets) > 1, soft, stack); err != nil {
				return err
			}
		}
		return nil
	}
	for _, n := range names {
		if err := visitName(n, false, false, nil); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// KmodsPiece describes a built kernel-module piece.
type KmodsPiece struct {
	// Path of the piece.
	Path string
	// Version is the kernel release the modules are for.
	Version string
	// Modules in load order.
	Modules []LoadEntry
	// OnDisk are the modules in the piece (and its modules.dep) that are
	// not in the load list, dependencies first.
	OnDisk []LoadEntry
	// Size of the piece in bytes; Raw is the sum of the .ko sizes.
	Size, Raw int64
}

// BuildKmods writes to dst an initramfs piece (newc, compressed with c)
// holding the modules named (and what they depend on) from k under
// lib/modules/<ver>/, a modules.dep limited to them, and the load list at
// ModulesLoadPath.
func BuildKmods(dst string, k *Kernel, c Compression, names ...string) (*KmodsPiece, error) {
	return BuildKmodsOnDisk(dst, k, c, names, nil)
}

// BuildKmodsOnDisk is BuildKmods with more modules, onDisk, that the piece
// holds (with their dependencies, in modules.dep) but the load list does
// not name: what a distribution has under /lib/modules for a program to
// load itself, e.g. ramoops for fastreboot.
func BuildKmodsOnDisk(dst string, k *Kernel, c Compression, load, onDisk []string) (*KmodsPiece, error) {
	db, err := LoadModuleDB(k.ModulesDir)
	if err != nil {
		return nil, err
	}
	entries, err := db.Resolve(load...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Version, err)
	}
	extra, err := db.Resolve(onDisk...)
	if err != nil {
		return nil, fmt.Errorf("kernel %s: %w", k.Version, err)
	}
	loaded := map[string]bool{}
	for _, e := range entries {
		loaded[e.Path] = true
	}
	var unloaded []LoadEntry
	for _, e := range extra {
		if !loaded[e.Path] {
			unloaded = append(unloaded, e)
		}
	}
	base := path.Join("lib", "modules", k.Version)
	var (
		files []File
		dep   strings.Builder
		raw   int64
	)
	for _, e := range append(slices.Clone(entries), unloaded...) {
		src := filepath.Join(k.ModulesDir, filepath.FromSlash(e.Path))
		fi, err := os.Stat(src)
		if err != nil {
			return nil, fmt.Errorf("module %s: %w", ModName(e.Path), err)
		}
		raw += fi.Size()
		files = append(files, File{Path: path.Join(base, e.Path), Src: src, Mode: 0o644})
		fmt.Fprintf(&dep, "%s:", e.Path)
		for _, d := range db.Deps[e.Path] {
			fmt.Fprintf(&dep, " %s", d)
		}
		dep.WriteByte('\n')
	}
	files = append(files,
		File{Path: path.Join(base, "modules.dep"), Data: []byte(dep.String())},
		File{Path: ModulesLoadPath, Data: []byte(loadlist.Format(entries))},
	)
	if err := WritePiece(dst, c, files); err != nil {
		return nil, err
	}
	fi, err := os.Stat(dst)
	if err != nil {
		return nil, err
	}
	return &KmodsPiece{Path: dst, Version: k.Version, Modules: entries, OnDisk: unloaded, Size: fi.Size(), Raw: raw}, nil
}
