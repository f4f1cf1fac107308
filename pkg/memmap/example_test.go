package memmap_test

import (
	"fmt"
	"strings"

	"github.com/fastreboot/fastreboot/pkg/memmap"
)

// The memmap= words that give a kernel the recorded firmware map: after a
// crash every later kernel would otherwise inherit the crash kernel's
// restricted map.
func ExampleMap_CmdlineWords() {
	mm := memmap.Map{
		{Start: 0x0, End: 0x9fbff, Type: memmap.TypeRAM},
		{Start: 0x9fc00, End: 0x9ffff, Type: memmap.TypeReserved},
		{Start: 0x100000, End: 0x7ffdefff, Type: memmap.TypeRAM},
		{Start: 0x7ffdf000, End: 0x7fffffff, Type: memmap.TypeACPI},
	}
	fmt.Println(strings.Join(mm.CmdlineWords(), " "))
	// Output: memmap=exactmap memmap=639K@0x0 memmap=1K$0x9fc00 memmap=2095996K@0x100000 memmap=132K#0x7ffdf000
}
