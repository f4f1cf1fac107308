// Package scenario prepares and drives the update story that both the QEMU
// tests and the demo tell: a boot image of Debian's kernel and three initrd
// pieces (base, kmods, site) on an ext4 "storage" disk, manifests v1 and v2
// that differ in exactly one piece (site), and a guest whose fastreboot
// commands are run over the serial console and answer in JSON.
package scenario

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/manifestsig"
	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

// Names of the files on the storage disk (and in the manifests' sources).
const (
	KernelFile      = "vmlinuz"
	BaseFile        = "base.cpio.zst"
	KmodsFile       = "kmods.cpio"
	SiteV1File      = "site-v1.cpio"
	SiteV2File      = "site-v2.cpio"
	SiteCorruptFile = "site-corrupt.cpio"
	ManifestV1      = "manifest-v1.json"
	ManifestV2      = "manifest-v2.json"
	// ManifestCorrupt is v2 with its site piece replaced by SiteV3Module,
	// whose source on the disk is SiteCorruptFile: same size, other bytes.
	// Staging it must fail with a digest mismatch.
	ManifestCorrupt = "manifest-corrupt.json"
	SiteV3Module    = "site-v3.cpio"
	// InitrdV1File and InitrdV2File are base+kmods+site concatenated, for
	// loaders that take one initrd file (kexec-tools in the benchmark).
	InitrdV1File = "initrd-v1.img"
	InitrdV2File = "initrd-v2.img"
	// MountPoint is where the guest mounts the storage disk.
	MountPoint = "/mnt"
	// PayloadSize is the random payload of each site piece, so that reading
	// the one changed piece is a clearly measurable number of bytes.
	PayloadSize = 1 << 20
)

// Options configure Prepare.
type Options struct {
	// Dir receives the pieces and the disk image; required.
	Dir string
	// Cmdline is appended to harness.DefaultCmdline for every generation.
	Cmdline string
	// ExtraCommands are more Go packages for the base piece.
	ExtraCommands []string
	// Modules are more kernel modules for the kmods piece, loaded after
	// harness.StorageModules (e.g. "ramoops").
	Modules []string
	// KeptRegion, when set, is a legacy persistent-memory region
	// SIZE!START (e.g. "64M!0x40000000") that every generation's command
	// line carries as memmap=KeptRegion, with harness.KeptRegionModules
	// loaded by frguest before the daemon starts: the guest boots with
	// /dev/pmem0 over the region (docs/kernel-facts.md, Kept memory region).
	KeptRegion string
	// KeptRegionInherited leaves the memmap=KeptRegion word off the
	// manifests' command lines: only the cold boot's has it, as when a
	// user adds it to the boot loader and makes manifests without it;
	// fastreboot's inheritance (keptmem.InheritCmdline) keeps the region
	// in every later generation.
	KeptRegionInherited bool
	// ModulesOnDisk are more kernel modules the kmods piece holds (and its
	// modules.dep lists) without loading them: what a distribution has on
	// disk for a program to load itself (e.g. "ramoops" for fastreboot).
	ModulesOnDisk []string
	// ExtraFiles go into the kmods piece, as a second newc archive after
	// the modules' (the kernel unpacks archives back to back), e.g. host
	// tools for benchmarks.
	ExtraFiles []harness.File
	// SignKey, when set, signs ManifestV1 and ManifestV2 (MANIFEST.sig on
	// the disk; ManifestCorrupt stays unsigned) and puts its public key
	// into the kmods piece as TrustKeyFile, so that every generation of the
	// story has a trust root (fastreboot's default directory).
	SignKey ed25519.PrivateKey
	// Logger receives build progress.
	Logger *slog.Logger
}

// TrustKeyFile is where Options.SignKey's public key lands in the guest.
const TrustKeyFile = "etc/fastreboot/trust/scenario.pub"

// Setup is a prepared story: the host files, the manifests and the disk.
type Setup struct {
	Kernel  *harness.Kernel
	Base    *harness.BasePiece
	Kmods   *harness.KmodsPiece
	Dir     string
	Cmdline string
	// manifestCmdline is the manifests' command line: Cmdline, without
	// the kept region's word under Options.KeptRegionInherited.
	manifestCmdline string
	// Files maps disk file names to host paths.
	Files map[string]string
	// V1 and V2 are the manifests on the disk.
	V1, V2 *bootimage.Manifest
	// Initrd is generation 1's initrd (the v1 pieces concatenated), given to
	// QEMU for the cold boot.
	Initrd string
	// Disk is the ext4 image.
	Disk string
}

// Prepare builds the pieces (the base piece comes from the harness cache
// when its inputs did not change), writes the manifests and the disk.
func Prepare(ctx context.Context, k *harness.Kernel, o Options) (*Setup, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Setup{Kernel: k, Dir: o.Dir, Files: map[string]string{KernelFile: k.Vmlinuz}}
	s.Cmdline = strings.TrimSpace(harness.DefaultCmdline + " " + o.Cmdline)
	modules := append(slices.Clone(harness.StorageModules), o.Modules...)
	s.manifestCmdline = s.Cmdline
	if o.KeptRegion != "" {
		s.Cmdline += " memmap=" + o.KeptRegion
		if !o.KeptRegionInherited {
			s.manifestCmdline = s.Cmdline
		}
		modules = append(modules, harness.KeptRegionModules...)
	}

	log.Info("building the base piece (u-root init, gosh, fastreboot, frguest)")
	base, err := harness.BuildBase(ctx, harness.BaseOptions{
		Commands: append([]string{harness.FastrebootCmd}, o.ExtraCommands...),
		Logger:   log,
	})
	if err != nil {
		return nil, fmt.Errorf("base piece: %w", err)
	}
	s.Base = base
	s.Files[BaseFile] = base.Path

	log.Info("building the kernel-module piece", "modules", modules)
	s.Kmods, err = harness.BuildKmodsOnDisk(filepath.Join(o.Dir, KmodsFile), k, harness.None, modules, o.ModulesOnDisk)
	if err != nil {
		return nil, fmt.Errorf("kmods piece: %w", err)
	}
	extra := o.ExtraFiles
	if o.SignKey != nil {
		pub, err := manifestsig.MarshalPublicKey(o.SignKey.Public().(ed25519.PublicKey))
		if err != nil {
			return nil, err
		}
		extra = append(slices.Clone(extra), harness.File{Path: TrustKeyFile, Data: pub})
	}
	if len(extra) > 0 {
		if err := appendArchive(s.Kmods.Path, extra); err != nil {
			return nil, fmt.Errorf("kmods piece: %w", err)
		}
	}
	s.Files[KmodsFile] = s.Kmods.Path

	for _, site := range []struct{ file, release string }{
		{SiteV1File, "v1"}, {SiteV2File, "v2"}, {SiteV3Module, "v3"}, {SiteCorruptFile, "v3"},
	} {
		payload := make([]byte, PayloadSize)
		if _, err := rand.Read(payload); err != nil {
			return nil, err
		}
		p := filepath.Join(o.Dir, site.file)
		if err := harness.BuildSite(p, site.release, harness.File{Path: "etc/fastreboot-payload", Data: payload}); err != nil {
			return nil, fmt.Errorf("site piece %s: %w", site.file, err)
		}
		s.Files[site.file] = p
	}

	if s.V1, err = s.manifest("v1", SiteV1File); err != nil {
		return nil, err
	}
	if s.V2, err = s.manifest("v2", SiteV2File); err != nil {
		return nil, err
	}
	// The corrupt update names a piece no cache holds (site-v3, which is
	// not on the disk), pointing at a file of the same size with other
	// bytes.
	v3, err := s.manifest("v3", SiteV3Module)
	if err != nil {
		return nil, err
	}
	corrupt := *v3
	corrupt.Name = "corrupt"
	for i, m := range corrupt.Modules {
		if m.Name == SiteV3Module {
			corrupt.Modules[i].Source = SiteCorruptFile
		}
	}
	delete(s.Files, SiteV3Module)
	for name, m := range map[string]*bootimage.Manifest{ManifestV1: s.V1, ManifestV2: s.V2, ManifestCorrupt: &corrupt} {
		b, err := m.Marshal()
		if err != nil {
			return nil, err
		}
		p := filepath.Join(o.Dir, name)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			return nil, err
		}
		s.Files[name] = p
		if o.SignKey != nil && name != ManifestCorrupt {
			sig, err := manifestsig.Sign(o.SignKey, b).Marshal()
			if err != nil {
				return nil, err
			}
			if err := os.WriteFile(manifestsig.SignaturePath(p), sig, 0o644); err != nil {
				return nil, err
			}
			s.Files[manifestsig.SignaturePath(name)] = manifestsig.SignaturePath(p)
		}
	}

	s.Initrd = filepath.Join(o.Dir, InitrdV1File)
	if _, err := harness.Concat(s.Initrd, base.Path, s.Kmods.Path, s.Files[SiteV1File]); err != nil {
		return nil, err
	}
	s.Files[InitrdV1File] = s.Initrd
	v2 := filepath.Join(o.Dir, InitrdV2File)
	if _, err := harness.Concat(v2, base.Path, s.Kmods.Path, s.Files[SiteV2File]); err != nil {
		return nil, err
	}
	s.Files[InitrdV2File] = v2

	var files []harness.File
	for name, p := range s.Files {
		files = append(files, harness.File{Path: name, Src: p})
	}
	s.Disk = filepath.Join(o.Dir, "storage.img")
	log.Info("building the storage disk", "files", len(files))
	if err := harness.BuildDisk(s.Disk, 0, files...); err != nil {
		return nil, fmt.Errorf("storage disk: %w", err)
	}
	return s, nil
}

// appendArchive appends a newc archive of files to the uncompressed piece at
// path.
func appendArchive(path string, files []harness.File) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	if err := harness.WriteNewc(f, files); err != nil {
		f.Close()
		return fmt.Errorf("appending to %s: %w", path, err)
	}
	return f.Close()
}

// manifest describes the image with the given site piece, sources relative
// to the disk's root.
func (s *Setup) manifest(name, site string) (*bootimage.Manifest, error) {
	m, err := bootimage.FromFiles(s.Files[KernelFile],
		[]string{s.Files[BaseFile], s.Files[KmodsFile], s.Files[site]}, s.manifestCmdline)
	if err != nil {
		return nil, fmt.Errorf("manifest %s: %w", name, err)
	}
	m.Name = name
	for i := range m.Modules {
		// FromFiles names modules by base name; the disk uses our names.
		m.Modules[i].Name = diskName(s.Files, m.Modules[i].Source)
		m.Modules[i].Source = m.Modules[i].Name
	}
	return m, m.Validate()
}

func diskName(files map[string]string, host string) string {
	for name, p := range files {
		if p == host {
			return name
		}
	}
	return filepath.Base(host)
}

// ModuleSize is the size of the module with the given name in m.
func ModuleSize(m *bootimage.Manifest, name string) int64 {
	mod, _ := m.Module(name)
	return mod.Size
}

// TotalSize is the sum of m's module sizes.
func TotalSize(m *bootimage.Manifest) int64 {
	var n int64
	for _, mod := range m.Modules {
		n += mod.Size
	}
	return n
}

// Distinct is what a cache holding the modules of every manifest given
// holds: the number of distinct modules (by digest) and their bytes. An
// update on trial carries last-known-good's modules with its own.
func Distinct(ms ...*bootimage.Manifest) (count int, size int64) {
	seen := map[string]bool{}
	for _, m := range ms {
		for _, mod := range m.Modules {
			if !seen[mod.SHA256] {
				seen[mod.SHA256] = true
				count++
				size += mod.Size
			}
		}
	}
	return count, size
}

// VMOptions are the options for booting generation 1.
func (s *Setup) VMOptions() harness.Options {
	return harness.Options{
		Kernel:           s.Kernel.Vmlinuz,
		Initrd:           s.Initrd,
		Cmdline:          s.Cmdline,
		NoDefaultCmdline: true,
		Disks:            []harness.Disk{{Path: s.Disk, ReadOnly: true}},
	}
}

// Guest drives fastreboot in a booted guest.
type Guest struct {
	VM *harness.VM
	// Timeout bounds each command; staging under TCG takes seconds.
	Timeout time.Duration
}

// ErrCommand is a guest command that exited non-zero.
var ErrCommand = errors.New("guest command failed")

// Run runs a shell command, returning its output; a non-zero exit is an
// error wrapping ErrCommand that carries the output.
func (g *Guest) Run(cmd string) (string, error) {
	out, code, err := g.VM.Run(cmd, g.timeout())
	if err != nil {
		return out, err
	}
	if code != 0 {
		return out, fmt.Errorf("%w: %q exited %d: %s", ErrCommand, cmd, code, strings.TrimSpace(out))
	}
	return out, nil
}

func (g *Guest) timeout() time.Duration {
	if g.Timeout == 0 {
		return 5 * time.Minute
	}
	return g.Timeout
}

// FastrebootJSON runs `fastreboot ARGS --json` and decodes its output into v.
// On a non-zero exit the error carries the output (the message on stderr
// reaches the console too). Output that does not decode (the kernel can
// print into it in ways DecodeJSON cannot undo, e.g. a continuation line
// with no timestamp) is read once more, and the first error is written to
// the console log; only a second failure is an error. ARGS must therefore
// be a command that only reads (status, crash status, estimate).
func (g *Guest) FastrebootJSON(args string, v any) error {
	return decodeReread(args, v, func() (string, error) { return g.Run("fastreboot " + args + " --json") },
		func(format string, a ...any) { g.VM.Console().Logf(format, a...) })
}

// decodeReread is FastrebootJSON over run (one run of the command) and
// logf (the console log).
func decodeReread(args string, v any, run func() (string, error), logf func(string, ...any)) error {
	out, err := run()
	if err != nil {
		return err
	}
	first := DecodeJSON(out, v)
	if first == nil || !strings.Contains(args, "status") && !strings.Contains(args, "estimate") {
		return first
	}
	logf("harness: fastreboot %s --json did not decode, reading it again: %v", args, first)
	if out, err = run(); err != nil {
		return fmt.Errorf("%w (the first read did not decode: %v)", err, first)
	}
	if err := DecodeJSON(out, v); err != nil {
		return fmt.Errorf("%w (and the first read: %v)", err, first)
	}
	return nil
}

// DecodeJSON decodes the first JSON object in console output. Kernel lines
// may precede it, and the kernel may print into the middle of it: the serial
// console interleaves printk with what user space writes.
func DecodeJSON(out string, v any) error {
	out = StripKernelLines(out)
	i := strings.Index(out, "{")
	if i < 0 {
		return fmt.Errorf("no JSON in output %q", out)
	}
	if err := json.NewDecoder(strings.NewReader(out[i:])).Decode(v); err != nil {
		return fmt.Errorf("decoding JSON %q: %w", out[i:], err)
	}
	return nil
}

// kmsgRE matches one console line of the kernel (CONFIG_PRINTK_TIME).
var kmsgRE = regexp.MustCompile(`\[ *\d+\.\d{6}\] [^\n]*\n`)

// StripKernelLines removes the kernel's console lines from out, wherever
// they were inserted, except those quoted in a JSON string (evidence logs
// hold such lines).
func StripKernelLines(out string) string {
	var b strings.Builder
	i := 0
	for {
		loc := kmsgRE.FindStringIndex(out[i:])
		if loc == nil {
			break
		}
		start, end := i+loc[0], i+loc[1]
		if start > 0 && out[start-1] == '"' {
			b.WriteString(out[i : start+1])
			i = start + 1
			continue
		}
		b.WriteString(out[i:start])
		i = end
	}
	b.WriteString(out[i:])
	return b.String()
}

// MountStorage mounts the storage disk read-only at MountPoint.
func (g *Guest) MountStorage() error {
	_, err := g.Run("mount -t ext4 -o ro /dev/vda " + MountPoint)
	return err
}

// DiskReadBytes returns the bytes the storage disk has read since boot:
// sectors read (field 3 of /sys/block/vda/stat) times 512.
func (g *Guest) DiskReadBytes() (int64, error) {
	out, err := g.Run("cat /sys/block/vda/stat")
	if err != nil {
		return 0, err
	}
	// Drop a shell prompt the console may show before the output.
	f := strings.Fields(strings.TrimPrefix(strings.TrimSpace(StripKernelLines(out)), "$"))
	if len(f) < 3 {
		return 0, fmt.Errorf("/sys/block/vda/stat: %q", out)
	}
	n, err := strconv.ParseInt(f[2], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("/sys/block/vda/stat: %q: %w", out, err)
	}
	return n * 512, nil
}

// RebootingRE matches the line `fastreboot reboot` prints just before the
// reboot(2) call. The line is best effort: it may still be in the tty
// buffer when the CPUs stop for the kexec, and never reach the console.
var RebootingRE = regexp.MustCompile(`^fastreboot: rebooting through (kexec|the firmware)`)

// Reboot is one reboot seen from the host; see harness.Reboot.
type Reboot = harness.Reboot

// RebootWith types cmd (which must end in a reboot, e.g. "fastreboot
// reboot") and waits for the next generation to be ready. The jump is
// proven by the next kernel's banner and frguest's markers after the
// command (harness.VM.WaitReboot); marker matches the old generation's last
// line before the jump, whose time is the reboot request when it reached
// the console, and the time the command was sent when it did not
// (Reboot.LineLost). Callers check the next generation's number and reason
// with `fastreboot status`.
func (g *Guest) RebootWith(cmd string, marker *regexp.Regexp, bootTimeout time.Duration) (*Reboot, error) {
	sent := g.VM.Elapsed()
	if err := g.VM.SendLine(cmd); err != nil {
		return nil, err
	}
	// The old generation's way down (stopping CPUs, syncing) counts too.
	r, err := g.VM.WaitReboot(sent, marker, g.timeout()+bootTimeout)
	if err != nil {
		return nil, fmt.Errorf("next generation after %q: %w", cmd, err)
	}
	return r, nil
}
