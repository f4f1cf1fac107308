package agent_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/internal/agent"
)

// A command asks the daemon when one runs, and otherwise works with an
// agent of its own, whose cache lives only as long as the process.
func ExampleDial() {
	ctx := context.Background()
	tmp, err := os.MkdirTemp("", "fr")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(tmp)

	var svc agent.Service
	c, err := agent.Dial(filepath.Join(tmp, "fastreboot.sock"))
	switch {
	case err == nil:
		svc = c
	case errors.Is(err, agent.ErrNoDaemon):
		a, err := agent.New(ctx, agent.Options{StateDir: tmp})
		if err != nil {
			log.Fatal(err)
		}
		defer a.Close()
		svc = a
	default:
		log.Fatal(err)
	}
	info, err := svc.Info(ctx)
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("daemon %v, generation %d (%s), %d modules cached\n", info.Daemon, info.Generation, info.Reason, info.Cache.Modules)
	// Output: daemon false, generation 1 (cold), 0 modules cached
}
