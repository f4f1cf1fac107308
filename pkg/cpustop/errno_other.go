//go:build !unix

package cpustop

func errnoName(error) string { return "" }

// oNoFollow is 0: systems outside unix have no O_NOFOLLOW (and no sysfs).
const oNoFollow = 0
