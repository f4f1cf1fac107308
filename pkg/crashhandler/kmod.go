package crashhandler

import (
	"bufio"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// ModuleLoader loads one kernel module file with its parameters ("name=value"
// words separated by spaces). The kernel's loader (finit_module(2)) is the
// default; tests give a fake. It returns an error wrapping fs.ErrExist when
// the module is loaded already.
type ModuleLoader interface {
	LoadModule(f *os.File, params string) error
}

// RamoopsLoad says what LoadRamoops did.
type RamoopsLoad struct {
	// Params are the parameters ramoops was given (from the command line's
	// ramoops.* words).
	Params string `json:"params,omitempty"`
	// Loaded are the module files loaded, dependencies first.
	Loaded []string `json:"loaded,omitempty"`
	// Backend is the pstore backend registered afterwards ("" if none).
	Backend string `json:"backend,omitempty"`
	// Skipped says why nothing was loaded.
	Skipped string `json:"skipped,omitempty"`
}

// LoadRamoops loads the ramoops module with the ramoops.* words of the
// running command line (Root/proc/cmdline) as its parameters, when the line
// has such words and no pstore backend is registered yet. The kernel hands
// MODULE.PARAM words of its command line only to built-in modules; for a
// module, modprobe does it, and this is what modprobe would do: the module
// and its dependencies are found in Root/lib/modules/RELEASE/modules.dep
// (RELEASE from Root/proc/sys/kernel/osrelease, as uname -r), the
// dependencies loaded first without parameters (those already loaded,
// Root/sys/module/NAME, are skipped), each with opts.Modules
// (finit_module(2)).
//
// It fails when a file is missing, a load fails, or ramoops loaded but
// registered no backend (its probe failed: the kernel log says why, e.g.
// a region it could not map).
func LoadRamoops(opts PstoreOptions) (*RamoopsLoad, error) {
	root := opts.root()
	rep := &RamoopsLoad{}
	b, err := os.ReadFile(filepath.Join(root, procCmdline))
	if err != nil {
		return rep, fmt.Errorf("loading ramoops: %w", err)
	}
	var params []string
	for _, w := range RamoopsWords(strings.TrimSpace(string(b))) {
		params = append(params, strings.TrimPrefix(w, "ramoops."))
	}
	if len(params) == 0 {
		rep.Skipped = "no ramoops.* words on the command line"
		return rep, nil
	}
	rep.Params = strings.Join(params, " ")
	if rep.Backend, err = PstoreBackend(root); err != nil {
		return rep, fmt.Errorf("loading ramoops: %w", err)
	}
	if rep.Backend != "" {
		rep.Skipped = "pstore backend " + rep.Backend + " already registered"
		return rep, nil
	}
	loader := opts.Modules
	if loader == nil {
		loader = KernelModules{}
	}
	rep.Loaded, err = loadModule(root, "ramoops", rep.Params, loader)
	if err != nil {
		return rep, fmt.Errorf("loading ramoops: %w", err)
	}
	if rep.Backend, err = PstoreBackend(root); err != nil {
		return rep, fmt.Errorf("loading ramoops: %w", err)
	}
	if rep.Backend == "" {
		if n := len(rep.Loaded); n == 0 || moduleName(rep.Loaded[n-1]) != "ramoops" {
			return rep, fmt.Errorf("loading ramoops (%s): the module is loaded already, without a registered pstore backend (loaded earlier without a usable region?)", rep.Params)
		}
		return rep, fmt.Errorf("loading ramoops (%s): no pstore backend registered afterwards (the kernel log says why ramoops did not probe)", rep.Params)
	}
	opts.log().Info("pstore backend registered", "backend", rep.Backend, "params", rep.Params, "loaded", rep.Loaded)
	return rep, nil
}

// moduleDir returns Root/lib/modules/RELEASE (or Root/usr/lib/modules/...).
func moduleDir(root string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, procOSRelease))
	if err != nil {
		return "", fmt.Errorf("the running kernel's release: %w", err)
	}
	rel := strings.TrimSpace(string(b))
	if rel == "" || strings.ContainsAny(rel, "/") {
		return "", fmt.Errorf("%s: release %q is not a directory name", filepath.Join(root, procOSRelease), rel)
	}
	var dir string
	for _, d := range []string{"lib/modules", "usr/lib/modules"} {
		dir = filepath.Join(root, d, rel)
		if _, err := os.Stat(filepath.Join(dir, "modules.dep")); err == nil {
			return dir, nil
		}
	}
	return "", fmt.Errorf("%w: no modules.dep for release %s under %s or %s", fs.ErrNotExist, rel,
		filepath.Join(root, "lib/modules"), filepath.Join(root, "usr/lib/modules"))
}

// moduleName is the name the kernel gives a module file
// (.../ramoops.ko.xz -> ramoops; dashes become underscores).
func moduleName(path string) string {
	base := filepath.Base(path)
	if i := strings.Index(base, ".ko"); i >= 0 {
		base = base[:i]
	}
	return strings.ReplaceAll(base, "-", "_")
}

// readModulesDep parses modules.dep: "kernel/x/a.ko: kernel/y/b.ko ...",
// paths relative to dir; it returns module name -> (path, dependency paths).
func readModulesDep(dir string) (map[string]depEntry, error) {
	f, err := os.Open(filepath.Join(dir, "modules.dep"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	deps := map[string]depEntry{}
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		mod, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || strings.TrimSpace(mod) == "" {
			continue
		}
		mod = strings.TrimSpace(mod)
		deps[moduleName(mod)] = depEntry{path: mod, deps: strings.Fields(rest)}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading %s: %w", filepath.Join(dir, "modules.dep"), err)
	}
	return deps, nil
}

type depEntry struct {
	path string
	deps []string
}

// loadModule loads name with params after its dependencies (each one's own
// dependencies first, as modprobe does), skipping modules the kernel has
// already (Root/sys/module/NAME). It returns the files it loaded.
func loadModule(root, name, params string, loader ModuleLoader) ([]string, error) {
	dir, err := moduleDir(root)
	if err != nil {
		return nil, err
	}
	deps, err := readModulesDep(dir)
	if err != nil {
		return nil, err
	}
	if _, ok := deps[name]; !ok {
		return nil, fmt.Errorf("%w: module %s is not in %s", fs.ErrNotExist, name, filepath.Join(dir, "modules.dep"))
	}
	var loaded []string
	seen := map[string]bool{}
	var load func(n, params string, depth int) error
	load = func(n, params string, depth int) error {
		if seen[n] {
			return nil
		}
		seen[n] = true
		if depth > 64 {
			return fmt.Errorf("module %s: dependency chain too deep in modules.dep", n)
		}
		if _, err := os.Stat(filepath.Join(root, "sys/module", n)); err == nil {
			return nil
		}
		e, ok := deps[n]
		if !ok {
			return fmt.Errorf("%w: module %s (a dependency) is not in %s", fs.ErrNotExist, n, filepath.Join(dir, "modules.dep"))
		}
		for _, d := range e.deps {
			if err := load(moduleName(d), "", depth+1); err != nil {
				return err
			}
		}
		p := filepath.Join(dir, e.path)
		f, err := os.Open(p)
		if err != nil {
			return fmt.Errorf("module %s: %w", n, err)
		}
		defer f.Close()
		if err := loader.LoadModule(f, params); err != nil {
			if errors.Is(err, fs.ErrExist) {
				return nil
			}
			return fmt.Errorf("module %s (%s): %w", n, p, err)
		}
		loaded = append(loaded, p)
		return nil
	}
	return loaded, load(name, params, 0)
}

// PstoreMounted reports whether a pstore file system is mounted on
// Root/sys/fs/pstore, from Root/proc/self/mounts.
func PstoreMounted(root string) (bool, error) {
	if root == "" {
		root = "/"
	}
	f, err := os.Open(filepath.Join(root, procMounts))
	if err != nil {
		return false, fmt.Errorf("reading mounts: %w", err)
	}
	defer f.Close()
	target := filepath.Join(root, PstoreDir)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 3 && fields[2] == "pstore" && fields[1] == target {
			return true, nil
		}
	}
	return false, sc.Err()
}

// MountPstore mounts pstore on Root/sys/fs/pstore unless it is mounted
// there already (PstoreMounted), with opts.Mount (mount(2) by default). It
// reports whether it mounted.
func MountPstore(opts PstoreOptions) (bool, error) {
	root := opts.root()
	if ok, err := PstoreMounted(root); err == nil && ok {
		return false, nil
	}
	target := filepath.Join(root, PstoreDir)
	mount := opts.Mount
	if mount == nil {
		mount = mountPstore
	}
	if err := mount(target); err != nil {
		return false, fmt.Errorf("mounting pstore on %s: %w", target, err)
	}
	opts.log().Info("pstore mounted", "target", target)
	return true, nil
}

// LoadModules loads the modules names, in order, each after its
// dependencies, as LoadRamoops loads ramoops (Root/lib/modules/RELEASE/
// modules.dep; modules the kernel has, Root/sys/module/NAME, skipped), with
// loader (nil: finit_module(2)). It returns the files loaded. The daemon
// loads nd_e820 and nd_pmem this way when the command line keeps a kept
// memory region (pkg/keptmem) and no device holds it yet.
func LoadModules(root string, loader ModuleLoader, names ...string) ([]string, error) {
	if root == "" {
		root = "/"
	}
	if loader == nil {
		loader = KernelModules{}
	}
	var all []string
	for _, n := range names {
		loaded, err := loadModule(root, n, "", loader)
		all = append(all, loaded...)
		if err != nil {
			return all, fmt.Errorf("loading %s: %w", n, err)
		}
	}
	return all, nil
}
