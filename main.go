// Command edgemirror mirrors every container image referenced by exported
// Spectro Cloud Palette cluster profiles into an edge site's registry.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/edgemirror/edgemirror/cli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := cli.Run(ctx, os.Args[1:], os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
