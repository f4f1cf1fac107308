package qemutests

import (
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

var (
	watchCPURE = regexp.MustCompile(`CPU#(\d+)`)
	watchIPRE  = regexp.MustCompile(`[RE]IP=([0-9a-f]+) .*HLT=(\d)`)
)

// watchCPUs polls every CPU's RIP and halt state through the monitor
// ("info registers -a", ten times a second) until stop is closed, and
// appends a line to path whenever the set of halted CPUs or a halted CPU's
// RIP changes: seconds since QEMU started, then the words of cpuStates. A CPU the panic stopped shows as
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
		states, key := cpuStates(out)
		if key != last {
			fmt.Fprintf(f, "%8.3f %s\n", vm.Elapsed().Seconds(), strings.Join(states, " "))
			last = key
		}
	}
}

// cpuStates turns "info registers -a" into one word per CPU ("N:hlt@RIP",
// "N:run@<low 32 bits of a kernel RIP>" or "N:run") and a key that changes
// only when the set of halted CPUs or a halted CPU's RIP does (running
// CPUs' RIPs change all the time).
func cpuStates(out string) (states []string, key string) {
	cpu := ""
	for _, l := range strings.Split(out, "\n") {
		if m := watchCPURE.FindStringSubmatch(l); m != nil {
			cpu = m[1]
		}
		m := watchIPRE.FindStringSubmatch(l)
		if m == nil {
			continue
		}
		st, k := "run", "run"
		switch {
		case m[2] == "1":
			st = "hlt@" + m[1]
			k = st
		case strings.HasPrefix(m[1], "ffffffff"):
			st = "run@" + m[1][8:]
		}
		states = append(states, cpu+":"+st)
		key += cpu + ":" + k + " "
	}
	return states, key
}

func TestCPUStates(t *testing.T) {
	out := "CPU#0\nRAX=0\nRIP=ffffffff8b6592fa RFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=1\n" +
		"CPU#1\nRIP=ffffffff8ac6b39f RFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n" +
		"CPU#2\nEIP=000fd09a EFL=00000002 [-------] CPL=0 II=0 A20=1 SMM=0 HLT=0\n"
	states, key := cpuStates(out)
	if got, want := strings.Join(states, " "), "0:hlt@ffffffff8b6592fa 1:run@8ac6b39f 2:run"; got != want {
		t.Errorf("states %q, want %q", got, want)
	}
	moved := strings.Replace(out, "8ac6b39f", "8ac6b3a4", 1)
	if _, k := cpuStates(moved); k != key {
		t.Errorf("a running CPU's RIP changed the key: %q -> %q", key, k)
	}
	woke := strings.Replace(out, "HLT=1", "HLT=0", 1)
	if _, k := cpuStates(woke); k == key {
		t.Errorf("a halted CPU waking up left the key %q unchanged", key)
	}
}
