package bootentry_test

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/bootentry"
)

// Scan a /boot tree (here the BLS fixture) and pick what stage --default
// stages: the kernel, the initrds in order and the command line.
func Example() {
	l, err := bootentry.Scan(context.Background(), bootentry.Options{Root: filepath.Join("..", "..", "testdata", "boot", "bls")})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, e := range l.Entries {
		fmt.Println(e.Source, e.ID, e.Version)
	}
	e, err := l.DefaultEntry()
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("default:", e.ID, "by", l.DefaultReason)
	fmt.Println("kernel:", filepath.Base(e.Kernel))
	for _, i := range e.Initrds {
		fmt.Println("initrd:", filepath.Base(i))
	}
	fmt.Println("cmdline:", e.Cmdline)
	// Output:
	// bls 0a1b2c-6.1.0-10-amd64 6.1.0-10-amd64
	// bls 0a1b2c-6.1.0-9-amd64 6.1.0-9-amd64
	// default: 0a1b2c-6.1.0-10-amd64 by newest BLS entry (sort-key, machine-id, version)
	// kernel: vmlinuz-6.1.0-10-amd64
	// initrd: ucode.img
	// initrd: initrd.img-6.1.0-10-amd64
	// cmdline: root=/dev/vda rw console=ttyS0 quiet
}
