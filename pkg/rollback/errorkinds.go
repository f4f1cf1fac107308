package rollback

// ErrorKinds names this package's sentinel errors for the daemon's error
// registry; the names are part of its protocol.
func ErrorKinds() map[string]error {
	return map[string]error{
		"rollback.not_on_trial": ErrNotOnTrial,
		"rollback.policy":       ErrPolicy,
		"rollback.no_good":      ErrNoGood,
	}
}
