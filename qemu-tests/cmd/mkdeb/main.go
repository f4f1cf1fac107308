// Command mkdeb builds the fastreboot .deb (harness.BuildDeb: the CLI and
// what dist/nfpm.yaml lists, packaged by nfpm) into a directory and prints
// its path:
//
//	cd qemu-tests && go run ./cmd/mkdeb -o /tmp/deb
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/fastreboot/fastreboot/qemu-tests/harness"
)

func main() {
	out := flag.String("o", ".", "the directory to write fastreboot_VERSION_amd64.deb to")
	flag.Parse()
	if err := os.MkdirAll(*out, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	p, err := harness.BuildDeb(context.Background(), "", *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkdeb:", err)
		os.Exit(1)
	}
	fmt.Println(p)
}
