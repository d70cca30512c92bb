package main

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
)

// TestDemo runs the whole demo and checks, independently of the demo's
// own verification, that the target holds every seeded image under
// spectro-images/ with the source's digest.
func TestDemo(t *testing.T) {
	t.Setenv("TMPDIR", t.TempDir()) // the demo keeps its reports in a temporary directory
	var stdout, stderr bytes.Buffer
	checked := 0
	inspect := func(ctx context.Context, source, target string, images []demoImage) error {
		pt := imagebuild.Target{PlainHTTP: true}
		for _, im := range images {
			want, _, err := imagebuild.FetchManifest(ctx, pt, source+"/"+im.ref)
			if err != nil {
				return fmt.Errorf("source %s: %w", im.ref, err)
			}
			got, _, err := imagebuild.FetchManifest(ctx, pt, target+"/spectro-images/"+im.ref)
			if err != nil {
				return fmt.Errorf("target %s: %w", im.ref, err)
			}
			if got.Digest != want.Digest {
				return fmt.Errorf("target %s is %s, source is %s", im.ref, got.Digest, want.Digest)
			}
			checked++
		}
		return nil
	}
	code := runDemo(&stdout, &stderr, inspect)
	if code != 0 {
		t.Fatalf("exit code %d\nstdout:\n%s\nstderr:\n%s", code, stdout.String(), stderr.String())
	}
	n := len(demoImages())
	if checked != n {
		t.Fatalf("checked %d images at the target, want %d", checked, n)
	}
	out := stdout.String()
	for _, s := range []string{
		fmt.Sprintf("%d images: %d copied", n, n),
		fmt.Sprintf("%d images: %d present", n, n),
		"0 B uploaded to the target",
	} {
		if !strings.Contains(out, s) {
			t.Errorf("stdout lacks %q:\n%s", s, out)
		}
	}
}
