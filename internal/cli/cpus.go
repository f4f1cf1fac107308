package cli

import (
	"fmt"
	"io"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/cpustop"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// cpuStatus is the CPU part of `fastreboot status`: the CPUs online now,
// and whether every CPU online before the jump came back (checked once, by
// the daemon's Resume, when this generation started).
type cpuStatus struct {
	// Online is the kernel's online list now, e.g. "0-3"; empty when it
	// cannot be read.
	Online string `json:"online,omitempty"`
	// Check compares the handoff's record with the CPUs online at resume;
	// nil on a cold boot or when the previous generation recorded nothing.
	Check *cpustop.Report `json:"check,omitempty"`
	// Error names the CPUs that did not come back (or why the check could
	// not run); it is also a problem for status --check.
	Error string `json:"error,omitempty"`
}

// cpuStatusOf reads the CPUs online under root and takes the check from the
// saved state. It returns nil when there is nothing to say (no CPU list and
// no check), and the problem to report, if any.
func cpuStatusOf(root string, st *fastreboot.State) (*cpuStatus, string) {
	var cs cpuStatus
	if topo, err := cpustop.ReadTopology(cpustop.Options{Root: root}); err == nil {
		cs.Online = cpustop.FormatCPUList(topo.Online)
	}
	if st != nil {
		cs.Check, cs.Error = st.CPUs, st.CPUsError
	}
	if cs == (cpuStatus{}) {
		return nil, ""
	}
	if cs.Error != "" {
		return &cs, "cpus: " + cs.Error
	}
	return &cs, ""
}

func printCPUStatus(w io.Writer, cs *cpuStatus) {
	if cs == nil {
		return
	}
	online := cs.Online
	if online == "" {
		online = "unknown"
	}
	fmt.Fprintf(w, "cpus: online %s", online)
	switch c := cs.Check; {
	case c == nil:
		fmt.Fprint(w, "; no record from a previous generation")
	case len(c.Missing) == 0:
		fmt.Fprintf(w, "; all %d CPUs online before the jump came back (matched by %s)", c.Expected, c.MatchedBy)
	default:
		names := make([]string, len(c.Missing))
		for i, m := range c.Missing {
			names[i] = m.String()
		}
		fmt.Fprintf(w, "; %d of %d CPUs online before the jump did NOT come back: %s", len(c.Missing), c.Expected, strings.Join(names, ", "))
	}
	if c := cs.Check; c != nil && len(c.Added) > 0 {
		fmt.Fprintf(w, "; %d more than before", len(c.Added))
	}
	fmt.Fprintln(w)
	if cs.Error != "" && (cs.Check == nil || len(cs.Check.Missing) == 0) {
		fmt.Fprintf(w, "  cpu check: %s\n", cs.Error)
	}
}

// cpuNote says, on the reboot line, what is done with the other CPUs when
// it is not the default (leaving them to the kernel).
func cpuNote(plan fastreboot.RebootPlan) string {
	if plan.Mode != "kexec" || plan.StopCPUs == "" || plan.StopCPUs == cpustop.DefaultPolicy {
		return ""
	}
	return " (stop-cpus " + string(plan.StopCPUs) + ")"
}
