package fastreboot_test

import (
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/fastreboot"
)

// A command line flag chooses the load method; StageOptions carry it to
// one Stage, and an unknown name is refused rather than defaulted.
func ExampleParseLoadMethod() {
	for _, flag := range []string{"", "segments", "kexec"} {
		m, err := fastreboot.ParseLoadMethod(flag)
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		so := fastreboot.StageOptions{Load: m, DryRun: true}
		fmt.Println(so.Load)
	}
	// Output:
	// file
	// segments
	// error: load method "kexec": want "file" or "segments"
}
