package harness

import (
	"context"
	"errors"
	"path/filepath"
	"testing"
)

// TestFindModuleDir checks that the guest's commands are built from the
// qemu-tests module, found from inside it and from the repository's root.
func TestFindModuleDir(t *testing.T) {
	want, err := filepath.Abs("..") // harness/ -> qemu-tests/
	if err != nil {
		t.Fatal(err)
	}
	for _, from := range []string{".", "..", "../.."} {
		got, err := FindModuleDir(from)
		if abs, _ := filepath.Abs(got); err != nil || abs != want {
			t.Errorf("FindModuleDir(%q) = %q, %v; want %q", from, got, err, want)
		}
	}
}

// TestCheckBuildAcrossModules checks that CheckBuild finds the library's
// packages (FastrebootCmd) in the parent directory of the tests' module and
// the tests' own (FrguestCmd) inside it, and reports ErrNoPackage for a
// package in neither.
func TestCheckBuildAcrossModules(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the CLI and frguest for the guest")
	}
	dir, err := FindModuleDir("")
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for _, pkg := range []string{FastrebootCmd, FrguestCmd} {
		if err := CheckBuild(ctx, dir, pkg); err != nil {
			t.Errorf("CheckBuild(%s): %v", pkg, err)
		}
	}
	for _, pkg := range []string{ModulePath + "/cmd/nosuch", TestsModulePath + "/cmd/nosuch"} {
		if err := CheckBuild(ctx, dir, pkg); !errors.Is(err, ErrNoPackage) {
			t.Errorf("CheckBuild(%s) = %v, want ErrNoPackage", pkg, err)
		}
	}
}
