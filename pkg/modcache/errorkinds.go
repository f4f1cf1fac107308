package modcache

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"modcache.no_source":        ErrNoSource,
		"modcache.not_cached":       ErrNotCached,
		"modcache.digest_mismatch":  ErrDigestMismatch,
		"modcache.size_mismatch":    ErrSizeMismatch,
		"modcache.closed":           ErrClosed,
		"modcache.module_too_large": ErrModuleTooLarge,
	}
}
