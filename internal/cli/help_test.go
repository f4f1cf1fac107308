package cli

import (
	"context"
	"flag"
	"sort"
	"strings"
	"testing"
)

// leafCommands returns every command line that has flags of its own:
// "status", "crash arm", ...
func leafCommands() [][]string {
	var out [][]string
	for name := range commands {
		if subs, ok := commandGroups[name]; ok {
			for _, s := range subs {
				out = append(out, []string{name, s})
			}
			continue
		}
		out = append(out, []string{name})
	}
	sort.Slice(out, func(i, j int) bool { return strings.Join(out[i], " ") < strings.Join(out[j], " ") })
	return out
}

// TestFlagUsage walks the FlagSet of every command and the global one: every
// flag says what it does, and every command has its synopsis.
func TestFlagUsage(t *testing.T) {
	ctx := context.Background()
	e := &env{}
	check := func(name string, fs *flag.FlagSet) {
		fs.VisitAll(func(f *flag.Flag) {
			if strings.TrimSpace(f.Usage) == "" {
				t.Errorf("%s: flag --%s has no usage text", name, f.Name)
			}
		})
	}
	global, _ := globalFlags(e)
	check("fastreboot", global)
	seen := map[string]bool{}
	for _, words := range leafCommands() {
		name := strings.Join(words, " ")
		fs, err := flagsOf(ctx, e, commands[words[0]], words[1:])
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		if fs.Name() != name {
			t.Errorf("%s: its FlagSet is named %q", name, fs.Name())
		}
		if commandHelp[name] == "" {
			t.Errorf("%s: no synopsis in commandHelp", name)
		}
		seen[name] = true
		check(name, fs)
	}
	for name := range commandHelp {
		if !seen[name] {
			t.Errorf("commandHelp has %q, which is no command", name)
		}
	}
}

// TestCommandHelp checks that `fastreboot help COMMAND` and `COMMAND -h`
// print the command's usage with its flags, on stdout, exit 0.
func TestCommandHelp(t *testing.T) {
	ctx := context.Background()
	for _, words := range leafCommands() {
		name := strings.Join(words, " ")
		fs, err := flagsOf(ctx, &env{}, commands[words[0]], words[1:])
		if err != nil {
			t.Fatal(err)
		}
		for _, args := range [][]string{
			append([]string{"help"}, words...),
			append(append([]string{}, words...), "-h"),
			append(append([]string{}, words...), "--help"),
		} {
			var out, errOut strings.Builder
			code := run(ctx, args, &out, &errOut, config{})
			if code != ExitOK {
				t.Errorf("fastreboot %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut.String())
				continue
			}
			got := out.String()
			if !strings.HasPrefix(got, "Usage: fastreboot "+name) {
				t.Errorf("fastreboot %s: usage starts %q", strings.Join(args, " "), strings.SplitN(got, "\n", 2)[0])
			}
			fs.VisitAll(func(f *flag.Flag) {
				if !strings.Contains(got, "-"+f.Name) || !strings.Contains(got, strings.SplitN(f.Usage, "`", 2)[0]) {
					t.Errorf("fastreboot %s: no --%s with its usage in:\n%s", strings.Join(args, " "), f.Name, got)
				}
			})
		}
	}
	// A group prints every subcommand.
	for group, subs := range commandGroups {
		for _, args := range [][]string{{"help", group}, {group, "-h"}} {
			var out, errOut strings.Builder
			if code := run(ctx, args, &out, &errOut, config{}); code != ExitOK {
				t.Errorf("fastreboot %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut.String())
			}
			for _, s := range subs {
				if !strings.Contains(out.String(), "Usage: fastreboot "+group+" "+s) {
					t.Errorf("fastreboot %s does not show %s %s", strings.Join(args, " "), group, s)
				}
			}
		}
	}
	var out, errOut strings.Builder
	if code := run(ctx, []string{"help", "nope"}, &out, &errOut, config{}); code != ExitUsage {
		t.Errorf("fastreboot help nope: exit %d, want %d", code, ExitUsage)
	}
	out.Reset()
	if code := run(ctx, []string{"help"}, &out, &errOut, config{}); code != ExitOK || !strings.Contains(out.String(), "Global flags:\n  --initrd-max-ratio N") || !strings.Contains(out.String(), "\n  --no-daemon\n") {
		t.Errorf("fastreboot help: exit %d, no global flags in:\n%s", code, out.String())
	}
}
