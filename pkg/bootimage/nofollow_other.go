//go:build !unix

package bootimage

// oNoFollow is 0 outside unix: there OpenFileNoFollow still refuses
// anything that is not a regular file after opening it, but a symbolic
// link is followed.
const oNoFollow = 0
