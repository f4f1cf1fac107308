package crashpath_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log"
	"os"
	"path/filepath"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
	"github.com/fastreboot/fastreboot/pkg/crashhandler"
	"github.com/fastreboot/fastreboot/pkg/crashpath"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
	"github.com/fastreboot/fastreboot/pkg/modcache"
)

// recordingLoader stands in for kexec_file_load: it keeps the command line
// of the image it was asked to load.
type recordingLoader struct{ cmdline string }

func (l *recordingLoader) FileLoad(kernel, initrd *os.File, cmdline string, flags int) error {
	l.cmdline = cmdline
	return nil
}

// writeTree writes files (path relative to root: content) under root.
func writeTree(root string, files map[string]string) {
	for rel, content := range files {
		p := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			log.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			log.Fatal(err)
		}
	}
}

// A program arms the crash path from its module cache, and after the
// panic, in the kernel the crash path started, keeps the crashed kernel's
// evidence, which every later generation reads back. The system here is a
// fake /proc and /sys under a temporary root (a 2 GiB machine with
// crashkernel=384M) and a loader that records instead of calling
// kexec_file_load; on a real system Root is "/" and the loader the
// kernel's.
func Example() {
	ctx := context.Background()
	root, err := os.MkdirTemp("", "crashpath")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(root)
	state := filepath.Join(root, "run/fastreboot")
	writeTree(root, map[string]string{
		"proc/cmdline":                               "console=ttyS0 crashkernel=384M\n",
		"proc/meminfo":                               "MemTotal:        2000000 kB\n",
		"proc/sys/kernel/panic_on_oops":              "0\n",
		"proc/sys/kernel/unknown_nmi_panic":          "0\n",
		"proc/sys/kernel/softlockup_panic":           "0\n",
		"proc/sys/kernel/hung_task_panic":            "0\n",
		"sys/kernel/kexec_crash_size":                "402653184\n",
		"sys/kernel/kexec_crash_loaded":              "0\n",
		"sys/firmware/memmap/0/start":                "0x0\n",
		"sys/firmware/memmap/0/end":                  "0x9fbff\n",
		"sys/firmware/memmap/0/type":                 "System RAM\n",
		"sys/firmware/memmap/1/start":                "0x100000\n",
		"sys/firmware/memmap/1/end":                  "0x7ffdefff\n",
		"sys/firmware/memmap/1/type":                 "System RAM\n",
		"sys/module/pstore/parameters/backend":       "ramoops\n",
		"proc/sys/kernel/crash_kexec_post_notifiers": "Y\n",
	})

	// The running image: a kernel and an initrd (tiny stand-ins here).
	m, err := bootimage.FromFiles("testdata/vmlinuz", []string{"testdata/initrd.cpio"}, "console=ttyS0")
	if err != nil {
		log.Fatal(err)
	}
	m.Name = "example"
	cache := modcache.New(modcache.Options{Check: fastreboot.CheckModule})
	defer cache.Close()
	loader := &recordingLoader{}
	path := crashpath.New(crashpath.Config{
		Root: root, StateDir: state, Cache: cache,
		MachineOptions: fastreboot.Options{Loader: loader},
	})
	// Arm reads the modules into the cache (the crash image is built from
	// it, and carries them to the next generation).
	rep, err := path.Arm(ctx, crashpath.ArmOptions{
		Target: crashpath.Target{Manifest: m, Source: modcache.DirSource(".")},
		Mode:   crashhandler.ModeDirect,
	})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("armed: mode %s, crash image of generation %d (reason %s), %d modules carried\n",
		rep.State.Mode, rep.Image.Generation, rep.Image.Reason, rep.Image.CarriedModules)

	// The panic. The crash kernel boots with the command line armed, the
	// handoff its initrd carried (written here as it would unpack) and,
	// in direct mode, the crashed kernel's log in pstore.
	crashHandoff, err := json.Marshal(fastreboot.Handoff{
		Version: fastreboot.HandoffVersion, Generation: rep.Image.Generation, Reason: fastreboot.ReasonCrash, Manifest: *m,
		Extra: map[string]json.RawMessage{crashpath.ExtraCrashMode: json.RawMessage(`"direct"`)},
	})
	if err != nil {
		log.Fatal(err)
	}
	writeTree(root, map[string]string{
		"proc/cmdline":         loader.cmdline + "\n",
		fastreboot.HandoffFile: string(crashHandoff),
		"proc/self/mounts":     "pstore /sys/fs/pstore pstore rw 0 0\n",
		filepath.Join(crashhandler.PstoreDir, "dmesg-ramoops-0"): strings.Join([]string{
			"Panic#1 Part1",
			"<4>[   16.000000] sysrq: Trigger a crash",
			"<0>[   16.100000] Kernel panic - not syncing: sysrq triggered crash",
			"<4>[   16.100100] CPU: 3 PID: 170 Comm: oncpu Not tainted 6.1.0 #1",
		}, "\n") + "\n",
	})
	// pstore is mounted already: a fake root must not be mounted on.
	noMount := crashhandler.PstoreOptions{Mount: func(string) error { return nil }}
	rec, err := crashpath.Recover(ctx, crashpath.Config{Root: root, StateDir: state, Pstore: noMount}, crashpath.RecoverOptions{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("recovered: evidence from %s\n", rec.EvidenceFrom)

	// Any later program of this generation reads the last crash back.
	ev := crashpath.LastCrash(root, state)
	fmt.Printf("last crash: generation %d (%s mode) on CPU %d: %s\n", ev.Generation, ev.Mode, ev.CPU, ev.Reason)
	// Output:
	// armed: mode direct, crash image of generation 2 (reason crash), 2 modules carried
	// recovered: evidence from pstore
	// last crash: generation 1 (direct mode) on CPU 3: Kernel panic - not syncing: sysrq triggered crash
}
