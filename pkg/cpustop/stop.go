package cpustop

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"time"
)

// Stopped is what Stop did, and the means to undo it.
type Stopped struct {
	Policy Policy `json:"policy"`
	// PinnedCPU is the CPU the sysfs writes run on (the boot CPU); -1
	// for PolicyKernel.
	PinnedCPU int `json:"pinned_cpu"`
	// Offlined lists the CPUs this call took down, in the order it took
	// them down, minus those Restore has brought back since.
	Offlined []int `json:"offlined"`
	// Elapsed is how long Stop took.
	Elapsed time.Duration `json:"elapsed_ns"`

	opts Options
}

// Stop prepares the CPUs for the jump according to policy.
//
// PolicyKernel does nothing and returns at once: the kernel stops the
// other CPUs itself during the kexec (see the package documentation).
//
// PolicyHotplug (Linux only, else ErrNotSupported) reads the topology,
// refuses with ErrNotHotpluggable before touching anything if an online
// secondary has no cpuN/online file, then, from an OS thread pinned to the
// boot CPU with sched_setaffinity, writes "0" to cpuN/online for every
// online secondary, highest id first, each write bounded by
// Options.Timeout. migrate_to_reboot_cpu() then finds only the boot CPU
// online and runs the kexec there, whatever reboot_cpu says. If any write
// fails, times out or ctx ends, Stop brings back every CPU it took down (in
// reverse order, ignoring ctx but not the timeout) and returns a *CPUError
// naming the CPU and the errno, joined with any rollback failure.
//
// Call Restore on the result if the reboot is then aborted.
func Stop(ctx context.Context, policy Policy, opts Options) (*Stopped, error) {
	start := time.Now()
	log := opts.logger()
	switch policy {
	case PolicyKernel:
		log.Info("cpustop: leaving the other CPUs to the kernel", "policy", policy)
		return &Stopped{Policy: policy, PinnedCPU: -1, Offlined: []int{}, opts: opts}, nil
	case PolicyHotplug:
	default:
		_, err := ParsePolicy(string(policy))
		return nil, err
	}
	if opts.pin == nil && !hotplugSupported {
		return nil, fmt.Errorf("cpustop: policy %s: %w", policy, ErrNotSupported)
	}

	topo, err := ReadTopology(opts)
	if err != nil {
		return nil, err
	}
	boot := topo.BootCPU
	if !slices.Contains(topo.Online, boot) {
		return nil, fmt.Errorf("cpustop: boot cpu%d is offline; cannot pin to it", boot)
	}
	secondaries := topo.Secondaries()
	var stuck []int
	for _, id := range secondaries {
		if c, _ := topo.CPU(id); !c.Hotpluggable {
			stuck = append(stuck, id)
		}
	}
	if len(stuck) > 0 {
		return nil, fmt.Errorf("%w: cpu %s online without %s", ErrNotHotpluggable,
			FormatCPUList(stuck), opts.cpuFile(stuck[0], "online"))
	}
	if topo.RebootCPU != boot && slices.Contains(secondaries, topo.RebootCPU) {
		log.Info("cpustop: reboot_cpu will be offline; the kernel falls back to the boot CPU",
			"reboot_cpu", topo.RebootCPU, "boot_cpu", boot)
	}

	s := &Stopped{Policy: policy, PinnedCPU: boot, Offlined: []int{}, opts: opts}
	if len(secondaries) == 0 {
		log.Info("cpustop: no secondary CPU online")
		s.Elapsed = time.Since(start)
		return s, nil
	}
	w, err := startWriter(opts, boot, true)
	if err != nil {
		return nil, err
	}
	log.Info("cpustop: taking secondary CPUs offline", "cpus", FormatCPUList(secondaries), "pinned_cpu", boot)
	for _, id := range secondaries {
		t0 := time.Now()
		err := ctx.Err()
		if err == nil {
			err = w.write(ctx, opts.cpuFile(id, "online"), "0", opts.timeout())
		}
		if err == nil {
			s.Offlined = append(s.Offlined, id)
			log.Debug("cpustop: cpu offline", "cpu", id, "took", time.Since(t0))
			continue
		}
		w.close()
		cerr := &CPUError{CPU: id, Online: false, Err: err}
		undo := s.Offlined
		if w.stuck {
			// The write may still complete: treat the CPU as down.
			undo = append(undo, id)
		}
		log.Info("cpustop: rolling back", "failed_cpu", id, "err", err, "bring_up", FormatCPUList(undo))
		_, rerr := bringUp(context.WithoutCancel(ctx), opts, undo)
		return nil, errors.Join(cerr, rerr)
	}
	w.close()
	s.Elapsed = time.Since(start)
	log.Info("cpustop: secondary CPUs offline", "cpus", FormatCPUList(s.Offlined), "took", s.Elapsed)
	return s, nil
}

// Restore brings back online, in reverse order, every CPU Stop took down
// and Restore has not yet brought back. Use it when the reboot is aborted.
// It tries every CPU even after a failure, returns the failures joined
// (each a *CPUError), and keeps the CPUs still down in Offlined so a later
// call can retry them. Not safe for concurrent use.
func (s *Stopped) Restore(ctx context.Context) error {
	if s == nil || len(s.Offlined) == 0 {
		return nil
	}
	down, err := bringUp(ctx, s.opts, s.Offlined)
	s.Offlined = down
	return err
}

// bringUp writes "1" to cpuN/online for cpus in reverse order. It returns
// the CPUs it could not bring up, in their order in cpus.
func bringUp(ctx context.Context, opts Options, cpus []int) ([]int, error) {
	if len(cpus) == 0 {
		return nil, nil
	}
	log := opts.logger()
	var (
		errs []error
		down []int
		w    *writer
	)
	defer func() {
		if w != nil {
			w.close()
		}
	}()
	for _, id := range slices.Backward(cpus) {
		if w == nil || w.stuck {
			if w != nil {
				w.close()
			}
			var err error
			// Pinning is not needed to bring a CPU up; failing to pin must
			// not keep CPUs down.
			if w, err = startWriter(opts, bootCPU, false); err != nil {
				return cpus, err
			}
		}
		err := ctx.Err()
		if err == nil {
			err = w.write(ctx, opts.cpuFile(id, "online"), "1", opts.timeout())
		}
		if err != nil {
			errs = append(errs, &CPUError{CPU: id, Online: true, Err: err})
			down = append(down, id)
			continue
		}
		log.Debug("cpustop: cpu online", "cpu", id)
	}
	slices.Reverse(down)
	return down, errors.Join(errs...)
}

// writer performs sysfs writes on one dedicated OS thread, pinned to a CPU,
// so a write that hangs in the kernel can be timed out by the caller.
type writer struct {
	reqs  chan writeReq
	stuck bool // a write outlived its timeout; do not reuse
}

type writeReq struct {
	path string
	data []byte
	done chan error
}

// startWriter starts the writer thread and pins it to cpu. With mustPin a
// pinning failure is returned; without, it is logged and ignored.
func startWriter(opts Options, cpu int, mustPin bool) (*writer, error) {
	w := &writer{reqs: make(chan writeReq)}
	ready := make(chan error, 1)
	pin := opts.pinner()
	go func() {
		// Never unlocked: when this goroutine returns, the runtime ends
		// the thread instead of handing its pinned affinity to other
		// goroutines.
		runtime.LockOSThread()
		if err := pin(cpu); err != nil {
			if mustPin {
				ready <- err
				return
			}
			opts.logger().Info("cpustop: writing unpinned", "cpu", cpu, "err", err)
		}
		ready <- nil
		for r := range w.reqs {
			r.done <- opts.writeFile(r.path, r.data)
		}
	}()
	if err := <-ready; err != nil {
		return nil, fmt.Errorf("cpustop: pin writer thread to cpu%d: %w", cpu, err)
	}
	return w, nil
}

func (w *writer) write(ctx context.Context, path, data string, timeout time.Duration) error {
	r := writeReq{path: path, data: []byte(data), done: make(chan error, 1)}
	t := time.NewTimer(timeout)
	defer t.Stop()
	w.reqs <- r // the thread is idle: it is never handed a request while stuck
	select {
	case err := <-r.done:
		return err
	case <-t.C:
		w.stuck = true
		return fmt.Errorf("write %q to %s: %w after %v", data, path, ErrTimeout, timeout)
	case <-ctx.Done():
		w.stuck = true
		return fmt.Errorf("write %q to %s: %w", data, path, context.Cause(ctx))
	}
}

// close lets the thread exit once its current write, if any, returns.
func (w *writer) close() { close(w.reqs) }
