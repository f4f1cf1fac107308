package crashhandler

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Image is the crash image to arm: the kernel and the assembled initrd as
// files (the sealed memfds of the module cache), and the production command
// line Arm derives the crash command line from.
type Image struct {
	Kernel *os.File
	// Initrd may be nil (loaded with KEXEC_FILE_NO_INITRAMFS).
	Initrd *os.File
	// Cmdline is the production command line (e.g. the manifest's).
	Cmdline string
	// Manifest, if set, names the image in the state file and its module
	// digests identify it.
	Manifest *bootimage.Manifest
	// Digest identifies the image when there is no manifest; if both are
	// empty Arm hashes the kernel and initrd.
	Digest string
	// InitrdUnpackedBytes: the initrd's unpacked size if known (sizing); 0
	// estimates it.
	InitrdUnpackedBytes int64
	// ReloadInitrdBytes is the initrd a two-stage crash kernel assembles
	// to stage production again, when it differs from Initrd (a minimal
	// crash initramfs); 0 means Initrd's size.
	ReloadInitrdBytes int64
	// Segments is the same image prepared for kexec_load (the kernel
	// decompressed ahead of time), used with Options.Load LoadSegments.
	// Kernel and Initrd are still needed: they are what Arm falls back to
	// under lockdown.
	Segments SegmentsImage
}

// Options configure Arm, Disarm and Status. The zero value works on the real
// system.
type Options struct {
	// Root is where /proc and /sys are read ("/" when empty).
	Root string
	// StateDir holds the state file (DefaultStateDir when empty).
	StateDir string
	// Loader performs kexec_file_load (KexecFileLoader when nil).
	Loader Loader
	// Logger gets debug and warning messages (discarded when nil).
	Logger *slog.Logger
	// Mode is the recovery shape (ModeTwoStage when empty).
	Mode Mode
	// Cmdline tunes the crash command line. If Cmdline.MemoryMap is nil,
	// Arm reads Root/sys/firmware/memmap. In a generation kexec'd after a
	// crash that directory shows the restricted crash map: pass the map
	// recorded while healthy (carried by the handoff) instead; Arm refuses
	// a firmware map with less RAM than MemTotal.
	Cmdline CmdlineOptions
	// Faults choose the sysctls routed to panic.
	Faults FaultOptions
	// Load is the arming system call: LoadFile ("" too) or LoadSegments
	// (needs Image.Segments; falls back to LoadFile under lockdown, see
	// LoadSegments).
	Load LoadMethod
	// Now stamps the state (time.Now when nil).
	Now func() time.Time
	// AllowNoRearm arms even when the generation booted after a crash
	// could not re-arm (ErrNoRearm): the problem is logged and recorded in
	// State.Warnings instead.
	AllowNoRearm bool
}

func (o Options) withDefaults() Options {
	if o.Root == "" {
		o.Root = "/"
	}
	if o.StateDir == "" {
		o.StateDir = DefaultStateDir
	}
	if o.Loader == nil {
		o.Loader = KexecFileLoader{}
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Mode == "" {
		o.Mode = ModeTwoStage
	}
	if o.Load == "" {
		o.Load = LoadFile
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Arm loads img as the crash image with kexec_file_load(...,
// KEXEC_FILE_ON_CRASH), or with Options.Load LoadSegments with
// kexec_load(..., KEXEC_ON_CRASH) of Image.Segments, and routes faults to
// panic. LoadSegments falls back to kexec_file_load, logs a warning and
// records why in State.LoadFallback when lockdown forbids kexec_load
// (KexecLoadForbidden), kexec_load returns EPERM, or it fails after the
// kernel freed the armed image (ErrKexecLoadFailed); the file image must
// then fit the reservation too.
//
// Before anything changes it checks the image (kernel present, a bzImage
// with init_size, non-empty initrd), the reservation (ErrNoReservation,
// ErrReservationTooSmall: the error says which crashkernel= to use, see
// RequiredReservation), the memory map (direct mode), the command line
// length, and that the production generation booted after a crash could
// re-arm: its command line (NextCmdline) must ask for a crashkernel= of at
// least what this image needs (ErrNoRearm, see CheckRearm; give img.Cmdline
// the running crashkernel= with InheritCrashkernel). Then it sets the
// sysctls, calls the loader and writes the state file.
//
// Nothing is half-armed: Arm never unloads first, and on any failure
// before the load the previously armed image (if any) stays armed and the
// sysctls changed by this call are restored. The kernel itself frees the
// armed crash image once a load passes its permission checks (both
// kexec_file_load and kexec_load: the new image goes into the same
// reservation), so a load that fails after that leaves nothing armed; a
// failed LoadSegments load is then followed by the file load. Only a
// failure to write the state file after a successful load leaves the new
// image armed (the error says so).
func Arm(img Image, opts Options) (*State, error) {
	o := opts.withDefaults()
	p, err := o.plan(img)
	if err != nil {
		return nil, fmt.Errorf("arming crash image: %w", err)
	}
	if err := p.reservationErr(); err != nil {
		return nil, fmt.Errorf("arming crash image: %w", err)
	}
	if p.cmdlineErr != nil {
		return nil, fmt.Errorf("arming crash image: %w", p.cmdlineErr)
	}
	var warnings []string
	if p.rearmErr != nil {
		if !o.AllowNoRearm {
			return nil, fmt.Errorf("arming crash image: %w", p.rearmErr)
		}
		o.Logger.Warn("arming a crash path the generation after a crash could not re-arm", "err", p.rearmErr)
		warnings = append(warnings, p.rearmErr.Error())
	}
	mode, cmdline, need, have, mm := p.mode, p.cmdline, p.need, p.have, p.mm
	kernelBytes, initrdBytes := p.kernelBytes, p.initrdBytes
	method, fallback, fileNeed := p.method, p.fallback, p.fileNeed

	previous, changed, err := o.routeFaultsKeeping()
	if err != nil {
		return nil, fmt.Errorf("arming crash image: %w", err)
	}

	o.Logger.Debug("loading crash image", "mode", mode, "load", method, "cmdline", cmdline, "need", need.Total, "reservation", have)
	if method == LoadSegments {
		err := img.Segments.LoadOnCrash(cmdline)
		switch {
		case errors.Is(err, ErrKexecLoadForbidden), errors.Is(err, ErrKexecLoadFailed):
			fallback = err.Error()
			o.Logger.Warn("kexec_load refused or failed: arming the crash image with kexec_file_load instead (the purgatory hashes it and the kernel decompresses itself at panic)", "err", err)
			method, need = LoadFile, fileNeed
			if have < need.Total {
				err = fmt.Errorf("arming crash image with kexec_file_load after kexec_load failed (%s): %w", fallback, &ReservationError{Have: have, Need: need})
				return nil, errors.Join(err, restoreFaults(o.Root, previous, changed))
			}
		case err != nil:
			err = fmt.Errorf("arming crash image: kexec_load(ON_CRASH): %w", err)
			return nil, errors.Join(err, restoreFaults(o.Root, previous, changed))
		}
	}
	if method == LoadFile {
		flags := kexecFileOnCrash
		if img.Initrd == nil {
			flags |= kexecFileNoInitramfs
		}
		if err := o.Loader.FileLoad(img.Kernel, img.Initrd, cmdline, flags); err != nil {
			err = fmt.Errorf("arming crash image: kexec_file_load(ON_CRASH): %w", classifyLoadError(err))
			return nil, errors.Join(err, restoreFaults(o.Root, previous, changed))
		}
	}

	st := &State{
		Version:          stateVersion,
		ArmedAt:          o.Now().UTC(),
		Mode:             mode,
		Load:             method,
		LoadFallback:     fallback,
		Cmdline:          cmdline,
		KernelBytes:      kernelBytes,
		InitrdBytes:      initrdBytes,
		ImageBytes:       kernelBytes + initrdBytes,
		Sizing:           need,
		ReservationBytes: have,
		Previous:         previous,
		MemoryMap:        mm,
		Warnings:         warnings,
	}
	if img.Manifest != nil {
		st.Name = img.Manifest.Name
	}
	if st.Digest, err = imageDigest(img); err != nil {
		o.Logger.Warn("crash image armed without a digest", "err", err)
	}
	if err := writeState(o.StateDir, st); err != nil {
		return st, fmt.Errorf("crash image armed, but its state was not recorded: %w", err)
	}
	return st, nil
}

// routeFaultsKeeping routes o.Faults to panic, keeping the values from
// before the first Arm that the state file records (only those of the
// sysctls Arm manages; others are logged and ignored). It returns those
// values with the ones it recorded now, and the sysctls it changed (what a
// failure after it restores). A routing error restores what it changed.
func (o Options) routeFaultsKeeping() (previous map[string]string, changed []string, err error) {
	prev, err := ReadState(o.StateDir)
	if err != nil {
		return nil, nil, fmt.Errorf("reading the crash state (remove the state file if it is damaged): %w", err)
	}
	previous = map[string]string{}
	if prev != nil {
		kept, ignored := managedPrevious(prev.Previous)
		for _, ig := range ignored {
			o.Logger.Warn("crash state: ignoring a recorded sysctl value", "sysctl", ig, "state", statePath(o.StateDir))
		}
		maps.Copy(previous, kept)
	}
	changed, err = routeFaults(o.Root, o.Faults.names(), previous)
	if err != nil {
		return nil, nil, errors.Join(err, restoreFaults(o.Root, previous, changed))
	}
	return previous, changed, nil
}

// RouteToFirmware is the crash path of a crash loop that leaves for the
// firmware: no crash image (one that is loaded is unloaded), while the
// fault-routing sysctls still route faults to a panic as Arm sets them
// (opts.Faults), so that an oops, a hung task or a lockup still ends in a
// panic, which reboots through the firmware when kernel.panic is set
// (EnsurePanicReboot). The state file records it (State.Firmware) with the
// sysctls' values from before the first Arm: Disarm writes them back, and
// a later Arm keeps them. If the unload fails, the sysctls this call
// changed are restored and the armed image stays.
func RouteToFirmware(opts Options) (*State, error) {
	o := opts.withDefaults()
	previous, changed, err := o.routeFaultsKeeping()
	if err != nil {
		return nil, fmt.Errorf("routing panics to the firmware: %w", err)
	}
	if err := o.Loader.FileLoad(nil, nil, "", kexecFileUnload|kexecFileOnCrash); err != nil {
		err = fmt.Errorf("routing panics to the firmware: unloading the crash image: kexec_file_load(UNLOAD|ON_CRASH): %w", classifyLoadError(err))
		return nil, errors.Join(err, restoreFaults(o.Root, previous, changed))
	}
	st := &State{Version: stateVersion, ArmedAt: o.Now().UTC(), Firmware: true, Previous: previous}
	if err := writeState(o.StateDir, st); err != nil {
		return st, fmt.Errorf("crash image unloaded and faults routed to panic, but the state was not recorded: %w", err)
	}
	return st, nil
}

// Disarm unloads the crash image (kexec_file_load with
// KEXEC_FILE_UNLOAD|KEXEC_FILE_ON_CRASH) and writes back the sysctl values
// Arm recorded: only those of the fault-routing sysctls it manages
// (DefaultFaults, kernel.panic_on_warn, kernel.panic_on_rcu_stall) with an
// integer value; any other entry of the state file is left alone, and
// the returned warnings name each one (also logged). Disarming when nothing
// is armed succeeds. If the unload fails, nothing else changes.
func Disarm(opts Options) (warnings []string, err error) {
	o := opts.withDefaults()
	st, stErr := ReadState(o.StateDir)
	if err := o.Loader.FileLoad(nil, nil, "", kexecFileUnload|kexecFileOnCrash); err != nil {
		return nil, fmt.Errorf("disarming crash image: kexec_file_load(UNLOAD|ON_CRASH): %w", classifyLoadError(err))
	}
	if stErr != nil {
		return nil, fmt.Errorf("crash image unloaded, sysctls not restored: %w", stErr)
	}
	if st != nil {
		// Only the fault-routing sysctls Arm manages are written back,
		// whatever else the state file names.
		kept, ignored := managedPrevious(st.Previous)
		for _, ig := range ignored {
			o.Logger.Warn("disarm: not restoring a sysctl the crash state names", "sysctl", ig, "state", statePath(o.StateDir))
			warnings = append(warnings, fmt.Sprintf("not restored: %s, named in %s", ig, statePath(o.StateDir)))
		}
		if err := restoreAllFaults(o.Root, kept); err != nil {
			return warnings, fmt.Errorf("crash image unloaded, restoring sysctls: %w", err)
		}
	}
	return warnings, removeState(o.StateDir)
}

// StatusReport describes the crash path of the running kernel.
type StatusReport struct {
	// Supported: the kernel has crash kexec (/sys/kernel/kexec_crash_size).
	Supported bool `json:"supported"`
	// Armed: a crash image is loaded (/sys/kernel/kexec_crash_loaded).
	Armed bool `json:"armed"`
	// ReservationBytes is /sys/kernel/kexec_crash_size.
	ReservationBytes int64 `json:"reservation_bytes"`
	// Mode of the image Arm recorded ("" if none).
	Mode Mode `json:"mode,omitempty"`
	// State is what Arm recorded; nil if nothing was armed through this
	// package since boot. A State with Armed false means the image was
	// unloaded behind our back.
	State *State `json:"state,omitempty"`
	// Faults reports each fault-routing sysctl.
	Faults []FaultStatus `json:"faults"`
}

// Status reads the crash path state from Root/sys/kernel, Root/proc/sys and
// the state file.
func Status(opts Options) (StatusReport, error) {
	o := opts.withDefaults()
	var r StatusReport
	size, err := readCrashSize(o.Root)
	switch {
	case errors.Is(err, ErrNotSupported):
	case err != nil:
		return r, err
	default:
		r.Supported, r.ReservationBytes = true, size
	}
	loaded, err := readSysFile(o.Root, "sys/kernel/kexec_crash_loaded")
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return r, err
	}
	r.Armed = loaded == "1"
	if r.State, err = ReadState(o.StateDir); err != nil {
		return r, err
	}
	var previous map[string]string
	if r.State != nil {
		r.Mode, previous = r.State.Mode, r.State.Previous
	}
	r.Faults, err = faultStatus(o.Root, previous)
	return r, err
}

func (o Options) memoryMap() (memmap.Map, error) {
	if len(o.Cmdline.MemoryMap) > 0 {
		if o.Cmdline.MemoryMap.RAMBytes() == 0 {
			return nil, fmt.Errorf("%w: the given memory map has no System RAM", memmap.ErrNoFirmwareMap)
		}
		return o.Cmdline.MemoryMap, nil
	}
	mm, err := memmap.ReadFirmware(o.Root)
	if err != nil {
		return nil, err
	}
	if total, err := memTotal(o.Root); err == nil && mm.RAMBytes() < total {
		return nil, fmt.Errorf("%w: %s shows %s of RAM, less than MemTotal %s: this kernel was kexec'd after a crash and sees the crash kernel's map; pass the map recorded before the crash",
			memmap.ErrNoFirmwareMap, filepath.Join(o.Root, "sys/firmware/memmap"), mib(int64(mm.RAMBytes())), mib(int64(total)))
	}
	return mm, nil
}

// readCrashSize reads /sys/kernel/kexec_crash_size (bytes). Absent: the
// kernel has no crash kexec support.
func readCrashSize(root string) (int64, error) {
	s, err := readSysFile(root, "sys/kernel/kexec_crash_size")
	if errors.Is(err, fs.ErrNotExist) {
		return 0, fmt.Errorf("crash kexec: %w: %w", ErrNotSupported, err)
	}
	if err != nil {
		return 0, err
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("%s: %q is not a size", filepath.Join(root, "sys/kernel/kexec_crash_size"), s)
	}
	return n, nil
}

func readSysFile(root, rel string) (string, error) {
	b, err := os.ReadFile(filepath.Join(root, rel))
	if err != nil {
		return "", fmt.Errorf("reading %s: %w", rel, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// memTotal reads MemTotal from root/proc/meminfo, in bytes.
func memTotal(root string) (uint64, error) {
	f, err := os.Open(filepath.Join(root, "proc/meminfo"))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "MemTotal:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				return 0, fmt.Errorf("meminfo MemTotal %q: %w", v, err)
			}
			return kb << 10, nil
		}
	}
	return 0, fmt.Errorf("meminfo has no MemTotal")
}

func fileSize(f *os.File, what string) (int64, error) {
	fi, err := f.Stat()
	if err != nil {
		return 0, fmt.Errorf("%w: %s %s: %w", ErrInvalidImage, what, f.Name(), err)
	}
	if fi.Size() == 0 {
		return 0, fmt.Errorf("%w: %s %s is empty", ErrInvalidImage, what, f.Name())
	}
	return fi.Size(), nil
}

// imageDigest identifies the image: SHA-256 over the manifest's module
// digests in order, else Image.Digest, else SHA-256 over kernel then initrd.
func imageDigest(img Image) (string, error) {
	h := sha256.New()
	switch {
	case img.Manifest != nil && len(img.Manifest.Modules) > 0:
		for _, m := range img.Manifest.Modules {
			fmt.Fprintf(h, "%s %s\n", m.Role, m.SHA256)
		}
	case img.Digest != "":
		return img.Digest, nil
	default:
		for _, f := range []*os.File{img.Kernel, img.Initrd} {
			if f == nil {
				continue
			}
			if _, err := io.Copy(h, io.NewSectionReader(f, 0, 1<<62)); err != nil {
				return "", fmt.Errorf("hashing %s: %w", f.Name(), err)
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// loadMethod returns the method Arm uses and, when it is LoadFile instead
// of the LoadSegments asked for, why. LoadSegments needs Image.Segments
// (unless lockdown forbids kexec_load anyway).
func (o Options) loadMethod(img Image) (LoadMethod, string, error) {
	switch o.Load {
	case LoadFile:
		return LoadFile, "", nil
	case LoadSegments:
	default:
		_, err := ParseLoadMethod(string(o.Load))
		return "", "", err
	}
	if err := KexecLoadForbidden(o.Root); err != nil {
		o.Logger.Warn("lockdown forbids kexec_load: arming the crash image with kexec_file_load instead (the purgatory hashes it and the kernel decompresses itself at panic)", "err", err)
		return LoadFile, err.Error(), nil
	}
	if img.Segments == nil {
		return "", "", fmt.Errorf("%w: the segments load method needs the image prepared for kexec_load (Image.Segments)", ErrInvalidImage)
	}
	return LoadSegments, "", nil
}
