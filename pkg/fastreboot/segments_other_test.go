//go:build !(linux && amd64)

package fastreboot

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/fastreboot/fastreboot/pkg/bootimage"
)

// TestSegmentsNotSupported checks that off linux/amd64 the segments load
// method refuses before it reads anything, with ErrNotSupported naming the
// method, and that the kexec_load calls of KexecLoader do too.
func TestSegmentsNotSupported(t *testing.T) {
	mc := &Machine{}
	_, err := mc.prepareSegments(context.Background(), &bootimage.Manifest{}, bootimage.Module{}, nil, buildSpec{})
	var l KexecLoader
	for name, err := range map[string]error{
		"prepareSegments":     err,
		"SegmentsLoad":        l.SegmentsLoad(0, nil),
		"SegmentsLoadOnCrash": l.SegmentsLoadOnCrash(0, nil),
		"loadSegments":        mc.loadSegments(nil, nil, "", true),
	} {
		if !errors.Is(err, ErrNotSupported) || !strings.Contains(fmt.Sprint(err), string(LoadSegments)+" load method") {
			t.Errorf("%s: %v, want ErrNotSupported naming the %s load method", name, err, LoadSegments)
		}
	}
}
