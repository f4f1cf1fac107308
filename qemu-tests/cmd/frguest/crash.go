package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/fastreboot/fastreboot/internal/ttydrain"
	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
)

// Markers of the crash path.
const (
	// RecoverMarker is printed when frguest finds itself in a kernel the
	// crash path started, before it runs `fastreboot crash recover`.
	RecoverMarker = "FRGUEST_RECOVER"
	// ArmMarker reports the start-up re-arm (`fastreboot crash arm --auto`).
	ArmMarker = "FRGUEST_CRASH_ARM"
	// crashPanicWord on a crash kernel's command line makes frguest panic
	// that crash kernel (tests of the crash kernel's own panic=N).
	crashPanicWord = "frguest.crashpanic"
	// orphanWord on a production command line makes frguest, once ready,
	// start `frfault orphan`: every process is killed, init exits and the
	// kernel panics ("Attempted to kill init!"), the way a bad update's
	// init dies at start. FaultMarker says it was started.
	orphanWord  = "frguest.orphan"
	FaultMarker = "FRGUEST_FAULT"
)

// orphanAtStart starts `frfault orphan` in its own session when the
// command line asks for it (orphanWord, and not a crash kernel).
func orphanAtStart(w io.Writer, c config, sys system) {
	cmdline := strings.TrimSpace(readString(c.root, "proc/cmdline"))
	if _, crash := crashhandler.CrashModeOf(cmdline); crash || !hasWord(cmdline, orphanWord) {
		return
	}
	bin, err := sys.lookPath("frfault")
	if err != nil {
		fmt.Fprintf(w, "%s orphan: %v\n", FaultMarker, err)
		return
	}
	cmd := exec.Command(bin, "orphan")
	if err := sys.startBg(cmd); err != nil {
		fmt.Fprintf(w, "%s orphan: %v\n", FaultMarker, err)
		return
	}
	fmt.Fprintf(w, "%s orphan pid=%d\n", FaultMarker, cmd.Process.Pid)
}

// crashStage runs the crash stage when the kernel command line says this
// kernel was started by the crash path. In two-stage mode `fastreboot
// crash recover` kexecs into production and does not return; in direct mode
// it saves the evidence and frguest goes on as a production boot.
func crashStage(ctx context.Context, w io.Writer, c config, sys system) {
	cmdline := strings.TrimSpace(readString(c.root, "proc/cmdline"))
	mode, ok := crashhandler.CrashModeOf(cmdline)
	if !ok {
		return
	}
	fmt.Fprintf(w, "%s mode=%s uptime=%s\n", RecoverMarker, mode, uptime(c.root))
	if hasWord(cmdline, crashPanicWord) {
		fmt.Fprintf(w, "frguest: %s: panicking the crash kernel\n", crashPanicWord)
		// The panic stops the CPUs at once: what is still in the tty
		// buffer (the marker the test waits for) would be lost.
		if f, ok := w.(*os.File); ok {
			ttydrain.Drain(f)
		}
		os.WriteFile(filepath.Join(c.root, "proc/sysrq-trigger"), []byte("c"), 0)
	}
	bin, err := sys.lookPath("fastreboot")
	if err != nil {
		fmt.Fprintf(w, "frguest: crash recover: %v\n", err)
		return
	}
	if mode == crashhandler.ModeDirect {
		// What an init would do: mount pstore, where a backend such as
		// ramoops shows the previous kernel's panic log.
		if out, err := exec.CommandContext(ctx, "mount", "-t", "pstore", "pstore", filepath.Join(c.root, crashhandler.PstoreDir)).CombinedOutput(); err != nil {
			fmt.Fprintf(w, "frguest: mount pstore: %v %s\n", err, strings.TrimSpace(string(out)))
		}
		var names []string
		ents, err := os.ReadDir(filepath.Join(c.root, crashhandler.PstoreDir))
		for _, e := range ents {
			names = append(names, e.Name())
		}
		fmt.Fprintf(w, "frguest: pstore holds %q (%v)\n", names, err)
		if out, err := exec.CommandContext(ctx, "dmesg").Output(); err == nil {
			for _, l := range strings.Split(string(out), "\n") {
				if strings.Contains(l, "ramoops") || strings.Contains(l, "pstore") {
					fmt.Fprintf(w, "frguest: %s\n", l)
				}
			}
		}
	}
	if mode != crashhandler.ModeDirect {
		// A two-stage recover kexecs into production: what frguest
		// printed (the marker the test waits for) must leave the tty
		// first.
		if f, ok := w.(*os.File); ok {
			ttydrain.Drain(f)
		}
	}
	start := time.Now()
	cmd := exec.CommandContext(ctx, bin, "crash", "recover", "--evidence-dir", "/var/crash/last")
	cmd.Stdout, cmd.Stderr = w, w
	err = cmd.Run()
	fmt.Fprintf(w, "frguest: crash recover: mode=%s err=%v took=%.2fs\n", mode, err, time.Since(start).Seconds())
}

// rearm runs `fastreboot crash arm --auto` once the daemon runs: a
// generation whose handoff names a crash mode arms the crash path again.
func rearm(ctx context.Context, w io.Writer, c config, sys system) {
	if _, err := os.Stat(filepath.Join(c.root, "fastreboot/handoff.json")); err != nil {
		return
	}
	bin, err := sys.lookPath("fastreboot")
	if err != nil {
		return
	}
	start := time.Now()
	out, err := exec.CommandContext(ctx, bin, "crash", "arm", "--auto").CombinedOutput()
	state := "ok"
	if err != nil {
		state = "failed"
	}
	fmt.Fprintf(w, "%s %s took=%.2fs: %s\n", ArmMarker, state, time.Since(start).Seconds(), strings.Join(strings.Fields(string(out)), " "))
}

// hasWord tells whether the kernel command line has the parameter word
// (alone or as word=value); init's arguments after "--" do not count.
func hasWord(cmdline, word string) bool {
	params, _ := bootimage.SplitCmdline(cmdline)
	for _, f := range params {
		if f == word || strings.HasPrefix(f, word+"=") {
			return true
		}
	}
	return false
}
