package crashhandler

import (
	"errors"
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// plan is what Arm checks and would load, worked out before anything
// changes. Arm and EstimateImage share it, so an estimate is the arm that
// would happen.
type plan struct {
	mode Mode
	// method is the load method Arm tries first, fallback why it is not
	// the one asked for ("" if it is).
	method                   LoadMethod
	fallback                 string
	hdr                      KernelHeader
	kernelBytes, initrdBytes int64
	mm                       memmap.Map
	// need is what method needs of the reservation, fileNeed what the
	// file method needs (the fallback when kexec_load fails).
	need, fileNeed Sizing
	// have is /sys/kernel/kexec_crash_size; haveErr says why it is unknown.
	have    int64
	haveErr error
	// cmdline is the crash command line, cmdlineErr its problem.
	cmdline    string
	cmdlineErr error
	// next is the production command line booted after a crash, nextCK
	// what it asks for, rearmErr why that generation could not re-arm.
	next     string
	nextCK   Crashkernel
	rearmErr error
}

// plan reads the image and the system. Its error is bad input (the image,
// the mode, direct mode without a memory map); the reservation, the
// command line length and the re-arm check are left in the plan for the
// caller to judge.
func (o Options) plan(img Image) (*plan, error) {
	p := &plan{mode: o.Mode}
	if err := p.mode.valid(); err != nil {
		return nil, err
	}
	var err error
	if p.method, p.fallback, err = o.loadMethod(img); err != nil {
		return nil, err
	}
	if img.Kernel == nil {
		return nil, fmt.Errorf("%w: no kernel file", ErrInvalidImage)
	}
	if p.kernelBytes, err = fileSize(img.Kernel, "kernel"); err != nil {
		return nil, err
	}
	if p.hdr, err = ReadKernelHeader(img.Kernel); err != nil {
		return nil, fmt.Errorf("kernel %s: %w", img.Kernel.Name(), err)
	}
	if img.Initrd != nil {
		if p.initrdBytes, err = fileSize(img.Initrd, "initrd"); err != nil {
			return nil, err
		}
	}
	if p.mm, err = o.memoryMap(); err != nil {
		if p.mode == ModeDirect {
			return nil, fmt.Errorf("direct mode: %w", err)
		}
		o.Logger.Warn("no firmware memory map recorded with the crash state", "err", err)
	}

	var cpus, possible int
	if topo, err := cpustop.ReadTopology(cpustop.Options{Root: o.Root}); err != nil {
		o.Logger.Warn("sizing the reservation for one CPU", "err", err)
	} else {
		cpus, possible = len(topo.Present), len(topo.Possible)
	}
	size := ImageSize{
		KernelBytes:         p.kernelBytes,
		InitrdBytes:         p.initrdBytes,
		KernelInitSize:      p.hdr.InitSize,
		KernelAlign:         p.hdr.Alignment,
		InitrdUnpackedBytes: img.InitrdUnpackedBytes,
		ReloadInitrdBytes:   img.ReloadInitrdBytes,
		// The two-stage crash kernel reloads production with
		// kexec_load, or with kexec_file_load under lockdown.
		ReloadWithFile: KexecLoadForbidden(o.Root) != nil,
		CPUs:           cpus,
		PossibleCPUs:   possible,
	}
	p.fileNeed = RequiredReservation(size, p.mode)
	p.need = p.fileNeed
	if p.method == LoadSegments {
		p.need = SegmentsSizing(img.Segments.ReservationBytes(p.mode, max(possible, 1)), size, p.mode)
	}
	p.have, p.haveErr = readCrashSize(o.Root)

	copts := o.Cmdline
	copts.MemoryMap = p.mm
	copts.PossibleCPUs = possible
	p.cmdline = CrashCmdline(img.Cmdline, p.mode, copts)
	p.cmdlineErr = checkCrashCmdline(p.cmdline, p.hdr)

	p.next = NextCmdline(p.cmdline, p.mode, p.mm)
	ram := o.ramBytes(p.mm)
	p.nextCK, _ = ParseCrashkernel(p.next, ram)
	p.rearmErr = CheckRearm(p.next, p.need, ram, p.have)
	return p, nil
}

// reservationErr is the problem of the current reservation, if any.
func (p *plan) reservationErr() error {
	if p.haveErr != nil {
		return p.haveErr
	}
	if p.have < p.need.Total {
		return &ReservationError{Have: p.have, Need: p.need}
	}
	return nil
}

// ramBytes is the RAM a crashkernel= range form is evaluated against: the
// memory map's, else MemTotal (a little less than the kernel counts), else 0.
func (o Options) ramBytes(mm memmap.Map) uint64 {
	if ram := mm.RAMBytes(); ram > 0 {
		return ram
	}
	ram, _ := memTotal(o.Root)
	return ram
}

// Estimate is what an image needs from the crash reservation and what it
// finds, worked out without loading anything (like kdumpctl estimate).
type Estimate struct {
	Mode Mode `json:"mode"`
	// Name is the image's manifest name, if any.
	Name        string `json:"name,omitempty"`
	KernelBytes int64  `json:"kernel_bytes"`
	InitrdBytes int64  `json:"initrd_bytes"`
	// Sizing is RequiredReservation's answer; Breakdown its parts.
	Sizing    Sizing `json:"sizing"`
	Breakdown string `json:"breakdown"`
	// Crashkernel is the word to put on the kernel command line.
	Crashkernel string `json:"crashkernel"`
	// Supported: the kernel has crash kexec; ReservationBytes is the
	// current reservation (/sys/kernel/kexec_crash_size) and Fits says
	// whether the image fits in it.
	Supported        bool  `json:"supported"`
	ReservationBytes int64 `json:"reservation_bytes"`
	Fits             bool  `json:"fits"`
	// Cmdline is the crash command line; NextCmdline the production
	// command line booted after a crash (see NextCmdline) and
	// NextCrashkernel the reservation it asks for.
	Cmdline         string      `json:"cmdline"`
	NextCmdline     string      `json:"next_cmdline"`
	NextCrashkernel Crashkernel `json:"next_crashkernel"`
	// Problems are the reasons Arm would refuse the image now (or, for the
	// armed image, why the generation after a crash could not re-arm).
	Problems []string `json:"problems,omitempty"`
}

func newEstimate(mode Mode, need Sizing) *Estimate {
	return &Estimate{
		Mode: mode, Sizing: need, Breakdown: need.Breakdown(),
		Crashkernel: fmt.Sprintf("crashkernel=%dM", mibCeil(need.Total)),
	}
}

// EstimateImage works out, as Arm would and without changing anything,
// what img needs in opts.Mode: the reservation (RequiredReservation), the
// crash command line, the production command line booted after a crash
// and every problem Arm would refuse it for. Its error is bad input (the
// image, the mode, direct mode without a memory map).
func EstimateImage(img Image, opts Options) (*Estimate, error) {
	o := opts.withDefaults()
	p, err := o.plan(img)
	if err != nil {
		return nil, fmt.Errorf("estimating crash image: %w", err)
	}
	e := newEstimate(p.mode, p.need)
	if img.Manifest != nil {
		e.Name = img.Manifest.Name
	}
	e.KernelBytes, e.InitrdBytes = p.kernelBytes, p.initrdBytes
	e.Supported, e.ReservationBytes = p.haveErr == nil, p.have
	e.Fits = p.haveErr == nil && p.have >= p.need.Total
	e.Cmdline, e.NextCmdline, e.NextCrashkernel = p.cmdline, p.next, p.nextCK
	for _, err := range []error{p.reservationErr(), p.cmdlineErr, p.rearmErr} {
		if err != nil {
			e.Problems = append(e.Problems, err.Error())
		}
	}
	return e, nil
}

// EstimateArmed reports the estimate of the image armed through this
// package (from its state file, see Arm) against the current reservation,
// with the re-arm check of the generation after a crash. Without a state
// file it returns an error wrapping ErrNotArmed.
func EstimateArmed(opts Options) (*Estimate, error) {
	o := opts.withDefaults()
	st, err := ReadState(o.StateDir)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return nil, fmt.Errorf("%w: no crash state in %s", ErrNotArmed, o.StateDir)
	}
	e := newEstimate(st.Mode, st.Sizing)
	e.Name, e.KernelBytes, e.InitrdBytes = st.Name, st.KernelBytes, st.InitrdBytes
	have, err := readCrashSize(o.Root)
	switch {
	case errors.Is(err, ErrNotSupported):
	case err != nil:
		return nil, err
	default:
		e.Supported, e.ReservationBytes = true, have
	}
	e.Fits = e.Supported && have >= st.Sizing.Total
	if !e.Fits {
		e.Problems = append(e.Problems, (&ReservationError{Have: have, Need: st.Sizing}).Error())
	}
	e.Cmdline = st.Cmdline
	e.NextCmdline = NextCmdline(st.Cmdline, st.Mode, st.MemoryMap)
	ram := o.ramBytes(st.MemoryMap)
	e.NextCrashkernel, _ = ParseCrashkernel(e.NextCmdline, ram)
	if err := CheckRearm(e.NextCmdline, st.Sizing, ram, have); err != nil {
		e.Problems = append(e.Problems, err.Error())
	}
	return e, nil
}
