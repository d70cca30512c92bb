// Command demo shows edgemirror end to end on one machine: it starts two
// throwaway CNCF distribution registries on 127.0.0.1 (plain HTTP, no auth),
// seeds the "source" with synthetic images standing in for ttl.sh, docker.io,
// quay.io, ghcr.io and gcr.io, and mirrors the images of
// fixtures/demo/profile.json into the "target" (the edge site's external
// registry) with the real edgemirror command line, run in-process. It then
// runs the same command again to show that nothing is sent twice.
//
// Run it from the repository with `make demo` (or `cd e2e && go run
// ./cmd/demo`). It needs only Go and the loopback interface.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgemirror/edgemirror/cli"
	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/report"
)

// profilePath is where the demo profile lives, relative to the repository
// root; the demo looks for it from the working directory upwards.
const profilePath = "fixtures/demo/profile.json"

// targetPath is the path of the external registry under the target host,
// as in an installer's user data (10.10.254.254:8000/spectro-images).
const targetPath = "spectro-images"

// sourceRegistries are the public registries the demo's source registry
// stands in for: each gets a --source-mirror flag.
var sourceRegistries = []string{"ttl.sh", "docker.io", "quay.io", "ghcr.io", "gcr.io"}

func main() {
	os.Exit(run(os.Stdout, os.Stderr))
}

// run runs the demo, printing to stdout and stderr, and returns the exit
// code: the mirror's (0 when every image is in place), or 1 when the demo
// itself could not run.
func run(stdout, stderr io.Writer) int {
	return runDemo(stdout, stderr, nil)
}

// inspectFunc looks at the registries after both mirror runs, before they
// are stopped: source and target are their host:port, images the seeded
// images.
type inspectFunc func(ctx context.Context, source, target string, images []demoImage) error

// runDemo is run with an optional inspect hook for tests.
func runDemo(stdout, stderr io.Writer, inspect inspectFunc) int {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	code, err := demo(ctx, stdout, stderr, inspect)
	if err != nil {
		fmt.Fprintf(stderr, "demo: %v\n", err)
		return 1
	}
	return code
}

func demo(ctx context.Context, stdout, stderr io.Writer, inspect inspectFunc) (int, error) {
	profile, err := findProfile()
	if err != nil {
		return 0, err
	}
	images := demoImages()
	if err := checkPinnedDigests(profile, images); err != nil {
		return 0, err
	}
	reportDir, err := os.MkdirTemp("", "edgemirror-demo-")
	if err != nil {
		return 0, fmt.Errorf("report directory: %w", err)
	}

	src, err := registry.Start(registry.Options{})
	if err != nil {
		return 0, fmt.Errorf("source registry: %w", err)
	}
	defer src.Close()
	dst, err := registry.Start(registry.Options{})
	if err != nil {
		return 0, fmt.Errorf("target registry: %w", err)
	}
	defer dst.Close()
	// The proxy only counts: it shows what each run sends to the target.
	proxy, err := faultproxy.New(dst.URL(), faultproxy.Options{})
	if err != nil {
		return 0, fmt.Errorf("target proxy: %w", err)
	}
	defer proxy.Close()

	fmt.Fprintln(stdout, "edgemirror demo: two throwaway registries on 127.0.0.1, plain HTTP (no TLS, no auth)")
	fmt.Fprintf(stdout, "  source  %s  stands in for %s\n", src.Host(), strings.Join(sourceRegistries, ", "))
	fmt.Fprintf(stdout, "  target  %s  the edge site's external registry (reached through a counting proxy)\n", proxy.Host())

	started := time.Now()
	unique, err := seed(ctx, src.Host(), images)
	if err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "seeded %d images, %s of unique blobs with shared base layers, in %s\n",
		len(images), report.Bytes(unique), time.Since(started).Round(100*time.Millisecond))

	args := []string{"mirror", "-p", profile, "-r", proxy.Host() + "/" + targetPath,
		"--plain-http", "--source-plain-http", "--progress", "auto", "--state-dir", filepath.Join(reportDir, "state")}
	for _, r := range sourceRegistries {
		args = append(args, "--source-mirror", r+"="+src.Host()+"/"+r)
	}
	runs := []struct{ heading, report string }{
		{"run 1: mirror the profile into the empty target", filepath.Join(reportDir, "report.md")},
		{"run 2: the same command again: every image is already present, nothing is uploaded", filepath.Join(reportDir, "report-rerun.md")},
	}
	code := 0
	for _, r := range runs {
		a := append(append([]string(nil), args...), "--report", r.report)
		fmt.Fprintf(stdout, "\n== %s ==\n$ edgemirror %s\n", r.heading, strings.Join(a, " "))
		proxy.Reset()
		c := cli.Run(ctx, a, strings.NewReader(""), stdout, stderr)
		fmt.Fprintf(stdout, "exit code %d; %s uploaded to the target (as counted by the proxy)\n", c, report.Bytes(proxy.Stats().BytesUploaded))
		if code == 0 {
			code = c
		}
		if ctx.Err() != nil {
			return 0, ctx.Err()
		}
	}
	if err := verify(ctx, src.Host(), dst.Host(), images); err != nil {
		return 0, err
	}
	fmt.Fprintf(stdout, "\nverified: the target holds all %d images with the source's digests\n", len(images))
	if inspect != nil {
		if err := inspect(ctx, src.Host(), dst.Host(), images); err != nil {
			return 0, err
		}
	}
	fmt.Fprintf(stdout, "reports: %s (first run), %s (second run)\n", runs[0].report, runs[1].report)
	fmt.Fprintln(stdout, "next: edgemirror plan --help, edgemirror mirror --help, and README.md")
	return code, nil
}

// findProfile looks for profilePath in the working directory and its
// parents, so the demo runs from the repository root, e2e/ or a test.
func findProfile() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", fmt.Errorf("working directory: %w", err)
	}
	for {
		p := filepath.Join(dir, filepath.FromSlash(profilePath))
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("%s not found from the working directory upwards; run the demo inside the repository", profilePath)
		}
		dir = parent
	}
}

// checkPinnedDigests makes sure every digest the profile pins is the
// digest of the image the demo seeds, so the demo cannot drift from its
// profile silently.
func checkPinnedDigests(profile string, images []demoImage) error {
	b, err := os.ReadFile(profile)
	if err != nil {
		return fmt.Errorf("profile: %w", err)
	}
	text := string(b)
	for _, im := range images {
		if !im.pinned {
			continue
		}
		d, err := im.digest()
		if err != nil {
			return err
		}
		if !strings.Contains(text, im.ref+"@"+d) {
			return fmt.Errorf("%s must pin %s@%s, the digest of the image the demo seeds; update it", profile, im.ref, d)
		}
	}
	return nil
}

// seed pushes every image to the source registry at host/<canonical
// reference> and returns the unique blob bytes.
func seed(ctx context.Context, host string, images []demoImage) (int64, error) {
	t := imagebuild.Target{PlainHTTP: true}
	var built []*imagebuild.Built
	for _, im := range images {
		b, err := im.build()
		if err != nil {
			return 0, err
		}
		if err := imagebuild.Push(ctx, t, host+"/"+im.ref, b); err != nil {
			return 0, fmt.Errorf("seed %s: %w", im.ref, err)
		}
		built = append(built, b)
	}
	return imagebuild.SumUniqueBlobBytes(built...), nil
}

// verify compares every image's digest at the target with the source's.
func verify(ctx context.Context, source, target string, images []demoImage) error {
	t := imagebuild.Target{PlainHTTP: true}
	var srcRefs, dstRefs []string
	for _, im := range images {
		srcRefs = append(srcRefs, im.ref)
		dstRefs = append(dstRefs, targetPath+"/"+im.ref)
	}
	want, err := imagebuild.ManifestDigests(ctx, t, source, srcRefs...)
	if err != nil {
		return fmt.Errorf("source digests: %w", err)
	}
	got, err := imagebuild.ManifestDigests(ctx, t, target, dstRefs...)
	if err != nil {
		return fmt.Errorf("target digests: %w", err)
	}
	var errs []string
	for i, im := range images {
		w, g := want[srcRefs[i]], got[dstRefs[i]]
		switch {
		case w == "":
			errs = append(errs, fmt.Sprintf("source lacks %s", im.ref))
		case g == "":
			errs = append(errs, fmt.Sprintf("target lacks %s", dstRefs[i]))
		case g != w:
			errs = append(errs, fmt.Sprintf("target %s is %s, source is %s", dstRefs[i], g, w))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("%d of %d images differ: %s", len(errs), len(images), strings.Join(errs, "; "))
	}
	return nil
}
