package harness

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/u-root/gobusybox/src/pkg/golang"
	ucpio "github.com/u-root/mkuimage/cpio"
	"github.com/u-root/mkuimage/uimage"
	"github.com/u-root/uio/llog"
)

// Go packages of this project that go into the base piece.
const (
	// ModulePath is this project's Go module (the library and the CLI).
	ModulePath = "github.com/fastreboot/fastreboot"
	// TestsModulePath is the Go module of the QEMU tests, in the qemu-tests
	// directory of ModulePath's tree (replace ../): it holds the harness's
	// own requirements (mkuimage, gobusybox, u-root's commands) so that the
	// library's go.mod does not. The guest's commands are built from it.
	TestsModulePath = ModulePath + "/qemu-tests"
	// FrguestCmd is the guest helper run as uinit.
	FrguestCmd = TestsModulePath + "/cmd/frguest"
	// FastrebootCmd is the fastreboot CLI.
	FastrebootCmd = ModulePath + "/cmd/fastreboot"
)

// URootCmd returns the import path of a u-root core command.
func URootCmd(name string) string { return "github.com/u-root/u-root/cmds/core/" + name }

// DefaultCoreCommands are the u-root commands (built as one busybox binary)
// in the base piece: init, the gosh shell and tools for looking around.
// Each is a tool of qemu-tests/go.mod (`go get -tool github.com/u-root/u-root/cmds/core/NAME`),
// so that `go mod tidy` keeps the requirements and go.sum entries the build needs.
var DefaultCoreCommands = []string{
	"init", "gosh", "cat", "cmp", "cp", "dmesg", "echo", "false", "free", "grep",
	"hexdump", "kexec", "ls", "lsmod", "mkdir", "mount", "poweroff", "ps", "rm",
	"shasum", "sleep", "sync", "tail", "true", "umount", "uname", "uptime", "wc",
}

// DefaultBuildTags are the Go build tags for the base piece. goshsmall gives
// gosh its plain line-reading interactive mode: the default one (bubbline)
// redraws the line with terminal escapes, which a serial-console script
// cannot follow.
var DefaultBuildTags = []string{"goshsmall"}

// BaseOptions configures BuildBase. The zero value builds u-root init, gosh,
// DefaultCoreCommands and frguest (as uinit), zstd compressed, cached under
// CacheDir()/base.
type BaseOptions struct {
	// CoreCommands are u-root core command names built into one busybox
	// binary (bbin/); nil means DefaultCoreCommands. Must include init and gosh.
	CoreCommands []string
	// Commands are more Go packages built as separate binaries (bin/), e.g.
	// FastrebootCmd. FrguestCmd is always added.
	Commands []string
	// Uinit is the command u-root's init runs before the shell; default
	// "frguest". UinitArgs are its arguments (also settable per boot with
	// uroot.uinitargs= on the kernel command line).
	Uinit     string
	UinitArgs []string
	// Compression of the piece; default Zstd.
	Compression Compression
	// BuildTags; nil means DefaultBuildTags.
	BuildTags []string
	// ModuleDir is the directory of TestsModulePath's go.mod (qemu-tests/),
	// where the guest's commands are built; default: FindModuleDir("").
	ModuleDir string
	// CacheDir keeps built pieces by content key; default CacheDir()/base.
	CacheDir string
	// NoCache forces a build (the result is still stored in the cache).
	NoCache bool
	// Logger receives progress; default discards.
	Logger *slog.Logger
}

// BasePiece describes a built (or cached) base piece.
type BasePiece struct {
	// Path of the compressed piece (in the cache: do not modify).
	Path string
	// Key is the content key of the inputs (sources, go.mod/go.sum, options).
	Key string
	// Size is the compressed size, Raw the size of the uncompressed cpio.
	Size, Raw int64
	// Cached is set when no build was needed.
	Cached bool
	// BuildTime is how long the build (or cache lookup) took.
	BuildTime time.Duration
	// Commands lists the Go packages built in.
	Commands []string
}

// baseFormat and urootFormat change when what BuildBase produces changes
// for equal inputs (invalidating cached pieces and u-root layers).
const (
	baseFormat  = "base-v4"
	urootFormat = "uroot-v1"
)

func (o *BaseOptions) defaults() error {
	if o.CoreCommands == nil {
		o.CoreCommands = DefaultCoreCommands
	}
	if !slices.Contains(o.CoreCommands, "init") || !slices.Contains(o.CoreCommands, "gosh") {
		return fmt.Errorf("base piece: CoreCommands must include init and gosh, got %v", o.CoreCommands)
	}
	if !slices.Contains(o.Commands, FrguestCmd) {
		o.Commands = append([]string{FrguestCmd}, o.Commands...)
	}
	if o.Uinit == "" {
		o.Uinit = "frguest"
	}
	if o.Compression == None {
		o.Compression = Zstd
	}
	if o.BuildTags == nil {
		o.BuildTags = DefaultBuildTags
	}
	if o.ModuleDir == "" {
		d, err := FindModuleDir("")
		if err != nil {
			return err
		}
		o.ModuleDir = d
	}
	if o.CacheDir == "" {
		c, err := CacheDir()
		if err != nil {
			return err
		}
		o.CacheDir = filepath.Join(c, "base")
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return nil
}

// FindModuleDir walks up from dir (default: the working directory) to the
// go.mod of TestsModulePath, or to the go.mod of ModulePath and returns its
// qemu-tests directory, so that the tests (run in qemu-tests/) and tools
// run from the repository's root both find it.
func FindModuleDir(dir string) (string, error) {
	if dir == "" {
		wd, err := os.Getwd()
		if err != nil {
			return "", err
		}
		dir = wd
	}
	dir, err := filepath.Abs(dir)
	if err != nil {
		return "", err
	}
	for d := dir; ; d = filepath.Dir(d) {
		b, err := os.ReadFile(filepath.Join(d, "go.mod"))
		if err == nil && bytes.Contains(b, []byte("module "+TestsModulePath+"\n")) {
			return d, nil
		}
		if err == nil && bytes.Contains(b, []byte("module "+ModulePath+"\n")) {
			q := filepath.Join(d, "qemu-tests")
			if b, err := os.ReadFile(filepath.Join(q, "go.mod")); err == nil && bytes.Contains(b, []byte("module "+TestsModulePath+"\n")) {
				return q, nil
			}
		}
		if filepath.Dir(d) == d {
			return "", fmt.Errorf("no go.mod of %s above %s: set BaseOptions.ModuleDir", TestsModulePath, dir)
		}
	}
}

// BuildBase builds the base piece with mkuimage, or returns the cached piece
// whose inputs have the same content key. It works in two layers, each
// cached: u-root's init, gosh and the core commands as one busybox binary
// (bbin/; depends only on go.mod/go.sum and the options; 1-3 minutes on 2
// busy cores, once), then o.Commands as separate binaries (bin/, built by
// `go build` with Go's build cache, so a change to the fastreboot CLI costs
// seconds) with /bin/uinit -> o.Uinit.
func BuildBase(ctx context.Context, o BaseOptions) (*BasePiece, error) {
	start := time.Now()
	if err := o.defaults(); err != nil {
		return nil, err
	}
	urootKey, err := urootLayerKey(ctx, o)
	if err != nil {
		return nil, err
	}
	key, err := baseKey(ctx, o, urootKey)
	if err != nil {
		return nil, err
	}
	dst := filepath.Join(o.CacheDir, "base-"+key[:24]+".cpio"+o.Compression.Ext())
	piece := &BasePiece{Path: dst, Key: key, Commands: append(coreImports(o.CoreCommands), o.Commands...)}
	if fi, err := os.Stat(dst); err == nil && !o.NoCache {
		now := time.Now()
		os.Chtimes(dst, now, now) // mark as used for pruneCache
		piece.Size, piece.Cached = fi.Size(), true
		piece.Raw = readRawSize(dst)
		piece.BuildTime = time.Since(start)
		o.Logger.Info("base piece cached", "path", dst)
		return piece, nil
	}
	if err := os.MkdirAll(o.CacheDir, 0o755); err != nil {
		return nil, err
	}
	tmp, err := os.MkdirTemp(o.CacheDir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(tmp)

	env := golang.Default(
		golang.DisableCGO(),
		golang.WithGOARCH("amd64"),
		golang.WithGOOS("linux"),
		golang.WithBuildTag(o.BuildTags...),
		golang.WithWorkingDir(o.ModuleDir),
	)
	logger := llog.New(slog.LevelInfo, func(format string, args ...any) {
		o.Logger.Debug(fmt.Sprintf(format, args...))
	})

	uroot := filepath.Join(o.CacheDir, "uroot-"+urootKey[:24]+".cpio")
	if _, err := os.Stat(uroot); err != nil || o.NoCache {
		o.Logger.Info("building u-root layer (busybox)", "commands", o.CoreCommands)
		t0 := time.Now()
		raw := filepath.Join(tmp, "uroot.cpio")
		err := uimage.Create(logger,
			uimage.WithReplaceEnv(env),
			uimage.WithTempDir(tmp),
			uimage.WithBusyboxCommands(coreImports(o.CoreCommands)...),
			uimage.WithInit("init"),
			uimage.WithShell("gosh"),
			uimage.WithBaseArchive(baseRamfs()),
			uimage.WithSkipLDD(),
			uimage.WithCPIOOutput(raw),
		)
		if err != nil {
			return nil, fmt.Errorf("base piece: mkuimage (u-root layer): %w", err)
		}
		if err := os.Rename(raw, uroot); err != nil {
			return nil, err
		}
		o.Logger.Info("u-root layer built", "path", uroot, "took", time.Since(t0))
	} else {
		now := time.Now()
		os.Chtimes(uroot, now, now) // mark as used for pruneCache
	}

	o.Logger.Info("building base piece", "commands", o.Commands, "uinit", o.Uinit)
	// Our commands: plain `go build` (mkuimage's binary builder passes -a,
	// which would recompile everything every time).
	binDir := filepath.Join(tmp, "bin")
	if err := os.MkdirAll(binDir, 0o755); err != nil {
		return nil, err
	}
	if _, err := goCmd(ctx, o.ModuleDir, guestGoEnv, append(guestBuildFlags(o.BuildTags, binDir+string(filepath.Separator)), o.Commands...)...); err != nil {
		return nil, fmt.Errorf("base piece: %w", err)
	}
	var extra []string
	for _, c := range o.Commands {
		name := path.Base(c)
		extra = append(extra, filepath.Join(binDir, name)+":bin/"+name)
	}
	uinit := o.Uinit
	if !strings.Contains(uinit, "/") {
		uinit = "/bin/" + uinit
	}
	raw := filepath.Join(tmp, "base.cpio")
	err = uimage.Create(logger,
		uimage.WithReplaceEnv(env),
		uimage.WithTempDir(tmp),
		uimage.WithBaseFile(uroot),
		uimage.WithExistingInit(true),
		uimage.WithFiles(extra...),
		uimage.WithUinit(uinit, o.UinitArgs...),
		uimage.WithSkipLDD(),
		uimage.WithCPIOOutput(raw),
	)
	if err != nil {
		return nil, fmt.Errorf("base piece: mkuimage: %w", err)
	}
	fi, err := os.Stat(raw)
	if err != nil {
		return nil, err
	}
	piece.Raw = fi.Size()
	if err := CompressFile(dst, raw, o.Compression); err != nil {
		return nil, err
	}
	if fi, err = os.Stat(dst); err != nil {
		return nil, err
	}
	piece.Size = fi.Size()
	_ = os.WriteFile(dst+".raw-size", []byte(fmt.Sprint(piece.Raw)), 0o644)
	piece.BuildTime = time.Since(start)
	pruneCache(o.CacheDir, 3*24*time.Hour, dst, uroot)
	o.Logger.Info("base piece built", "path", dst, "size", piece.Size, "raw", piece.Raw, "took", piece.BuildTime)
	return piece, nil
}

// baseRamfs is u-root's default skeleton plus the mount points the tests use.
func baseRamfs() *ucpio.Archive {
	a := uimage.DefaultRamfs()
	for _, d := range []string{"mnt", "run", "root", "storage"} {
		a.WriteRecord(ucpio.Directory(d, 0o755))
	}
	return a
}

// pruneCache removes cached pieces and layers not used for maxAge (other
// builds, e.g. of older sources), except keep.
func pruneCache(dir string, maxAge time.Duration, keep ...string) {
	matches, _ := filepath.Glob(filepath.Join(dir, "*.cpio*"))
	for _, m := range matches {
		if slices.Contains(keep, m) || strings.HasSuffix(m, ".raw-size") {
			continue
		}
		if fi, err := os.Stat(m); err == nil && time.Since(fi.ModTime()) > maxAge {
			os.Remove(m)
			os.Remove(m + ".raw-size")
		}
	}
}

func readRawSize(p string) int64 {
	var n int64
	b, _ := os.ReadFile(p + ".raw-size")
	fmt.Sscan(string(b), &n)
	return n
}

func coreImports(names []string) []string {
	out := make([]string, len(names))
	for i, n := range names {
		out[i] = URootCmd(n)
	}
	return out
}

// urootLayerKey hashes what the u-root layer is built from: the options,
// the Go version, and go.mod and go.sum (which pin u-root and its
// dependencies).
func urootLayerKey(ctx context.Context, o BaseOptions) (string, error) {
	h := sha256.New()
	opts, _ := json.Marshal(struct {
		Format     string
		Core, Tags []string
	}{urootFormat, o.CoreCommands, o.BuildTags})
	h.Write(opts)
	goVer, err := goCmd(ctx, o.ModuleDir, nil, "env", "GOVERSION")
	if err != nil {
		return "", err
	}
	h.Write(goVer)
	for _, f := range []string{"go.mod", "go.sum"} {
		if err := hashFile(h, filepath.Join(o.ModuleDir, f)); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// baseKey hashes the u-root layer's key, the remaining options and the
// source files of this project's packages the commands import (from `go list
// -deps`: the tests' module and the library's, replaced by a directory;
// other modules are pinned by go.sum).
func baseKey(ctx context.Context, o BaseOptions, urootKey string) (string, error) {
	h := sha256.New()
	opts, _ := json.Marshal(struct {
		Format, URoot string
		Cmds, Args    []string
		Uinit         string
		Compression   Compression
	}{baseFormat, urootKey, o.Commands, o.UinitArgs, o.Uinit, o.Compression})
	h.Write(opts)
	out, err := goCmd(ctx, o.ModuleDir, guestGoEnv,
		append([]string{"list", "-deps", "-tags", strings.Join(o.BuildTags, ","),
			"-f", "{{if .Module}}{{if or .Module.Main .Module.Replace}}{{.Dir}}\t{{join .GoFiles \" \"}} {{join .EmbedFiles \" \"}}{{end}}{{end}}"},
			o.Commands...)...)
	if err != nil {
		return "", err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		dir, files, ok := strings.Cut(line, "\t")
		if !ok {
			continue
		}
		for _, f := range strings.Fields(files) {
			p := filepath.Join(dir, f)
			rel, _ := filepath.Rel(o.ModuleDir, p)
			fmt.Fprintf(h, "\x00%s\x00", filepath.ToSlash(rel))
			if err := hashFile(h, p); err != nil {
				return "", err
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

func hashFile(w io.Writer, p string) error {
	f, err := os.Open(p)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func goCmd(ctx context.Context, dir string, env []string, args ...string) ([]byte, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("go %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

// ErrNoPackage means a Go package does not exist in the module (yet).
var ErrNoPackage = errors.New("no such Go package")

// CheckBuild reports whether the Go package pkg (an import path in
// ModulePath or TestsModulePath, e.g. FastrebootCmd) exists and builds for the guest
// (linux/amd64, DefaultBuildTags). A missing package wraps ErrNoPackage.
// Tests use it to include the fastreboot CLI only once it compiles.
func CheckBuild(ctx context.Context, moduleDir, pkg string) error {
	if moduleDir == "" {
		d, err := FindModuleDir("")
		if err != nil {
			return err
		}
		moduleDir = d
	}
	dir, rel, ok := moduleDir, "", false
	if rel, ok = strings.CutPrefix(pkg, TestsModulePath+"/"); !ok {
		// The library's module is the tests' module's parent directory
		// (qemu-tests/go.mod: replace => ../).
		dir = filepath.Dir(moduleDir)
		rel, ok = strings.CutPrefix(pkg, ModulePath+"/")
	}
	if ok {
		if _, err := os.Stat(filepath.Join(dir, filepath.FromSlash(rel))); err != nil {
			return fmt.Errorf("%w: %s", ErrNoPackage, pkg)
		}
	}
	_, err := goCmd(ctx, moduleDir, guestGoEnv, append(guestBuildFlags(DefaultBuildTags, os.DevNull), pkg)...)
	return err
}

// guestGoEnv and guestBuildFlags build the guest's binaries; CheckBuild
// uses the same so that its work lands in Go's build cache for BuildBase.
var guestGoEnv = []string{"GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0"}

func guestBuildFlags(tags []string, out string) []string {
	// As u-root builds: no symbols, no inlining (smaller binaries mean a
	// smaller image for the kernel to hash and unpack on every kexec).
	return []string{"build", "-trimpath", "-gcflags=all=-l", "-ldflags=-s -w -buildid=", "-tags=" + strings.Join(tags, ","), "-o", out}
}
