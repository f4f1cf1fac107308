package keptmem_test

import (
	"fmt"

	"github.com/fastreboot/fastreboot/pkg/keptmem"
	"github.com/fastreboot/fastreboot/pkg/memmap"
)

func ExamplePlan() {
	fw := memmap.Map{
		{Start: 0x100000, End: 0x7ffdefff, Type: memmap.TypeRAM},
		{Start: 0x100000000, End: 0x1ffffffff, Type: memmap.TypeRAM},
	}
	crashkernel := memmap.Range{Start: 0x1e0000000, End: 0x200000000}
	r, err := keptmem.Plan(fw, 256<<20, []memmap.Range{crashkernel})
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(r.CmdlineWords())
	next, _ := keptmem.InheritCmdline("console=ttyS0 quiet", "root=/dev/vda "+r.CmdlineWords()[0])
	fmt.Println(next)
	// Output:
	// [memmap=256M!0x1d0000000]
	// console=ttyS0 quiet memmap=256M!0x1d0000000
}
