// Command edgemirror mirrors every container image referenced by exported
// Spectro Cloud Palette cluster profiles into an edge site's registry.
package main

import (
	"os"

	"github.com/edgemirror/edgemirror/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
