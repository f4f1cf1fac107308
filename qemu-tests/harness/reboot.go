package harness

import (
	"errors"
	"fmt"
	"regexp"
	"time"
)

// ErrNoJump is returned by WaitReboot when the guest reached userspace
// again without a new kernel's banner on the console since the request:
// whatever came up, it was not the next generation.
var ErrNoJump = errors.New("no new kernel")

// Reboot is a jump to the next generation seen from the host. The jump is
// proven by what the next kernel prints (its banner, then frguest's
// markers), never by the old generation's last line: a line written just
// before a kexec may still sit in the tty buffer when the CPUs stop, and
// then it never reaches the console.
type Reboot struct {
	// Sent is when the host sent the command that reboots (or provoked
	// the fault that does).
	Sent time.Duration
	// Requested is when the old generation said it jumps (its line
	// matching the marker), or Sent when that line was lost.
	Requested time.Duration
	// LineLost says the old generation's line never reached the console.
	LineLost bool
	// Boot is the next generation's boot; Boot.KernelAt is its banner.
	Boot *Boot
}

// Downtime is reboot requested -> next generation's userspace.
func (r *Reboot) Downtime() time.Duration { return r.Boot.StartAt - r.Requested }

// ToKernel is reboot requested -> the next kernel's first line.
func (r *Reboot) ToKernel() time.Duration { return r.Boot.KernelAt - r.Requested }

// KernelToUser is the next kernel's first line -> its userspace.
func (r *Reboot) KernelToUser() time.Duration { return r.Boot.StartAt - r.Boot.KernelAt }

// WaitReboot waits (0 means DefaultTimeout) for the generation a reboot
// brings up, the reboot having been asked for at sent (host time since
// QEMU started, read before sending the command). Call it with the cursor
// where it was when the command was sent: the next kernel's banner must
// follow it. marker matches the old generation's last line before the
// jump (e.g. "fastreboot: rebooting through kexec"); nil, or a line that
// never arrived, leaves Requested at sent, and a lost line is noted in the
// console log. It fails only when no boot follows, or when the boot has no
// kernel banner after the request (ErrNoJump).
func (vm *VM) WaitReboot(sent time.Duration, marker *regexp.Regexp, timeout time.Duration) (*Reboot, error) {
	from := vm.console.Cursor()
	boot, err := vm.WaitBoot(timeout)
	if err != nil {
		return nil, err
	}
	r, err := findJump(vm.console.linesBetween(from, vm.console.Cursor()), sent, marker)
	if err != nil {
		return nil, err
	}
	r.Boot = boot
	if r.LineLost && marker != nil {
		vm.console.Logf("the old generation's line %q never reached the console; the reboot request time is when the command was sent (%.3fs)", marker, sent.Seconds())
		if vm.opts.Logger != nil {
			vm.opts.Logger.Warn("the line before the jump never reached the console; counting from the command", "name", vm.opts.Name, "marker", marker.String(), "sent", sent)
		}
	}
	return r, nil
}

// findJump reads the console lines since a reboot request sent at sent: the
// first FRGUEST_START is the next generation's (as for WaitBoot), the last kernel banner
// before it is the next kernel's (none: ErrNoJump), and the last line
// before that banner matching marker is the old generation's request.
func findJump(lines []Line, sent time.Duration, marker *regexp.Regexp) (*Reboot, error) {
	start := -1
	for i, l := range lines {
		if StartRE.MatchString(l.Text) {
			start = i
			break
		}
	}
	if start < 0 {
		return nil, fmt.Errorf("no %q since the reboot request at %.3fs: %w", StartRE, sent.Seconds(), ErrNoJump)
	}
	banner := -1
	for i := start - 1; i >= 0; i-- {
		if KernelStartRE.MatchString(lines[i].Text) {
			banner = i
			break
		}
	}
	if banner < 0 {
		return nil, fmt.Errorf("userspace started again at %.3fs (%q) with no %q since the reboot request at %.3fs: %w",
			lines[start].T.Seconds(), lines[start].Text, KernelStartRE, sent.Seconds(), ErrNoJump)
	}
	r := &Reboot{Sent: sent, Requested: sent, LineLost: true}
	if marker == nil {
		return r, nil
	}
	for i := banner - 1; i >= 0; i-- {
		if marker.MatchString(lines[i].Text) {
			// A line stamped before the command was sent cannot be its
			// answer; the console clock only moves forward, so this is
			// a guard against a marker that matches the echoed input.
			if lines[i].T >= sent {
				r.Requested, r.LineLost = lines[i].T, false
			}
			break
		}
	}
	return r, nil
}
