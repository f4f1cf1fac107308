//go:build !unix

package crashhandler

// oNoFollow is 0 outside unix, which has no O_NOFOLLOW (and no procfs).
const oNoFollow = 0
