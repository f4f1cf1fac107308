package bootimage

import "strings"

// CrashMarker is a command line word after which the crash path lists the
// words that only a crash image needs (nr_cpus=1, reset_devices, irqpoll,
// ...). The kernel ignores it (a dotted word is a module parameter, and no
// module is called fastreboot); CleanCmdline drops it and everything after
// it, up to a "--".
const CrashMarker = "fastreboot.crash"

// droppedKeys are the words CleanCmdline removes wherever they appear,
// matched by the part before "=" (a word without "=" matches as a whole).
var droppedKeys = map[string]string{
	"BOOT_IMAGE":    "boot loaders (GRUB, SYSLINUX) add the kernel's path",
	"initrd":        "boot loaders and the EFI stub name the initrd file; kexec passes the initrd itself",
	"elfcorehdr":    "the kernel adds it to a crash image's command line (arch/x86/kernel/crash.c)",
	"reset_devices": "kdump convention: only a crash kernel needs its devices reset",
}

// CleanCmdline returns the command line s (as read from /proc/cmdline)
// without the words that describe how this kernel was booted rather than
// what the next kernel needs:
//
//   - BOOT_IMAGE=... and initrd=..., added by boot loaders;
//   - elfcorehdr=..., added by the kernel to a crash image;
//   - reset_devices, which only a crash kernel wants;
//   - CrashMarker and every word after it up to "--": what the crash path
//     added.
//
// Words are split as the kernel splits them (spaces outside double
// quotes) and joined with single spaces; a "--" and the init arguments
// after it are kept as they are.
func CleanCmdline(s string) string {
	words, initArgs := SplitCmdline(s)
	var kept []string
	crash := false
	for _, w := range words {
		if w == CrashMarker {
			crash = true
		}
		if crash {
			continue
		}
		if _, drop := droppedKeys[cmdlineKey(w)]; drop {
			continue
		}
		kept = append(kept, w)
	}
	return JoinCmdline(kept, initArgs)
}

// cmdlineKey is the parameter name of a word: before "=", without a
// leading quote.
func cmdlineKey(w string) string {
	w = strings.TrimPrefix(w, `"`)
	if i := strings.IndexByte(w, '='); i >= 0 {
		return w[:i]
	}
	return strings.TrimSuffix(w, `"`)
}

// SplitCmdline splits the command line s into kernel parameters the way
// the kernel's next_arg does (lib/cmdline.c: words separated by white
// space outside double quotes; the quotes stay in the word), stopping at
// a bare "--". initArgs is that "--" and what follows it, which the kernel
// passes to init: "--" alone, or "-- " and the rest with its outer white
// space trimmed and its inner spacing kept; "" if s has no "--". A "--"
// inside quotes is part of a word.
func SplitCmdline(s string) (params []string, initArgs string) {
	i := 0
	for {
		for i < len(s) && isCmdlineSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return params, ""
		}
		start := i
		quoted := false
		for i < len(s) && (quoted || !isCmdlineSpace(s[i])) {
			if s[i] == '"' {
				quoted = !quoted
			}
			i++
		}
		w := s[start:i]
		if w == "--" {
			if rest := strings.TrimFunc(s[i:], isCmdlineSpaceRune); rest != "" {
				return params, "-- " + rest
			}
			return params, "--"
		}
		params = append(params, w)
	}
}

// JoinCmdline is the inverse of SplitCmdline: params joined by single
// spaces, then initArgs.
func JoinCmdline(params []string, initArgs string) string {
	if initArgs != "" {
		params = append(params[:len(params):len(params)], initArgs)
	}
	return strings.Join(params, " ")
}

// isCmdlineSpace is the kernel's isspace for a command line (and NUL,
// which ends one).
func isCmdlineSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f' || c == 0
}

func isCmdlineSpaceRune(r rune) bool { return r < 0x80 && isCmdlineSpace(byte(r)) }
