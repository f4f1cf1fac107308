package fastreboot

// ErrorKinds names this package's own sentinel errors for the daemon's
// error registry; the names are part of its protocol. The re-exported
// kexec kinds (ErrNotSupported, ErrNotPermitted, ErrSignature, ErrBusy,
// ErrNoMemory, ErrKexecLoadForbidden) are named once, as "kexec.*", by
// internal/kexecsys.
func ErrorKinds() map[string]error {
	return map[string]error{
		"fastreboot.not_loaded":          ErrNotLoaded,
		"fastreboot.preflight":           ErrPreflight,
		"fastreboot.no_handoff":          ErrNoHandoff,
		"fastreboot.handoff":             ErrHandoff,
		"fastreboot.kernel_elf_mismatch": ErrKernelELFMismatch,
		"fastreboot.not_kernel_elf":      ErrNotKernelELF,
	}
}
