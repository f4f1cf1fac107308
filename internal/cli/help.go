package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// helpError is -h or --help given to a command: run prints the command's
// usage with its flags (the FlagSet's own usage strings).
type helpError struct{ fs *flag.FlagSet }

func (helpError) Error() string { return flag.ErrHelp.Error() }
func (helpError) Unwrap() error { return flag.ErrHelp }

// commandHelp is the synopsis and purpose of every command, by the name its
// FlagSet carries; `fastreboot help COMMAND` and `COMMAND -h` print it with
// the flags.
var commandHelp = map[string]string{
	"status": `status [--json] [--check]
  kexec support, what is loaded, the generation, the last boot's reason and
  timeline, the CPUs, the cache and the crash path`,
	"stage": `stage MANIFEST | --current | --kernel K --initrd I... | --default | --entry ID [--cmdline C | --append A] [flags]
  read the modules that changed into the cache, build the next image from it
  and load it; --current restages what this generation runs from the cache
  alone; --default and --entry ID take the kernel, initrds and command line
  of a boot entry (fastreboot entries). Module files must be regular files
  of the manifest's size, fitting in MemAvailable less 64 MiB; a new kernel
  is decompressed once in full (bounded by its init_size) and a corrupt one
  refused; initrd pieces may unpack to --initrd-max-ratio times their size
  (at least 16 MiB) and --initrd-max-unpacked in all (global flags).
  An image other than last-known-good boots on trial: a crash of it boots
  last-known-good, and it stays on trial until fastreboot bless, or until
  its daemon rolls back: past --trial-deadline without a bless, or when the
  --health command fails (which blesses when it exits 0). --max-crashes and
  --crash-window set the crash-loop policy (default 3 within 15m).
  --carry auto (the default) writes the cached modules to the kept memory
  region when the running command line keeps one and its /dev/pmemN is
  there (the next kernel adopts them in place, hashing each before use),
  else carries them in the initrd, saying why; --carry kept fails instead`,
	"kept plan": `kept plan --size SIZE [--preserve SIZE] [--json]
  where a kept memory region of SIZE goes, and the words to add to the boot
  loader's command line: memmap=SIZE!START (and fastreboot.preserve=SIZE
  when --preserve gives the region's end to workloads). It is placed, 2 MiB
  aligned, in the recorded firmware memory map's RAM (above 4 GiB when it
  fits), outside the crashkernel= reservation and the RAM the running
  kernel does not use (the ramoops region). Once booted with them, every
  staged image keeps the region and stage --carry auto writes the module
  cache there instead of into the initrd`,
	"kept status": `kept status [--json]
  the kept memory region of the running command line, its /dev/pmemN, and
  the header of the module index it holds (sequence, writer generation,
  modules, bytes), or why there is none`,
	"bless": `bless [--json | --if-trial]
  make the running generation's image, on trial, last-known-good (the old
  one becomes the fallback), then arm the crash path and restage the staged
  image again under the new assessment if the daemon had; refused, exit 1,
  when nothing is on trial (--if-trial: says so and succeeds, for
  fastreboot-bless.service, which blesses once boot-complete.target is
  reached)`,
	"rollback": `rollback [--why TEXT] [--reboot] [--json]
  end the running generation's trial: stage last-known-good with reason
  rollback (refused when nothing is on trial); with --reboot the daemon jumps
  into it as fastreboot reboot does`,
	"entries": `entries [--json] [--root DIR]
  list the boot entries under DIR (BLS Type #1 entries, grub.cfg, Debian's
  vmlinuz/initrd.img links), each with its kernel, initrds and command line,
  and the one stage --default picks, with the rule that picked it: loader.conf's
  default, grubenv's next_entry or saved_entry, grub.cfg's default, the newest
  BLS entry, Debian's links (docs/boot-entries.md)`,
	"reboot": `reboot [MANIFEST [--trial-deadline D] [--health CMD] [--health-timeout D] [--max-crashes K] [--crash-window D]] [--dry-run] [--force] [--fallback refuse|firmware] [--stop-cpus kernel|hotplug] [--json]
  jump into the staged image (stage MANIFEST first if given, with the trial
  and crash-loop flags of stage). Under systemd through systemctl kexec:
  services stopped and file systems unmounted, then the loaded image
  (systemctl loads none of its own when one is loaded).
  Without systemd, or with --force: sync(2), then reboot(LINUX_REBOOT_CMD_KEXEC)
  at once`,
	"cache ls":     "cache ls [--json]\n  list the cached modules and the cache's counters",
	"cache verify": "cache verify [--json]\n  hash every cached module again; a module that no longer matches is dropped",
	"cache sync":   "cache sync MANIFEST [--json]\n  read into the daemon's cache what MANIFEST needs and is not cached yet\n  (refused without a daemon: a cache of the command alone would keep nothing)",
	"cache evict":  "cache evict [--json]\n  drop the modules no staged or running image references",
	"manifest create": `manifest create --kernel K --initrd I... | --default | --entry ID [--cmdline C | --append A] [--name N] [-o FILE [--relative]]
  write a manifest of the given files, or of a boot entry's (sizes and
  SHA-256 measured)`,
	"manifest diff":     "manifest diff OLD NEW [--json]\n  name the modules added, removed and changed, and a changed command line",
	"manifest validate": "manifest validate [--content] [--json] MANIFEST\n  check a manifest (and with --content the files it names)",
	"crash arm": `crash arm [MANIFEST] [--mode two-stage|direct] [--auto] [--load segments|file] [--initrd minimal|image] [flags]
  build the crash image from the cache (or MANIFEST) and load it for a panic
  to jump into; route faults to panic. Refused when the generation after a
  crash could not re-arm, unless --allow-no-rearm`,
	"crash estimate": `crash estimate [MANIFEST] [--mode M] [--load L] [--initrd I] [--json]
  the crashkernel= the armed image (or MANIFEST) needs, the current
  reservation, and whether it fits`,
	"crash disarm":  "crash disarm [--json]\n  unload the crash image and restore the fault-routing sysctls",
	"crash status":  "crash status [--json]\n  the crash path: armed or not, its image and reservation, the last crash",
	"crash last":    "crash last [--save DIR] [--json]\n  the evidence of the last crash: reason, CPU, the crashed kernel's log",
	"crash recover": "crash recover [--evidence-dir DIR] [--no-reboot] [--json]\n  in a crash kernel: keep the evidence; two-stage: restage production and\n  kexec into it",
	"preserve create": `preserve create NAME --size SIZE [--cgroup PATH]
  add an area of SIZE bytes named NAME to the kept region's areas part (the
  last fastreboot.preserve=SIZE bytes of the memmap=SIZE!START region) and
  print its offset on /dev/pmemN: a workload maps the device there (mmap
  MAP_SHARED) and finds the same bytes after a fast reboot. fastreboot
  reboot freezes PATH's processes (cgroup v2) and syncs the device before
  the jump, and refuses the reboot without --force when it cannot. The
  area's bytes are not cleared; the workload should checksum its state`,
	"preserve ls": "preserve ls [--json]\n  the areas: device, offset, size, cgroup, the generation that created them",
	"preserve rm": "preserve rm NAME\n  remove an area from the table (its bytes are left as they are); refused\n  while a loop device maps it (preserve detach)",
	"preserve attach": `preserve attach NAME
  print a loop block device (/dev/loopN, the loop module) that maps the area
  NAME, for a program that maps a file but not at an offset, such as QEMU's
  memory-backend-file (mem-path=/dev/loopN,share=on). An existing one that
  maps it is reused. fastreboot reboot syncs the loop devices over the
  region before the jump; the next generation attaches again`,
	"preserve detach": "preserve detach NAME\n  sync and release the loop devices that map the area NAME",
	"key gen": `key gen -o PREFIX
  make an ed25519 key pair: PREFIX.key (private, mode 0600) and PREFIX.pub
  (public, for the trust roots); neither file may exist`,
	"key sign": `key sign -k KEY [-o SIG] MANIFEST
  sign the manifest's exact bytes (which name every module by SHA-256) and
  write the detached signature to MANIFEST.sig`,
	"key verify": `key verify [-p PUB] [--json] MANIFEST
  check MANIFEST.sig against the public key file or directory PUB, or the
  trust root (--trust)`,
	"daemon": `daemon [--group GROUP] [--request-timeout D] [--max-request-bytes N] [--verify-carried lazy|eager]
  hold the cache for this generation: adopt it from the handoff and serve
  the other commands on the socket, to root and the members of GROUP
  (checked with SO_PEERCRED; the socket is 0600, or 0660 owned by GROUP);
  each request must fit in N bytes and is abandoned after D (default 10m;
  the client's own limit is the global --timeout, default 11m)`,
}

// commandGroups are the commands that take a subcommand.
var commandGroups = map[string][]string{
	"cache":    {"ls", "verify", "sync", "evict"},
	"manifest": {"create", "diff", "validate"},
	"crash":    {"arm", "estimate", "disarm", "status", "last", "recover"},
	"key":      {"gen", "sign", "verify"},
	"kept":     {"plan", "status"},
	"preserve": {"create", "ls", "rm", "attach", "detach"},
}

// printHelp prints the usage of the command named by words ("stage",
// "crash arm"), or of every subcommand of a group ("crash").
func printHelp(ctx context.Context, e *env, w io.Writer, words []string) error {
	if len(words) == 0 {
		printMainUsage(w)
		return nil
	}
	if subs, ok := commandGroups[words[0]]; ok && len(words) == 1 {
		for i, s := range subs {
			if i > 0 {
				fmt.Fprintln(w)
			}
			if err := printHelp(ctx, e, w, []string{words[0], s}); err != nil {
				return err
			}
		}
		return nil
	}
	name := strings.Join(words, " ")
	cmd, ok := commands[words[0]]
	if _, known := commandHelp[name]; !ok || !known {
		return usagef("no command %q (commands: %s)", name, strings.Join(commandNames(), ", "))
	}
	fs, err := flagsOf(ctx, e, cmd, words[1:])
	if err != nil {
		return err
	}
	printUsage(w, fs)
	return nil
}

// flagsOf returns the FlagSet of a command (cmd with the subcommand words),
// by running it with -h: every command parses its flags before it does
// anything.
func flagsOf(ctx context.Context, e *env, cmd command, sub []string) (*flag.FlagSet, error) {
	err := cmd(ctx, e, append(append([]string{}, sub...), "-h"))
	var he helpError
	if !errors.As(err, &he) {
		return nil, fmt.Errorf("%s -h: %v", strings.Join(sub, " "), err)
	}
	return he.fs, nil
}

// printUsage prints a command's synopsis and its flags with their usage.
func printUsage(w io.Writer, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: fastreboot %s\n", commandHelp[fs.Name()])
	printFlags(w, "Flags", fs)
}

func printFlags(w io.Writer, title string, fs *flag.FlagSet) {
	n := 0
	fs.VisitAll(func(*flag.Flag) { n++ })
	if n == 0 {
		return
	}
	fmt.Fprintf(w, "\n%s:\n", title)
	fs.VisitAll(func(f *flag.Flag) {
		typ, usage := flag.UnquoteUsage(f)
		dash := "--"
		if len(f.Name) == 1 {
			dash = "-"
		}
		fmt.Fprintf(w, "  %s%s", dash, f.Name)
		if typ != "" {
			fmt.Fprintf(w, " %s", typ)
		}
		fmt.Fprintf(w, "\n      %s", usage)
		if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" && d != "[]" {
			fmt.Fprintf(w, " (default %s)", d)
		}
		fmt.Fprintln(w)
	})
}
