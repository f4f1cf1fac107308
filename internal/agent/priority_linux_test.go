package agent

import (
	"testing"

	"golang.org/x/sys/unix"
)

func TestLowPriority(t *testing.T) {
	got := make(chan int, 1)
	go func() {
		if err := lowPriority(); err != nil {
			t.Error(err)
		}
		// getpriority(2) returns 20 - nice through the raw system call.
		p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
		if err != nil {
			t.Error(err)
		}
		got <- 20 - p
	}()
	if nice := <-got; nice != backgroundNice {
		t.Errorf("nice of the background thread = %d, want %d", nice, backgroundNice)
	}
	// The test's own thread is untouched.
	p, err := unix.Getpriority(unix.PRIO_PROCESS, unix.Gettid())
	if err != nil {
		t.Fatal(err)
	}
	if nice := 20 - p; nice == backgroundNice {
		t.Errorf("the calling thread got nice %d too", nice)
	}
}
