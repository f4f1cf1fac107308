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
	words, rest := splitCmdline(s)
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
	if rest != "" {
		kept = append(kept, "--")
		if r := strings.TrimSpace(rest); r != "" {
			kept = append(kept, r)
		}
	}
	return strings.Join(kept, " ")
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

// splitCmdline splits s into kernel parameters the way the kernel's
// next_arg does, stopping at a bare "--". rest is what follows the "--"
// ("" if there is none; " " if it is followed by nothing).
func splitCmdline(s string) (words []string, rest string) {
	i := 0
	for {
		for i < len(s) && isCmdlineSpace(s[i]) {
			i++
		}
		if i == len(s) {
			return words, ""
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
			return words, " " + s[i:]
		}
		words = append(words, w)
	}
}

func isCmdlineSpace(c byte) bool {
	return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f'
}
