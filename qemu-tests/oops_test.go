package qemutests

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// oopsSymbol is the kernel function TestCrashOops breaks: the entry of the
// sync(2) syscall, which nothing in the guest calls unless told to.
const oopsSymbol = "__x64_sys_sync"

// ud2 is x86's guaranteed invalid opcode (0f 0b).
var ud2 = []byte{0x0f, 0x0b}

// TestCrashOops provokes the one fault the shell and the QEMU monitor cannot
// reach without a kernel module (Debian's sysrq c calls panic() itself and
// LKDTM is not built): an oops in kernel context, routed to panic by
// kernel.panic_on_oops. QEMU's gdbstub, started from the monitor, writes a
// ud2 over the entry of the guest kernel's sync(2) (it writes through the
// guest page tables, ignoring their read-only bits); `sync` then takes an
// invalid-opcode trap in kernel mode, the oops panics with "Fatal
// exception", and the armed crash path must bring production back like for
// every other fault.
func TestCrashOops(t *testing.T) {
	for _, tc := range []struct {
		mode    crashhandler.Mode
		reserve string
	}{
		{crashhandler.ModeTwoStage, reserveTwoStage},
		{crashhandler.ModeDirect, reserveDirect},
	} {
		t.Run(string(tc.mode), func(t *testing.T) {
			c := startCrashVM(t, tc.mode, tc.reserve, false)
			c.arm()
			st := c.crashStatus()
			routed := false
			for _, f := range st.Faults {
				if f.Name == crashhandler.SysctlPanicOnOops {
					routed = f.Routed
				}
			}
			if !routed {
				t.Fatalf("armed, but %s is not routed: faults %+v", crashhandler.SysctlPanicOnOops, st.Faults)
			}
			addr := kernelSymbol(t, c, oopsSymbol)
			sock := filepath.Join(t.TempDir(), "gdb.sock")
			if out, err := c.vm.Monitor("gdbserver unix:" + sock + ",server=on,wait=off"); err != nil {
				t.Fatalf("starting QEMU's gdbstub: %v (%s)", err, out)
			}
			c.crash("oops", "Fatal exception", func() error {
				if err := gdbPoke(sock, addr, ud2); err != nil {
					return fmt.Errorf("writing ud2 at %s %#x: %w", oopsSymbol, addr, err)
				}
				return c.vm.SendLine("sync")
			})
			ev := c.crashStatus().Last
			if ev == nil {
				return // checkProduction reported it
			}
			// The oops line, and a kernel-mode RIP (code segment 0x10)
			// showing the trap was taken in kernel context.
			var oops, rip string
			for _, l := range ev.Log {
				if strings.Contains(l, "invalid opcode: ") {
					oops = l
				}
				if strings.Contains(l, "RIP: 0010:") {
					rip = l
				}
			}
			if !strings.HasPrefix(ev.Cause, "invalid opcode: ") {
				t.Errorf("crash evidence cause = %q, want the invalid-opcode trap line", ev.Cause)
			}
			if oops == "" || rip == "" {
				t.Errorf("crash evidence log does not show the invalid-opcode oops in kernel mode (oops %q, rip %q); reason %q cause %q, log tail %q", oops, rip, ev.Reason, ev.Cause, ev.Log)
			} else {
				t.Logf("oops in the evidence: %s, %s", strings.TrimSpace(oops), strings.TrimSpace(rip))
			}
		})
	}
}

// kernelSymbol returns the address of a kernel text symbol from the guest's
// /proc/kallsyms (kptr_restrict cleared first, so it is not all zeros).
func kernelSymbol(t *testing.T, c *crashVM, sym string) uint64 {
	t.Helper()
	out, err := c.g.Run("echo 0 > /proc/sys/kernel/kptr_restrict && grep ' " + sym + "$' /proc/kallsyms")
	if err != nil {
		t.Fatalf("looking up %s: %v", sym, err)
	}
	m := regexp.MustCompile(`(?m)^([0-9a-f]{16}) [Tt] ` + regexp.QuoteMeta(sym) + `\s*$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s in /proc/kallsyms: %q", sym, out)
	}
	addr, err := strconv.ParseUint(m[1], 16, 64)
	if err != nil || addr == 0 {
		t.Fatalf("%s at %q: %v (kptr_restrict?)", sym, m[1], err)
	}
	return addr
}

// gdbPoke writes data at the guest virtual address addr through the GDB
// remote protocol on QEMU's gdbstub at the unix socket sock: connecting
// stops the guest, M writes the memory, m reads it back, D detaches and
// lets the guest run on.
func gdbPoke(sock string, addr uint64, data []byte) error {
	conn, err := net.DialTimeout("unix", sock, 10*time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	r := bufio.NewReader(conn)
	want := fmt.Sprintf("%x", data)
	if reply, err := gdbCommand(conn, r, fmt.Sprintf("M%x,%x:%s", addr, len(data), want)); err != nil || reply != "OK" {
		return fmt.Errorf("gdb M: reply %q: %v", reply, err)
	}
	if reply, err := gdbCommand(conn, r, fmt.Sprintf("m%x,%x", addr, len(data))); err != nil || reply != want {
		return fmt.Errorf("gdb m: read back %q, want %q: %v", reply, want, err)
	}
	if reply, err := gdbCommand(conn, r, "D"); err != nil || reply != "OK" {
		return fmt.Errorf("gdb D: reply %q: %v", reply, err)
	}
	return nil
}

// gdbCommand sends one packet ($cmd#checksum), waits for its ack and
// returns the reply packet's payload, acknowledging every packet and
// skipping stop replies (none of the commands sent answers with one).
func gdbCommand(w io.Writer, r *bufio.Reader, cmd string) (string, error) {
	if _, err := fmt.Fprintf(w, "$%s#%02x", cmd, gdbChecksum(cmd)); err != nil {
		return "", err
	}
	for {
		b, err := r.ReadByte()
		if err != nil {
			return "", err
		}
		switch b {
		case '+':
			continue
		case '-':
			return "", fmt.Errorf("gdbstub rejected %q", cmd)
		case '$':
		default:
			continue // noise before a packet
		}
		payload, err := r.ReadString('#')
		if err != nil {
			return "", err
		}
		payload = strings.TrimSuffix(payload, "#")
		var sum [2]byte
		if _, err := io.ReadFull(r, sum[:]); err != nil {
			return "", err
		}
		if got := fmt.Sprintf("%02x", gdbChecksum(payload)); got != string(sum[:]) {
			return "", fmt.Errorf("gdbstub reply %q: checksum %s, want %s", payload, sum[:], got)
		}
		if _, err := w.Write([]byte{'+'}); err != nil {
			return "", err
		}
		if strings.HasPrefix(payload, "T") || strings.HasPrefix(payload, "S") {
			// A stop reply: QEMU reports the stop that the connection
			// caused; the reply to cmd follows.
			continue
		}
		return payload, nil
	}
}

func gdbChecksum(s string) byte {
	var sum byte
	for i := 0; i < len(s); i++ {
		sum += s[i]
	}
	return sum
}
