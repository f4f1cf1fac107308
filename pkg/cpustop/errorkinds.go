package cpustop

// ErrorKinds names this package's own sentinel errors for the daemon's
// error registry; the names are part of its protocol. ErrNotSupported is
// the shared kexecsys kind ("kexec.not_supported") and is not listed here.
func ErrorKinds() map[string]error {
	return map[string]error{
		"cpustop.unknown_policy":   ErrUnknownPolicy,
		"cpustop.not_hotpluggable": ErrNotHotpluggable,
		"cpustop.timeout":          ErrTimeout,
		"cpustop.cpus_missing":     ErrCPUsMissing,
	}
}
