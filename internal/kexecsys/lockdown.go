package kexecsys

import (
	"bytes"
	"fmt"
	"strings"
)

// LockdownPath is the lockdown LSM's state file, relative to the root of
// the file system. It lists the modes with the active one in brackets,
// e.g. "none [integrity] confidentiality"; it is absent without the
// lockdown LSM or securityfs. Under integrity or confidentiality the kernel
// refuses kexec_load whatever the image (kernel/kexec.c, kexec_load_check:
// security_locked_down(LOCKDOWN_KEXEC)), and kexec_file_load of an
// unsigned kernel.
const LockdownPath = "sys/kernel/security/lockdown"

// ParseLockdown returns the active mode of a lockdown state file: the word
// in brackets. It fails when no word is bracketed.
func ParseLockdown(b []byte) (string, error) {
	for _, w := range strings.Fields(string(b)) {
		if len(w) > 2 && w[0] == '[' && w[len(w)-1] == ']' {
			return w[1 : len(w)-1], nil
		}
	}
	return "", fmt.Errorf("no active mode in %q", bytes.TrimSpace(b))
}
