package crashhandler

import (
	"errors"
	"fmt"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// Crashkernel is the reservation a command line asks for, as x86's
// reserve_crashkernel (Linux 6.1, arch/x86/kernel/setup.c and
// kernel/crash_core.c) reads it.
type Crashkernel struct {
	// Word is the crashkernel word the kernel goes by ("" if the line has
	// none).
	Word string `json:"word,omitempty"`
	// Size is the reservation in bytes. 0 with a Word: a range form
	// (crashkernel=RANGE:SIZE,...) with no range holding the machine's RAM.
	Size int64 `json:"size"`
	// High: the size comes from crashkernel=SIZE,high (the line has no
	// usable plain crashkernel=); the ",low" part is not counted.
	High bool `json:"high,omitempty"`
}

// errRAMUnknown: a range form cannot be evaluated without the RAM size.
var errRAMUnknown = errors.New("the range form needs the machine's RAM size")

// ParseCrashkernel reads the crash reservation cmdline asks for on a machine
// with ramBytes of RAM (the recorded memory map's; the kernel uses
// memblock_phys_mem_size). Like the kernel, it takes the last plain
// crashkernel= word (crashkernel=SIZE[KMG], SIZE@OFFSET, or the range form
// START-[END]:SIZE,...[@OFFSET], END exclusive), and if that is missing,
// malformed or zero, the last crashkernel=SIZE,high. Only kernel words
// count (the words after "--" go to init).
//
// A line without any crashkernel word gives the zero Crashkernel and no
// error; a word the kernel would reject gives an error naming it.
func ParseCrashkernel(cmdline string, ramBytes uint64) (Crashkernel, error) {
	words, _ := bootimage.SplitCmdline(cmdline)
	var plain, high string
	for _, w := range crashkernelWords(words) {
		switch {
		case strings.HasSuffix(w, ",high"):
			high = w
		case strings.HasSuffix(w, ",low"):
		default:
			plain = w
		}
	}
	var plainErr error
	if plain != "" {
		size, err := parseCrashkernelValue(strings.TrimPrefix(plain, crashkernelKey+"="), ramBytes)
		if err == nil && size > 0 {
			return Crashkernel{Word: plain, Size: int64(size)}, nil
		}
		if err != nil {
			plainErr = fmt.Errorf("%s: %w", plain, err)
		}
	}
	if high != "" {
		v := strings.TrimSuffix(strings.TrimPrefix(high, crashkernelKey+"="), ",high")
		size, rest, ok := memmap.ParseSize(v)
		switch {
		case !ok || rest != "":
			return Crashkernel{Word: high}, errors.Join(plainErr, fmt.Errorf("%s: not SIZE[KMG],high", high))
		case size > 0:
			return Crashkernel{Word: high, Size: int64(size), High: true}, nil
		}
	}
	if plainErr != nil {
		return Crashkernel{Word: plain}, plainErr
	}
	return Crashkernel{Word: plain}, nil
}

// parseCrashkernelValue parses what follows "crashkernel=" in its plain
// forms (kernel/crash_core.c parse_crashkernel_simple and
// parse_crashkernel_mem).
func parseCrashkernelValue(v string, ram uint64) (uint64, error) {
	colon := strings.IndexByte(v, ':')
	if colon < 0 {
		size, rest, ok := memmap.ParseSize(v)
		if !ok {
			return 0, errors.New("memory value expected")
		}
		if rest != "" && rest[0] == '@' {
			if _, rest, ok = memmap.ParseSize(rest[1:]); !ok || rest != "" {
				return 0, errors.New("offset: memory value expected after '@'")
			}
		}
		if rest != "" {
			return 0, fmt.Errorf("unrecognized %q", rest)
		}
		return size, nil
	}
	if ram == 0 {
		return 0, errRAMUnknown
	}
	cur := v
	for {
		start, rest, ok := memmap.ParseSize(cur)
		if !ok {
			return 0, errors.New("range: memory value expected")
		}
		if rest == "" || rest[0] != '-' {
			return 0, errors.New("range: '-' expected")
		}
		rest = rest[1:]
		end := ^uint64(0)
		if rest != "" && rest[0] != ':' {
			if end, rest, ok = memmap.ParseSize(rest); !ok {
				return 0, errors.New("range: memory value expected after '-'")
			}
			if end <= start {
				return 0, errors.New("range: end <= start")
			}
		}
		if rest == "" || rest[0] != ':' {
			return 0, errors.New("range: ':' expected")
		}
		size, after, ok := memmap.ParseSize(rest[1:])
		if !ok {
			return 0, errors.New("range: size expected after ':'")
		}
		if size >= ram {
			return 0, fmt.Errorf("size %s is not below the RAM (%s)", mib(int64(size)), mib(int64(ram)))
		}
		if ram >= start && ram < end {
			return size, nil
		}
		if after == "" || after[0] != ',' {
			// No range holds the RAM: the kernel reserves nothing.
			return 0, nil
		}
		cur = after[1:]
	}
}

// NextCmdline is the production command line the crash path boots after a
// crash of an image armed with the crash command line crash: in two-stage
// mode the line the crash kernel restages (ProductionCmdline with the
// recorded memory map mm, keeping crashkernel= as Recover does); in direct
// mode the crash line itself, since the crash kernel becomes production.
func NextCmdline(crash string, mode Mode, mm memmap.Map) string {
	if mode == ModeDirect {
		return crash
	}
	return InheritCrashkernel(ProductionCmdline(crash, mm), crash)
}

// RearmError reports a generation that could not re-arm the crash path: the
// command line it boots asks for no crashkernel= reservation, for one the
// kernel would reject, or for one smaller than the crash image needs. It
// matches ErrNoRearm with errors.Is.
type RearmError struct {
	// Cmdline is the command line of that generation.
	Cmdline string
	// Crashkernel is the reservation it asks for (zero: none).
	Crashkernel Crashkernel
	// Problem says why the crashkernel= word gives no reservation (a
	// malformed word, a range form that matches no range); "" otherwise.
	Problem string
	// Need is what the crash image needs; Suggest the crashkernel= size
	// to ask for (at least Need.Total).
	Need    Sizing
	Suggest int64
	// Which names the generation in the message; "" is "the generation
	// booted after a crash".
	Which string
}

func (e *RearmError) Error() string {
	which := e.Which
	if which == "" {
		which = "the generation booted after a crash"
	}
	advice := fmt.Sprintf("add crashkernel=%dM to the image's command line (the %s crash image needs %s)",
		mibCeil(e.Suggest), e.Need.Mode, mib(e.Need.Total))
	switch {
	case e.Crashkernel.Word == "":
		return which + " has no crashkernel= on its command line, so it could not re-arm the crash path: " + advice
	case e.Problem != "":
		return fmt.Sprintf("%s has %s on its command line, which reserves nothing (%s), so it could not re-arm the crash path: %s",
			which, e.Crashkernel.Word, e.Problem, advice)
	}
	return fmt.Sprintf("%s has %s on its command line (%s), less than the %s crash image needs (%s), so it could not re-arm the crash path: make it crashkernel=%dM in the image's command line",
		which, e.Crashkernel.Word, mib(e.Crashkernel.Size), e.Need.Mode, mib(e.Need.Total), mibCeil(e.Suggest))
}

// Is makes errors.Is(err, ErrNoRearm) work.
func (e *RearmError) Is(target error) bool { return target == ErrNoRearm }

// CheckRearm checks that next, the production command line of a generation
// (see NextCmdline), asks for a crashkernel= reservation of at least
// need.Total on a machine with ramBytes of RAM: otherwise that generation
// could not re-arm the crash path, and CheckRearm returns a *RearmError
// advising crashkernel= of max(suggest, need.Total) (suggest: e.g. the
// running reservation). A range form it cannot evaluate (ramBytes 0) is
// taken as sufficient.
func CheckRearm(next string, need Sizing, ramBytes uint64, suggest int64) error {
	ck, err := ParseCrashkernel(next, ramBytes)
	if errors.Is(err, errRAMUnknown) {
		return nil
	}
	e := &RearmError{Cmdline: next, Crashkernel: ck, Need: need, Suggest: max(suggest, need.Total)}
	switch {
	case err != nil:
		e.Problem = err.Error()
	case ck.Word != "" && ck.Size == 0 && strings.Contains(ck.Word, ":"):
		e.Problem = fmt.Sprintf("no range holds the %s of RAM", mib(int64(ramBytes)))
	case ck.Word != "" && ck.Size == 0:
		e.Problem = "its size is 0"
	case ck.Word != "" && ck.Size >= need.Total:
		return nil
	}
	return e
}

// mibCeil is n in MiB, rounded up.
func mibCeil(n int64) int64 { return (n + 1<<20 - 1) >> 20 }
