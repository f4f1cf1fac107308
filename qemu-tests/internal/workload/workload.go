// Package workload is the state of TestPreserveWorkload's guest workload
// (cmd/frworkload): pseudo-random bytes from a seed, the same on the host
// (which writes them to a disk file) and in the guest (which writes them
// into a preserved area).
package workload

import (
	"encoding/binary"
	"math/rand/v2"
)

// Fill fills p with the ChaCha8 stream of seed: the same bytes for the
// same seed on every machine and Go version (ChaCha8 is specified).
func Fill(p []byte, seed uint64) {
	var key [32]byte
	binary.LittleEndian.PutUint64(key[:], seed)
	r := rand.NewChaCha8(key)
	r.Read(p)
}
