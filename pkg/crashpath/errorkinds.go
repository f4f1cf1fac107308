package crashpath

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"crashpath.not_crash_kernel": ErrNotCrashKernel,
		"crashpath.firmware_only":    ErrFirmwareOnly,
	}
}
