package endtoend

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/cli"
)

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// run runs edgemirror with args and stdin.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}
