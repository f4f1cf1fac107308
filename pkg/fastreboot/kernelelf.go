package fastreboot

import (
	"bytes"
	"context"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/atomicfile"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// RoleKernelELF is the role of a decompressed kernel in the module cache:
// the ELF (vmlinux) inside a bzImage, derived from a kernel module by
// LoadSegments. It never appears in a manifest, which lists what storage
// holds.
const RoleKernelELF bootimage.Role = "kernel-elf"

// KernelELFIndexFile is the file in the state directory that records, for
// each bzImage decompressed by LoadSegments, the digest of its ELF. The
// digest is recorded once, when the ELF first enters the cache, and every
// later Stage checks the cached ELF against it, as a manifest's digest is
// checked against a module.
const KernelELFIndexFile = "kernel-elf.json"

// ErrNotKernelELF: a kernel-elf module is not an x86-64 executable ELF whose
// loadable segments and entry the segments loader can place.
var ErrNotKernelELF = errors.New("not a decompressed x86-64 kernel ELF")

// KernelELF records the decompressed kernel derived from a bzImage.
type KernelELF struct {
	// Kernel is the SHA-256 of the bzImage it was decompressed from.
	Kernel string `json:"kernel_sha256"`
	// SHA256 and Size are the ELF's.
	SHA256 string `json:"sha256"`
	Size   int64  `json:"size"`
}

// Module returns the cache module of the ELF: role RoleKernelELF, named
// "kernel-elf:" and the bzImage's digest.
func (k KernelELF) Module() bootimage.Module {
	return bootimage.Module{Name: kernelELFName(k.Kernel), Role: RoleKernelELF, Size: k.Size, SHA256: k.SHA256}
}

func kernelELFName(kernelSHA256 string) string { return "kernel-elf:" + kernelSHA256 }

// CheckModule is bootimage.CheckModule extended to the modules this package
// derives (RoleKernelELF, see CheckKernelELF). A cache used by a Machine
// that stages with LoadSegments must be created with it as its Check:
// bootimage.CheckModule rejects the decompressed kernel's role.
func CheckModule(m bootimage.Module, r io.ReaderAt) error {
	return CheckModuleLimits(bootimage.InitrdLimits{})(m, r)
}

// CheckModuleLimits returns CheckModule with lim as the initrd limits
// (bootimage.CheckModuleLimits).
func CheckModuleLimits(lim bootimage.InitrdLimits) func(m bootimage.Module, r io.ReaderAt) error {
	check := bootimage.CheckModuleLimits(lim)
	return func(m bootimage.Module, r io.ReaderAt) error {
		if m.Role != RoleKernelELF {
			return check(m, r)
		}
		if err := CheckKernelELF(r, m.Size); err != nil {
			return fmt.Errorf("module %q: %w", m.Name, err)
		}
		return nil
	}
}

// CheckKernelELF checks that r holds an x86-64 executable ELF with at least
// one loadable segment, every segment's bytes inside the file, and the entry
// point inside a loaded segment (the physical address of startup_64 in a
// vmlinux). Errors wrap ErrNotKernelELF.
func CheckKernelELF(r io.ReaderAt, size int64) error {
	_, err := readKernelELF(io.NewSectionReader(r, 0, size), size)
	return err
}

// kernelProg is one PT_LOAD of a kernel ELF.
type kernelProg struct {
	Off, Filesz, Paddr, Memsz uint64
}

type kernelImage struct {
	Entry uint64
	Progs []kernelProg
}

// readKernelELF parses the program headers of a kernel ELF.
func readKernelELF(r io.ReaderAt, size int64) (*kernelImage, error) {
	f, err := elf.NewFile(r)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotKernelELF, err)
	}
	if f.Class != elf.ELFCLASS64 || f.Machine != elf.EM_X86_64 || f.Type != elf.ET_EXEC {
		return nil, fmt.Errorf("%w: %v %v %v, want ELFCLASS64 EM_X86_64 ET_EXEC", ErrNotKernelELF, f.Class, f.Machine, f.Type)
	}
	k := &kernelImage{Entry: f.Entry}
	entryLoaded := false
	for i, p := range f.Progs {
		if p.Type != elf.PT_LOAD || p.Memsz == 0 {
			continue
		}
		if p.Filesz > p.Memsz || p.Off > uint64(size) || p.Filesz > uint64(size)-p.Off {
			return nil, fmt.Errorf("%w: program header %d (offset %#x, %#x bytes in file, %#x in memory) outside the %d-byte file",
				ErrNotKernelELF, i, p.Off, p.Filesz, p.Memsz, size)
		}
		if p.Paddr+p.Memsz < p.Paddr {
			return nil, fmt.Errorf("%w: program header %d wraps around the address space", ErrNotKernelELF, i)
		}
		if f.Entry >= p.Paddr && f.Entry-p.Paddr < p.Memsz {
			entryLoaded = true
		}
		k.Progs = append(k.Progs, kernelProg{Off: p.Off, Filesz: p.Filesz, Paddr: p.Paddr, Memsz: p.Memsz})
	}
	if len(k.Progs) == 0 {
		return nil, fmt.Errorf("%w: no loadable segment", ErrNotKernelELF)
	}
	if !entryLoaded {
		return nil, fmt.Errorf("%w: entry %#x is in no loadable segment", ErrNotKernelELF, f.Entry)
	}
	return k, nil
}

// decompressKernel returns the ELF inside a bzImage (bootimage.UnpackKernel:
// gzip, xz, lzma, zstd, bzip2, lz4). Memory is bounded by the header: the
// output buffer is the size the payload records, which may not exceed
// init_size, and decompression stops there; a payload that unpacks to
// more, or to anything but that size, is refused (a forged 1.5 MB bzImage
// once took 4.2 GB here).
func decompressKernel(r io.ReaderAt, size int64) ([]byte, error) {
	p, err := bootimage.FindKernelPayload(r, size)
	if err != nil {
		return nil, fmt.Errorf("decompressing the bzImage: %w", err)
	}
	buf := bytes.NewBuffer(make([]byte, 0, p.UnpackedBytes))
	if _, err := bootimage.UnpackKernel(r, size, buf); err != nil {
		return nil, fmt.Errorf("decompressing the bzImage: %w", err)
	}
	return buf.Bytes(), nil
}

// kernelELFIndex is the content of KernelELFIndexFile.
type kernelELFIndex struct {
	Version    int         `json:"version"`
	KernelELFs []KernelELF `json:"kernel_elfs"`
}

// readKernelELFs reads the index in dir, keyed by bzImage digest. A missing
// file is an empty index.
func readKernelELFs(dir string) (map[string]KernelELF, error) {
	p := filepath.Join(dir, KernelELFIndexFile)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return map[string]KernelELF{}, nil
	}
	if err != nil {
		return nil, err
	}
	var idx kernelELFIndex
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	if idx.Version != 1 {
		return nil, fmt.Errorf("%s: version %d, this build reads 1", p, idx.Version)
	}
	m := make(map[string]KernelELF, len(idx.KernelELFs))
	for _, k := range idx.KernelELFs {
		if !bootimage.IsSHA256Hex(k.Kernel) || !bootimage.IsSHA256Hex(k.SHA256) || k.Size <= 0 {
			return nil, fmt.Errorf("%s: malformed record %+v", p, k)
		}
		m[k.Kernel] = k
	}
	return m, nil
}

// recordKernelELFs adds recs to the index in dir (replacing records of the
// same bzImage) and writes it atomically.
func recordKernelELFs(dir string, recs ...KernelELF) error {
	m, err := readKernelELFs(dir)
	if err != nil {
		// An unreadable index is replaced: the records it held are
		// re-derived and re-recorded when needed.
		m = map[string]KernelELF{}
	}
	for _, k := range recs {
		m[k.Kernel] = k
	}
	idx := kernelELFIndex{Version: 1}
	for _, k := range m {
		idx.KernelELFs = append(idx.KernelELFs, k)
	}
	slices.SortFunc(idx.KernelELFs, func(a, b KernelELF) int { return strings.Compare(a.Kernel, b.Kernel) })
	js, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(dir, KernelELFIndexFile, append(js, '\n'))
}

// writeFileAtomic writes dir/name mode 0600 (atomicfile.WriteFile),
// creating dir if needed.
func writeFileAtomic(dir, name string, data []byte) error {
	if err := atomicfile.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return atomicfile.WriteFile(filepath.Join(dir, name), data, 0o600)
}

// kernelELFResult is what kernelELF found or made.
type kernelELFResult struct {
	entry        *modcache.Entry
	rec          KernelELF
	decompressed bool
	took         time.Duration
}

// kernelELF returns the cached decompressed kernel of the bzImage module
// kmod (cached as kernel), decompressing and caching it first if needed:
//
//   - the index in the state directory records the ELF's digest for kmod:
//     the entry of that digest is used; if it is not cached but the cache
//     holds another ELF derived from kmod, or decompressing kmod again gives
//     another digest, the image is refused (ErrKernelELFMismatch);
//   - without a record, an ELF derived from kmod in this generation is used
//     and recorded, or kmod is decompressed, the ELF added to the cache
//     (checked by the cache's Check) and its digest recorded.
//
// It holds mc.elfMu: one derivation at a time, and a second caller finds
// the first one's ELF cached.
func (mc *Machine) kernelELF(ctx context.Context, kmod bootimage.Module, kernel *modcache.Entry) (kernelELFResult, error) {
	mc.elfMu.Lock()
	defer mc.elfMu.Unlock()
	var res kernelELFResult
	dir := mc.opts.StateDir
	index := filepath.Join(dir, KernelELFIndexFile)
	recs, err := readKernelELFs(dir)
	if err != nil {
		return res, fmt.Errorf("decompressed kernel index: %w", err)
	}
	rec, recorded := recs[kmod.SHA256]
	name := kernelELFName(kmod.SHA256)
	mismatch := func(format string, args ...any) error {
		return fmt.Errorf("kernel %q (sha256 %s): %w: %s; %s records sha256 %s (%d bytes): refusing the image",
			kmod.Name, kmod.SHA256, ErrKernelELFMismatch, fmt.Sprintf(format, args...), index, rec.SHA256, rec.Size)
	}
	if recorded {
		if e, err := mc.cache.Get(rec.SHA256); err == nil {
			if e.Size() != rec.Size {
				return res, mismatch("the cached decompressed kernel has %d bytes", e.Size())
			}
			res.entry, res.rec = e, rec
			return res, nil
		}
	}
	if e := cachedByName(mc.cache, name); e != nil {
		if recorded {
			return res, mismatch("the cache holds a decompressed kernel with sha256 %s (%d bytes) for it", e.Digest(), e.Size())
		}
		res.entry = e
		res.rec = KernelELF{Kernel: kmod.SHA256, SHA256: e.Digest(), Size: e.Size()}
		if err := recordKernelELFs(dir, res.rec); err != nil {
			return res, fmt.Errorf("recording the decompressed kernel: %w", err)
		}
		return res, nil
	}

	if err := ctx.Err(); err != nil {
		return res, err
	}
	t := mc.opts.Now()
	elfBytes, err := decompressKernel(kernel, kernel.Size())
	if err != nil {
		return res, fmt.Errorf("kernel %q: %w", kmod.Name, err)
	}
	sum := sha256.Sum256(elfBytes)
	res.took = mc.opts.Now().Sub(t)
	got := KernelELF{Kernel: kmod.SHA256, SHA256: hex.EncodeToString(sum[:]), Size: int64(len(elfBytes))}
	if recorded && got != rec {
		return res, mismatch("decompressing it gives sha256 %s (%d bytes)", got.SHA256, got.Size)
	}
	e, err := mc.cache.Add(ctx, got.Module(), bytes.NewReader(elfBytes))
	if err != nil {
		return res, fmt.Errorf("kernel %q: caching its decompressed kernel: %w", kmod.Name, err)
	}
	if !recorded {
		if err := recordKernelELFs(dir, got); err != nil {
			return res, fmt.Errorf("recording the decompressed kernel: %w", err)
		}
	}
	mc.log.Info("decompressed the kernel once for the segments load method", "kernel", kmod.Name,
		"kernel_sha256", kmod.SHA256, "elf_sha256", got.SHA256, "elf_bytes", got.Size, "took", res.took)
	res.entry, res.rec, res.decompressed = e, got, true
	return res, nil
}

// PrepareKernelELF makes the decompressed kernel of m's kernel cached, as a
// LoadSegments Stage of m would before loading it, so that the Stage does
// not spend the time: a generation booted with LoadSegments receives the
// ELF's digest in its handoff but not the ELF, and re-derives it from the
// carried bzImage once booted (checked against the recorded digest;
// ErrKernelELFMismatch if it differs). The kernel must be cached already.
// It reports the ELF and whether it was decompressed now, and how long
// that took. It does not wait for a Stage or BuildImage under way, nor
// they for it, unless they derive the decompressed kernel too (LoadSegments,
// BuildOptions.Segments): they then wait for it and find its ELF cached.
func (mc *Machine) PrepareKernelELF(ctx context.Context, m *bootimage.Manifest) (rec KernelELF, decompressed bool, took time.Duration, err error) {
	if m == nil {
		return rec, false, 0, fmt.Errorf("prepare decompressed kernel: %w: nil manifest", bootimage.ErrInvalid)
	}
	if mc.cache == nil {
		return rec, false, 0, errors.New("prepare decompressed kernel: no module cache: the Machine was created without one")
	}
	if err := m.Validate(); err != nil {
		return rec, false, 0, fmt.Errorf("prepare decompressed kernel of %s: %w", m.Name, err)
	}
	kmod := m.Kernel()
	kernel, err := mc.entry(kmod)
	if err != nil {
		return rec, false, 0, fmt.Errorf("prepare decompressed kernel of %s: %w", m.Name, err)
	}
	res, err := mc.kernelELF(ctx, kmod, kernel)
	if err != nil {
		return rec, false, 0, fmt.Errorf("prepare decompressed kernel of %s: %w", m.Name, err)
	}
	return res.rec, res.decompressed, res.took, nil
}

// KernelELFRecorded reports whether the state directory's index records a
// decompressed kernel for m's kernel: the generation was booted from an
// image loaded with LoadSegments (or one was staged in it), so the next
// LoadSegments Stage needs that ELF.
func KernelELFRecorded(stateDir string, m *bootimage.Manifest) bool {
	return m != nil && len(KernelELFManifest(stateDir, m).Modules) > 0
}

// cachedByName returns the cached entry known by name, or nil.
func cachedByName(c *modcache.Cache, name string) *modcache.Entry {
	for _, in := range c.List() {
		if slices.Contains(in.Names, name) {
			if e, err := c.Get(in.Digest); err == nil {
				return e
			}
		}
	}
	return nil
}

// checkHandoffKernelELFs validates a handoff's decompressed kernel records:
// well formed, at most one per kernel, each derived from a module in known
// (the manifest's digests). The ELFs themselves are never carried. Errors
// wrap ErrHandoff.
func checkHandoffKernelELFs(recs []KernelELF, known map[string]bool) error {
	seen := make(map[string]bool, len(recs))
	for _, k := range recs {
		if !bootimage.IsSHA256Hex(k.Kernel) || !bootimage.IsSHA256Hex(k.SHA256) || k.Size <= 0 {
			return fmt.Errorf("%w: malformed decompressed kernel record %+v", ErrHandoff, k)
		}
		if !known[k.Kernel] {
			return fmt.Errorf("%w: decompressed kernel %s is of kernel %s, which is not in the manifest", ErrHandoff, k.SHA256, k.Kernel)
		}
		if seen[k.Kernel] {
			return fmt.Errorf("%w: two decompressed kernel records for kernel %s", ErrHandoff, k.Kernel)
		}
		seen[k.Kernel] = true
	}
	return nil
}

// resumeKernelELFs records the handoff's decompressed kernel digests in the
// state directory's index, so that the ELF this generation derives again
// from the carried bzImage (Machine.PrepareKernelELF, or its first
// LoadSegments Stage) must have the recorded digest. A failure goes to
// State.RehydrateError, as for the modules.
func resumeKernelELFs(h *Handoff, opts ResumeOptions, st *State, log *slog.Logger) {
	if len(h.KernelELFs) == 0 {
		return
	}
	if err := recordKernelELFs(opts.StateDir, h.KernelELFs...); err != nil {
		err = fmt.Errorf("recording decompressed kernel digests: %w", err)
		log.Warn("resume: decompressed kernel", "err", err)
		if st.RehydrateError != "" {
			st.RehydrateError += "; "
		}
		st.RehydrateError += err.Error()
	}
}

// KernelELFManifest returns a manifest (for modcache.Cache.Evict) of the
// decompressed kernels recorded in the state directory's index for the
// kernels of keep, so that evicting what no kept manifest references does
// not drop them and make the next LoadSegments Stage decompress again. An
// unreadable index gives an empty manifest.
func KernelELFManifest(stateDir string, keep ...*bootimage.Manifest) *bootimage.Manifest {
	out := &bootimage.Manifest{Version: bootimage.SchemaVersion, Name: "decompressed kernels"}
	recs, err := readKernelELFs(stateDir)
	if err != nil {
		return out
	}
	for _, m := range keep {
		for _, mod := range m.Modules {
			if k, ok := recs[mod.SHA256]; ok && mod.Role == bootimage.RoleKernel {
				out.Modules = append(out.Modules, k.Module())
			}
		}
	}
	return out
}
