package fastreboot

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cpio"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/memmap"
	"github.com/fastreboot/fastreboot/pkg/rollback"
)

// HandoffVersion is the handoff format this package writes. Fields added
// later are optional and do not change it; it changes only when a reader of
// an older version would misread the record. ReadHandoff refuses versions it
// does not know.
//
// Version 2 moved the recorded memory map and the crash path's state out of
// version 1's untyped Extra map (keys "memory_map", "crash_mode",
// "crash_initrd", "crash_evidence") into Handoff.MemoryMap and
// Handoff.Crash. DecodeHandoff still reads version 1, lifting those keys
// into the typed fields, so that a generation booted by an older binary is
// adopted.
const HandoffVersion = 2

// Keys of a version 1 handoff's "extra" object that DecodeHandoff lifts into
// the typed fields.
const (
	legacyExtraMemoryMap     = "memory_map"
	legacyExtraCrashMode     = "crash_mode"
	legacyExtraCrashInitrd   = "crash_initrd"
	legacyExtraCrashEvidence = "crash_evidence"
)

// Paths inside the handoff piece, and so inside the next kernel's rootfs.
const (
	HandoffDir        = "fastreboot"
	HandoffFile       = "fastreboot/handoff.json"
	HandoffModulesDir = "fastreboot/modules"
)

// maxHandoffJSON bounds what ReadHandoff reads: a manifest with many
// modules is a few KiB.
const maxHandoffJSON = 16 << 20

// Reason says why a generation started.
type Reason string

// Reasons.
const (
	// ReasonCold: booted by the firmware, no handoff (generation 1).
	ReasonCold Reason = "cold"
	// ReasonUpdate: kexec into a new boot image.
	ReasonUpdate Reason = "update"
	// ReasonCrash: the crash path recovered from a panic.
	ReasonCrash Reason = "crash"
	// ReasonManual: an operator asked for a reboot into the same image.
	ReasonManual Reason = "manual"
	// ReasonRollback: back to the last-known-good image, after a
	// generation on trial failed (a crash, a missed deadline, a failed
	// health command) or a crash loop (see pkg/rollback).
	ReasonRollback Reason = "rollback"
)

// Valid reports whether r is one of the known reasons.
func (r Reason) Valid() bool {
	switch r {
	case ReasonCold, ReasonUpdate, ReasonCrash, ReasonManual, ReasonRollback:
		return true
	}
	return false
}

// Timeline holds the moments of the previous generation's reboot, in its
// wall clock. A zero time is unknown and omitted from JSON.
type Timeline struct {
	// StageStart is when Stage began (before reading any module).
	StageStart time.Time `json:"stage_start,omitzero"`
	// StageEnd is when the image was complete: the handoff is written last,
	// so StageEnd precedes kexec_file_load, whose duration only the
	// previous generation's StageReport knows.
	StageEnd time.Time `json:"stage_end,omitzero"`
	// RebootRequested is when the reboot was asked for. The handoff is
	// sealed into the loaded image at stage time, before anyone asks for a
	// reboot, so this is always zero in a handoff written by Stage: the
	// next generation could learn it only from memory that survives the
	// jump (pstore, a memmap= region kept across kexec), which the handoff
	// does not use yet. The field is there for such a carrier.
	RebootRequested time.Time `json:"reboot_requested,omitzero"`
}

// Handoff is the record one generation carries into the next, stored as
// fastreboot/handoff.json in the last initrd piece. Unknown JSON fields are
// ignored by readers, so later versions can add optional fields without
// changing HandoffVersion.
type Handoff struct {
	Version int `json:"version"`
	// Generation counts kernels since the cold boot, which is 1.
	Generation int      `json:"generation"`
	Reason     Reason   `json:"reason"`
	Timeline   Timeline `json:"timeline"`
	// Manifest is the boot image the new generation runs.
	Manifest bootimage.Manifest `json:"manifest"`
	// Carried lists the digests of the files in fastreboot/modules/,
	// sorted; empty when the modules were not carried.
	Carried []string `json:"carried,omitempty"`
	// CPUs lists the CPUs online in the old kernel when Stage wrote the
	// handoff (see Machine.Stage); nil when they could not be read. The
	// next generation's Resume compares it with the CPUs online then.
	CPUs *cpustop.Record `json:"cpus,omitempty"`
	// KernelELFs records the decompressed kernel of the manifest's
	// kernel when the image was staged with LoadSegments: its digest
	// only, the ELF is not carried (the next generation derives it again
	// from the carried bzImage, outside the downtime; see
	// Machine.PrepareKernelELF).
	KernelELFs []KernelELF `json:"kernel_elfs,omitempty"`
	// MemoryMap is the firmware memory map recorded while the system was
	// healthy (StageOptions.MemoryMap): after a crash the running kernel
	// sees a restricted map, and every later generation needs the
	// recorded one (on its command line, and as LoadSegments' e820 table).
	MemoryMap memmap.Map `json:"memory_map,omitempty"`
	// Crash is the crash path's state (StageOptions.Crash); nil when the
	// crash path was never armed and no crash is known.
	Crash *HandoffCrash `json:"crash,omitempty"`
	// Origin is the staged manifest's file and, when it was signed, its
	// signed bytes (StageOptions.Origin); nil when neither is known. Its
	// signed manifest names the same modules as Manifest, whose command
	// line fastreboot extended.
	Origin *ManifestOrigin `json:"origin,omitempty"`
	// Rollback is the boot assessment the next generation runs under
	// (StageOptions.Rollback): last-known-good, the trial, the crash
	// count, the history; nil when none was kept.
	Rollback *rollback.State `json:"rollback,omitempty"`
	// Kept, when set, says that the modules were written to the kept
	// memory region instead of fastreboot/modules/ (Carried is then
	// empty): which region, and which index (CarryKept).
	Kept *HandoffKept `json:"kept,omitempty"`
}

// HandoffCrash is the crash path's state a handoff carries, so that the
// next generation re-arms the same way and knows the last crash.
type HandoffCrash struct {
	// Mode is the armed crash mode ("direct" or "two-stage").
	Mode crashhandler.Mode `json:"mode,omitempty"`
	// Initrd is the crash image's initrd choice ("image" or "minimal"),
	// so that a re-arm after a crash builds the same.
	Initrd string `json:"initrd,omitempty"`
	// Evidence is what is known of the last crash; nil if none.
	Evidence *crashhandler.Evidence `json:"evidence,omitempty"`
	// KernelELFPages, in a two-stage crash image, says where production's
	// decompressed kernel lay in the physical memory of the kernel that
	// armed it, so that the crash stage can load it from there
	// (MappedKernelELF); nil when it was not cached or could not be
	// pinned (the crash stage then loads the compressed kernel).
	KernelELFPages *KernelELFPages `json:"kernel_elf_pages,omitempty"`
}

// handoffV1 is the part of a version 1 handoff that version 2 reads
// differently: its untyped extra fields.
type handoffV1 struct {
	Extra map[string]json.RawMessage `json:"extra"`
}

// liftV1 moves the known keys of a version 1 handoff's extra into h's
// typed fields. A key that does not decode is an error naming it.
func liftV1(h *Handoff, b []byte) error {
	var v1 handoffV1
	if err := json.Unmarshal(b, &v1); err != nil {
		return err
	}
	var c HandoffCrash
	for key, dst := range map[string]any{
		legacyExtraMemoryMap:     &h.MemoryMap,
		legacyExtraCrashMode:     &c.Mode,
		legacyExtraCrashInitrd:   &c.Initrd,
		legacyExtraCrashEvidence: &c.Evidence,
	} {
		if raw, ok := v1.Extra[key]; ok {
			if err := json.Unmarshal(raw, dst); err != nil {
				return fmt.Errorf("version 1 extra %q: %w", key, err)
			}
		}
	}
	if c != (HandoffCrash{}) {
		h.Crash = &c
	}
	return nil
}

// Blob is a module's content as the handoff carries it; *modcache.Entry is
// one.
type Blob interface {
	io.ReaderAt
	// Size is the content's length in bytes.
	Size() int64
	// Digest is the lowercase SHA-256 hex of the content; it names the
	// file in fastreboot/modules/.
	Digest() string
}

// WriteHandoffPiece writes the handoff as one uncompressed newc cpio archive
// to w: the directories fastreboot/ and fastreboot/modules/, then one file
// fastreboot/modules/<digest> per blob (each blob's bytes streamed once from
// its ReaderAt into w), then fastreboot/handoff.json, then the trailer.
// The archive's length is a multiple of 4, so more pieces could follow.
//
// It sets h.Version to HandoffVersion and h.Carried to the sorted, unique
// digests of blobs before encoding h. A blob whose digest is not 64
// lowercase hex digits (it becomes a file name), or that is larger than
// newc's 4 GiB limit, or that reads short, is an error naming it. It returns
// the number of bytes written.
func WriteHandoffPiece(w io.Writer, h *Handoff, blobs []Blob) (int64, error) {
	seen := make(map[string]bool, len(blobs))
	var unique []Blob
	for _, b := range blobs {
		d := b.Digest()
		if !bootimage.IsSHA256Hex(d) {
			return 0, fmt.Errorf("handoff: module digest %q is not 64 lowercase hex digits", d)
		}
		if b.Size() < 0 || b.Size() > math.MaxUint32 {
			return 0, fmt.Errorf("handoff: module %s: size %d does not fit a newc cpio record", d, b.Size())
		}
		if !seen[d] {
			seen[d] = true
			unique = append(unique, b)
		}
	}
	slices.SortFunc(unique, func(a, b Blob) int { return strings.Compare(a.Digest(), b.Digest()) })
	h.Version = HandoffVersion
	h.Carried = nil
	for _, b := range unique {
		h.Carried = append(h.Carried, b.Digest())
	}
	js, err := json.MarshalIndent(h, "", "  ")
	if err != nil {
		return 0, fmt.Errorf("handoff: encode: %w", err)
	}
	js = append(js, '\n')

	cw := &countWriter{w: w}
	rw := cpio.Newc.Writer(cw)
	ino := uint64(1)
	// The next generation's root (its rootfs) gets these files: only root
	// may read them (the carried modules and the handoff may hold what
	// only root should read: the crash log among the evidence).
	dir := func(name string) cpio.Record {
		r := cpio.Directory(name, 0o700)
		r.Ino, r.NLink = ino, 2
		ino++
		return r
	}
	recs := []cpio.Record{dir(HandoffDir), dir(HandoffModulesDir)}
	for _, b := range unique {
		recs = append(recs, cpio.Record{
			ReaderAt: io.NewSectionReader(b, 0, b.Size()),
			Info: cpio.Info{
				Ino:      ino,
				Name:     HandoffModulesDir + "/" + b.Digest(),
				Mode:     cpio.S_IFREG | 0o400,
				NLink:    1,
				FileSize: uint64(b.Size()),
			},
		})
		ino++
	}
	js0 := cpio.StaticRecord(js, cpio.Info{Ino: ino, Name: HandoffFile, Mode: cpio.S_IFREG | 0o600, NLink: 1})
	recs = append(recs, js0)
	for _, r := range recs {
		if err := rw.WriteRecord(r); err != nil {
			return cw.n, fmt.Errorf("handoff: write %s: %w", r.Name, err)
		}
	}
	if err := cpio.WriteTrailer(rw); err != nil {
		return cw.n, fmt.Errorf("handoff: write trailer: %w", err)
	}
	return cw.n, nil
}

// DecodeHandoff parses and checks a handoff.json document: known version,
// valid manifest, carried digests well formed and belonging to the manifest.
// Errors wrap ErrHandoff.
func DecodeHandoff(r io.Reader) (*Handoff, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxHandoffJSON+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read: %v", ErrHandoff, err)
	}
	if len(b) > maxHandoffJSON {
		return nil, fmt.Errorf("%w: larger than %d bytes", ErrHandoff, maxHandoffJSON)
	}
	var h Handoff
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&h); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrHandoff, err)
	}
	if h.Version < 1 || h.Version > HandoffVersion {
		return nil, fmt.Errorf("%w: version %d, this build reads 1 to %d", ErrHandoff, h.Version, HandoffVersion)
	}
	if h.Version == 1 {
		h.MemoryMap, h.Crash = nil, nil // version 1 had no such fields
		if err := liftV1(&h, b); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrHandoff, err)
		}
	}
	if h.Generation < 2 {
		return nil, fmt.Errorf("%w: generation %d (a handoff starts generation 2 or later)", ErrHandoff, h.Generation)
	}
	if !h.Reason.Valid() || h.Reason == ReasonCold {
		return nil, fmt.Errorf("%w: reason %q", ErrHandoff, h.Reason)
	}
	if err := h.Manifest.Validate(); err != nil {
		return nil, fmt.Errorf("%w: manifest: %w", ErrHandoff, err)
	}
	inManifest := make(map[string]bool, len(h.Manifest.Modules))
	for _, m := range h.Manifest.Modules {
		inManifest[m.SHA256] = true
	}
	if err := checkHandoffKernelELFs(h.KernelELFs, inManifest); err != nil {
		return nil, err
	}
	if h.Crash != nil && h.Crash.KernelELFPages != nil {
		if err := h.Crash.KernelELFPages.check(inManifest); err != nil {
			return nil, err
		}
	}
	if h.Kept != nil {
		if err := h.Kept.check(); err != nil {
			return nil, err
		}
	}
	// A Stage also carries the modules of the rollback state's
	// last-known-good and fallback images (carriable).
	carriable := make(map[string]bool)
	for _, m := range h.carriable() {
		carriable[m.SHA256] = true
	}
	for _, d := range h.Carried {
		if !bootimage.IsSHA256Hex(d) {
			return nil, fmt.Errorf("%w: carried digest %q is not 64 lowercase hex digits", ErrHandoff, d)
		}
		if !carriable[d] {
			return nil, fmt.Errorf("%w: carried module %s is not in the manifest or the rollback state's good images", ErrHandoff, d)
		}
	}
	return &h, nil
}

// HandoffRunDir is where a distribution's initramfs moves the handoff
// before switch_root (the initramfs root, and the handoff with it, is freed
// then; /run is moved into the real root): the fastreboot initramfs-tools
// boot script moves root/fastreboot to root/run/fastreboot/handoff, so the
// daemon started by systemd in the real root finds it there (next to, not
// inside, the state directory's files: DefaultStateDir is /run/fastreboot).
const HandoffRunDir = "run/fastreboot/handoff"

// FindHandoff returns the directory under root that holds this
// generation's handoff (handoff.json and modules/): root/fastreboot, where
// the kernel unpacks it (an initramfs system, or a program run in the
// initramfs), else root/run/fastreboot/handoff (HandoffRunDir: after
// switch_root).
// With neither it returns root/fastreboot and an error wrapping
// ErrNoHandoff.
//
// root/fastreboot wins when both exist: a program in the initramfs (a crash
// kernel's crash recover) reads the handoff it booted with.
func FindHandoff(root string) (string, error) {
	first := filepath.Join(root, HandoffDir)
	for _, dir := range []string{first, filepath.Join(root, HandoffRunDir)} {
		if _, err := os.Lstat(filepath.Join(dir, handoffBase)); err == nil {
			return dir, nil
		}
	}
	return first, fmt.Errorf("%s: %w", filepath.Join(root, HandoffFile), ErrNoHandoff)
}

// handoffBase is the handoff's file name in its directory.
const handoffBase = "handoff.json"

// ReadHandoff reads the handoff of this generation: root/fastreboot/handoff.json,
// as unpacked by the kernel from the handoff piece, or
// root/run/fastreboot/handoff/handoff.json, where an initramfs moved it before
// switch_root (FindHandoff). It returns an error wrapping ErrNoHandoff if
// neither exists (a cold boot), or ErrHandoff if it cannot be used.
func ReadHandoff(root string) (*Handoff, error) {
	dir, err := FindHandoff(root)
	if err != nil {
		return nil, err
	}
	p := filepath.Join(dir, handoffBase)
	f, err := os.Open(p)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: %w", p, ErrNoHandoff)
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	h, err := DecodeHandoff(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", p, err)
	}
	return h, nil
}

// carriable lists the modules a handoff may carry: its manifest's, then
// those of the rollback state's last-known-good and fallback images.
func (h *Handoff) carriable() []bootimage.Module {
	mods := slices.Clone(h.Manifest.Modules)
	if r := h.Rollback; r != nil {
		for _, im := range []*rollback.Image{r.Good, r.Fallback} {
			if im != nil {
				mods = append(mods, im.Manifest.Modules...)
			}
		}
	}
	return mods
}

// CarriedManifest returns the part of h.Manifest whose modules were carried,
// the manifest to rehydrate from fastreboot/modules/.
func (h *Handoff) CarriedManifest() *bootimage.Manifest {
	carried := make(map[string]bool, len(h.Carried))
	for _, d := range h.Carried {
		carried[d] = true
	}
	m := h.Manifest
	m.Modules = nil
	for _, mod := range h.carriable() {
		if carried[mod.SHA256] {
			carried[mod.SHA256] = false // once
			m.Modules = append(m.Modules, mod)
		}
	}
	return &m
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
