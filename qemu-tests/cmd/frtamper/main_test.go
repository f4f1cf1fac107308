package main

import (
	"bytes"
	"testing"

	"github.com/fastreboot/fastreboot/internal/testimage"
	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

type blob struct{ b []byte }

func (x blob) ReadAt(p []byte, off int64) (int, error) { return bytes.NewReader(x.b).ReadAt(p, off) }
func (x blob) Size() int64                             { return int64(len(x.b)) }
func (x blob) Digest() string                          { return testimage.Digest(x.b) }

// TestFlipCarried: the byte changed is inside the named carried module's
// data, and nothing else changes.
func TestFlipCarried(t *testing.T) {
	im := testimage.Default()
	h := &fastreboot.Handoff{Generation: 2, Reason: fastreboot.ReasonUpdate, Manifest: *im.Manifest()}
	var blobs []fastreboot.Blob
	for _, b := range im.Initrds {
		blobs = append(blobs, blob{b.Data})
	}
	var piece bytes.Buffer
	piece.Write(make([]byte, 512)) // pieces before the handoff
	if _, err := fastreboot.WriteHandoffPiece(&piece, h, blobs); err != nil {
		t.Fatal(err)
	}
	orig := bytes.Clone(piece.Bytes())
	victim := im.Initrds[1].Data
	off, err := flipCarried(piece.Bytes(), fastreboot.HandoffModulesDir+"/"+testimage.Digest(victim))
	if err != nil {
		t.Fatal(err)
	}
	got := piece.Bytes()
	at := bytes.Index(orig, victim)
	if at < 0 || off != int64(at+len(victim)/2) || got[off] != orig[off]^0xff {
		t.Fatalf("flipped offset %d, module data at %d (+%d)", off, at, len(victim)/2)
	}
	got[off] ^= 0xff
	if !bytes.Equal(got, orig) {
		t.Error("more than one byte changed")
	}
}
