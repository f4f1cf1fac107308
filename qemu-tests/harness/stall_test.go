package harness

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

// consoleVM is a VM with a console and no QEMU, fed by the test.
func consoleVM() *VM {
	start := time.Now()
	return &VM{start: start, console: NewConsole(start, nil)}
}

func TestWaitStartStall(t *testing.T) {
	defer func(p time.Duration) { stallPoll = p }(stallPoll)
	stallPoll = 20 * time.Millisecond

	t.Run("silent console", func(t *testing.T) {
		vm := consoleVM()
		fmt.Fprintf(vm.console, "[    1.704891] pnp: PnP ACPI: found 5 devices\n")
		begin := time.Now()
		_, err := vm.waitStart(time.Now().Add(10*time.Second), 10*time.Second, 200*time.Millisecond)
		if !errors.Is(err, ErrStalled) || !strings.Contains(err.Error(), "found 5 devices") {
			t.Fatalf("waitStart on a silent console: %v; want ErrStalled naming the last line", err)
		}
		if d := time.Since(begin); d > 5*time.Second {
			t.Errorf("stall detected after %v, want soon after the 200ms window", d)
		}
	})

	t.Run("busy console", func(t *testing.T) {
		vm := consoleVM()
		done := make(chan struct{})
		go func() {
			defer close(done)
			for i := 0; i < 30; i++ {
				fmt.Fprintf(vm.console, "[    %d.000000] still booting\n", i)
				time.Sleep(20 * time.Millisecond)
			}
			fmt.Fprintf(vm.console, "FRGUEST_START uptime=1.00\n")
		}()
		m, err := vm.waitStart(time.Now().Add(10*time.Second), 10*time.Second, 200*time.Millisecond)
		<-done
		if err != nil || !strings.HasPrefix(m.Text, "FRGUEST_START") {
			t.Fatalf("waitStart on a console printing for 600ms (stall 200ms): %v, %+v; want the start marker", err, m)
		}
	})

	t.Run("no stall check", func(t *testing.T) {
		vm := consoleVM()
		_, err := vm.waitStart(time.Now().Add(300*time.Millisecond), 300*time.Millisecond, 0)
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("waitStart without a stall window: %v; want ErrTimeout", err)
		}
	})

	t.Run("timeout before stall", func(t *testing.T) {
		vm := consoleVM()
		_, err := vm.waitStart(time.Now().Add(300*time.Millisecond), 300*time.Millisecond, time.Minute)
		if !errors.Is(err, ErrTimeout) || !strings.Contains(err.Error(), "300ms") {
			t.Fatalf("waitStart past its deadline: %v; want ErrTimeout naming the whole wait", err)
		}
	})
}
