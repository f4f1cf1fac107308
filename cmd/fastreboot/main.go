// Command fastreboot reboots Linux through kexec without the firmware,
// keeping the boot image's modules in a verified in-RAM cache across
// generations. Run `fastreboot help` for the commands.
package main

import (
	"context"
	"os"

	"github.com/fastreboot/fastreboot/internal/cli"
)

func main() {
	os.Exit(cli.Main(context.Background(), os.Args[1:], os.Stdout, os.Stderr))
}
