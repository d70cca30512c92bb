package endtoend

import (
	"bytes"
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/cli"
)

// result is one in-process run of the CLI.
type result struct {
	code           int
	stdout, stderr string
}

// run runs edgemirror with args and stdin. A mirror or push without
// --state-dir gets a state directory of its own: the tests run in parallel,
// and what one run remembers of its registries (uploads in progress, blobs
// placed) must not reach another test's registry on a reused port.
func run(t *testing.T, stdin string, args ...string) result {
	t.Helper()
	if len(args) > 0 && (args[0] == "mirror" || args[0] == "push") && !slices.Contains(args, "--state-dir") {
		args = append(slices.Clip(args), "--state-dir", t.TempDir())
	}
	var out, errb bytes.Buffer
	code := cli.Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return result{code, out.String(), errb.String()}
}
