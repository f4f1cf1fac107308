package qemutests

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

var (
	watchCPURE = regexp.MustCompile(`CPU#(\d+)`)
	watchRIPRE = regexp.MustCompile(`RIP=([0-9a-f]+) .*HLT=(\d)`)
	watchEIPRE = regexp.MustCompile(`EIP=([0-9a-f]+) .*HLT=(\d)`)
)

// watchCPUs polls every CPU's RIP and halt state through the monitor
// ("info registers -a", ten times a second) until stop is closed, and
// appends a line to path whenever the set of halted CPUs or a halted CPU's
// RIP changes: seconds since QEMU started, then per CPU "N:hlt@RIP" or
// "N:run@<low 32 bits of a kernel RIP>". A CPU the panic stopped shows as
// hlt@ the crashed kernel's halt site until something wakes it. A diagnostic
// of the soak: a file that cannot be created is silently skipped.
func watchCPUs(vm *harness.VM, path string, stop <-chan struct{}) {
	f, err := os.Create(path)
	if err != nil {
		return
	}
	defer f.Close()
	var last string
	for {
		select {
		case <-stop:
			return
		case <-time.After(100 * time.Millisecond):
		}
		raw, err := vm.QMP("human-monitor-command", map[string]string{"command-line": "info registers -a"})
		if err != nil {
			continue
		}
		var out string
		if json.Unmarshal(raw, &out) != nil {
			continue
		}
		var states []string
		cpu := ""
		for _, l := range strings.Split(out, "\n") {
			if m := watchCPURE.FindStringSubmatch(l); m != nil {
				cpu = m[1]
			}
			m := watchRIPRE.FindStringSubmatch(l)
			if m == nil {
				m = watchEIPRE.FindStringSubmatch(l)
			}
			if m != nil {
				st := "run"
				if m[2] == "1" {
					st = "hlt@" + m[1]
				} else if strings.HasPrefix(m[1], "ffffffff") {
					st = "run@" + m[1][8:]
				}
				states = append(states, cpu+":"+st)
			}
		}
		// Running CPUs' RIPs change all the time; log a line when the
		// halted set changes, or a running CPU sits on one RIP.
		key := ""
		for _, s := range states {
			if strings.Contains(s, "hlt@") {
				key += s + " "
			} else {
				key += s[:strings.Index(s, ":")] + ":run "
			}
		}
		if key != last {
			fmt.Fprintf(f, "%8.3f %s\n", vm.Elapsed().Seconds(), strings.Join(states, " "))
			last = key
		}
	}
}
