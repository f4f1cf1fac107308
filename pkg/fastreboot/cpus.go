package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
)

// What the update path does with the other CPUs, and how the next
// generation checks that they came back.
//
// The record goes into the handoff when Stage writes it: the handoff is
// sealed into the loaded image then, before anyone asks for a reboot, so
// "the CPUs online before the jump" are the CPUs online at stage time. A
// CPU taken offline between Stage and Reboot is still expected back, and
// one brought online in between is reported as added, not missing. The
// policy does not change the record: with cpustop.PolicyHotplug the
// secondaries are offline at the jump by design, and expected back.

// cpuOptions returns the cpustop options of the Machine: Options.CPUStop
// with the Machine's Root and Logger where it leaves them unset.
func (mc *Machine) cpuOptions() cpustop.Options {
	o := mc.opts.CPUStop
	if o.Root == "" {
		o.Root = mc.opts.Root
	}
	if o.Logger == nil {
		o.Logger = mc.log
	}
	return o
}

// stopPolicy is RebootOptions.StopCPUs, or cpustop.DefaultPolicy when unset.
func stopPolicy(ro RebootOptions) cpustop.Policy {
	if ro.StopCPUs == "" {
		return cpustop.DefaultPolicy
	}
	return ro.StopCPUs
}

// handoffCPUs is the CPU record for the handoff: rec (StageOptions.CPURecord),
// or the CPUs online now.
func (mc *Machine) handoffCPUs(rec *cpustop.Record) *cpustop.Record {
	if r := rec; r != nil {
		c := *r
		c.Online = slices.Clone(r.Online)
		return &c
	}
	return mc.recordCPUs()
}

// recordCPUs reads which CPUs are online for the handoff. A topology that
// cannot be read is logged and leaves the record out: the image is still
// good, the next generation just cannot check its CPUs.
func (mc *Machine) recordCPUs() *cpustop.Record {
	topo, err := cpustop.ReadTopology(mc.cpuOptions())
	if err != nil {
		mc.log.Info("stage: the handoff carries no CPU record", "err", err)
		return nil
	}
	r := topo.Record()
	return &r
}

// stopCPUs applies the CPU policy right before reboot(LINUX_REBOOT_CMD_KEXEC).
// On failure nothing stays changed: cpustop.Stop has brought back every CPU
// it took down (or says in its error which it could not).
func (mc *Machine) stopCPUs(ctx context.Context, p cpustop.Policy) (*cpustop.Stopped, error) {
	s, err := cpustop.Stop(ctx, p, mc.cpuOptions())
	if err != nil {
		return nil, fmt.Errorf("reboot: stop CPUs (policy %s): %w", p, err)
	}
	if p != cpustop.PolicyKernel {
		mc.log.Info("reboot: CPUs stopped", "policy", p, "offlined", cpustop.FormatCPUList(s.Offlined),
			"pinned_cpu", s.PinnedCPU, "took", s.Elapsed)
	}
	return s, nil
}

// restoreCPUs undoes stopCPUs after a reboot call that returned, joining
// err (the reboot's failure) with any CPU that did not come back.
func (mc *Machine) restoreCPUs(ctx context.Context, s *cpustop.Stopped, err error) error {
	if s == nil || len(s.Offlined) == 0 {
		return err
	}
	mc.log.Warn("reboot returned; bringing the CPUs back", "cpus", cpustop.FormatCPUList(s.Offlined), "err", err)
	if rerr := s.Restore(context.WithoutCancel(ctx)); rerr != nil {
		return errors.Join(err, fmt.Errorf("reboot aborted: restoring CPUs: %w", rerr))
	}
	return err
}

// checkCPUs compares the handoff's CPU record with the CPUs online under
// root. It returns nil when the handoff has no record, and logs the result.
func checkCPUs(root string, rec *cpustop.Record, log *slog.Logger) (*cpustop.Report, error) {
	if rec == nil {
		return nil, nil
	}
	topo, err := cpustop.ReadTopology(cpustop.Options{Root: root, Logger: log})
	if err != nil {
		return nil, err
	}
	rep := cpustop.Compare(*rec, topo)
	if err := rep.Err(); err != nil {
		log.Error("resume: CPUs online before the jump did not come back", "err", err)
	} else {
		log.Info("resume: every CPU came back", "expected", rep.Expected, "online", rep.Online, "matched_by", rep.MatchedBy)
	}
	return &rep, nil
}
