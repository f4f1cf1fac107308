package preserve_test

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/preserve"
)

func ExampleOpenLayout() {
	// The running command line shares a 64 MiB region: the module cache
	// keeps the first 32 MiB, workload areas the last 32 MiB.
	l, _, err := keptmem.ParseLayout("memmap=64M!0x40000000 fastreboot.preserve=32M")
	if err != nil {
		fmt.Println(err)
		return
	}
	// On a machine this is /dev/pmem0 (preserve.Find); here a file.
	dir, _ := os.MkdirTemp("", "preserve")
	defer os.RemoveAll(dir)
	p := filepath.Join(dir, "pmem0")
	os.WriteFile(p, nil, 0o600)
	os.Truncate(p, 64<<20)
	dev, err := keptmem.OpenFileDevice(p)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer dev.Close()

	t, err := preserve.OpenLayout(dev, l)
	if err != nil {
		fmt.Println(err)
		return
	}
	a, err := t.Create("state", 16<<20, "/work", 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	// A workload maps /dev/pmem0 at a.Offset for a.Size bytes.
	fmt.Printf("%s: %d bytes at %#x, cgroup %s\n", a.Name, a.Size, a.Offset, a.Cgroup)
	_, err = t.Create("more", 16<<20, "", 1)
	fmt.Println(err)
	// Output:
	// state: 16777216 bytes at 0x2010000, cgroup /work
	// no room for the preserved area: area "more" of 16M: 16320K of the 32M areas part is free, the largest free range 16320K (the table takes the first 64K)
}
