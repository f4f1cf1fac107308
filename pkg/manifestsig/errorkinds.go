package manifestsig

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"manifestsig.unsigned":      ErrUnsigned,
		"manifestsig.bad_signature": ErrBadSignature,
		"manifestsig.unknown_key":   ErrUnknownKey,
		"manifestsig.malformed":     ErrMalformed,
	}
}
