package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgemirror/edgemirror/e2e/faultproxy"
	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// Targets of the extra figures.
const (
	auditImages  = 1000
	maxAuditTime = 3 * time.Second
	chunkSize    = 16 * mib // edgemirror's default --chunk-size
)

// resumeResult is the resume figure: an edgemirror killed (SIGKILL) when the
// provider image's largest layer is half uploaded, then run again.
type resumeResult struct {
	layer         int64 // size of the layer
	first, second int64 // bytes uploaded by each run
	unique        int64 // unique bytes of the provider image
}

// resent is what crossed the wire twice.
func (r resumeResult) resent() int64 { return r.first + r.second - r.unique }

// writeSingleProfile writes a profile whose OS layer lists refs.
func writeSingleProfile(path, layer string, refs []string) error {
	values := "pack:\n  content:\n    images:\n"
	for _, r := range refs {
		values += fmt.Sprintf("      - image: %q\n", r)
	}
	doc := map[string]any{
		"metadata": map[string]any{"name": "bench-" + layer},
		"spec": map[string]any{"version": "1.0.0", "template": map[string]any{"type": "cluster", "cloudType": "edge-native",
			"packs": []any{map[string]any{"name": "pack-" + layer, "layer": layer, "version": "1.0.0", "values": values}}}},
	}
	raw, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, raw, 0o644)
}

// measureResume kills a mirror of the provider image at half its largest
// layer and measures what the rerun sends.
func measureResume(ctx context.Context, edgemirror, work string, src *registry.Registry, c *corpus, logf func(string, ...any)) (resumeResult, error) {
	provider, built := c.images[0], c.built[0]
	res := resumeResult{unique: imagebuild.SumUniqueBlobBytes(built)}
	for _, l := range built.Layers {
		res.layer = max(res.layer, l.Size)
	}
	dst, err := registry.Start(registry.Options{RootDir: filepath.Join(work, "target-resume")})
	if err != nil {
		return res, fmt.Errorf("resume target registry: %w", err)
	}
	defer dst.Close()
	// Throttled so the kill lands near the half-way mark.
	proxy, err := faultproxy.New(dst.URL(), faultproxy.Options{Faults: faultproxy.Faults{UploadBytesPerSec: 128 * mib}})
	if err != nil {
		return res, err
	}
	defer proxy.Close()
	profile := filepath.Join(work, "resume-profile.json")
	if err := writeSingleProfile(profile, "os", []string{provider.ref}); err != nil {
		return res, err
	}
	reg, _, _ := strings.Cut(provider.ref, "/")
	args := []string{"mirror", "-p", profile, "-r", proxy.Host() + "/" + targetPath, "--plain-http", "--source-plain-http",
		"--progress", "none", "--state-dir", filepath.Join(work, "resume-state"), "--source-mirror", reg + "=" + src.Host() + "/" + reg}

	cmd := exec.CommandContext(ctx, edgemirror, args...)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		return res, err
	}
	deadline := time.Now().Add(2 * time.Minute)
	for proxy.Stats().BytesUploaded < res.layer/2 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	_ = cmd.Process.Signal(syscall.SIGKILL)
	_ = cmd.Wait()
	res.first = proxy.Stats().BytesUploaded
	logf("resume: killed edgemirror after %.1f MiB of the %.0f MiB layer", float64(res.first)/mib, float64(res.layer)/mib)
	proxy.Reset()
	out, err := exec.CommandContext(ctx, edgemirror, args...).CombinedOutput()
	if err != nil {
		return res, fmt.Errorf("resume rerun: %v: %s", err, lastLine(string(out)))
	}
	res.second = proxy.Stats().BytesUploaded
	return res, nil
}

// measureAudit seeds auditImages small images straight into a target at
// their mirrored references and times `edgemirror audit` of them.
func measureAudit(ctx context.Context, m meter, edgemirror, work string, logf func(string, ...any)) (usage, error) {
	dst, err := registry.Start(registry.Options{RootDir: filepath.Join(work, "target-audit")})
	if err != nil {
		return usage{}, fmt.Errorf("audit target registry: %w", err)
	}
	defer dst.Close()
	started := time.Now()
	refs := make([]string, auditImages)
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(16)
	target := imagebuild.Target{PlainHTTP: true, Concurrency: 1}
	for i := range refs {
		refs[i] = fmt.Sprintf("quay.io/bench/app%03d:1.0.%d", i%50, i)
		img := imagebuild.Image{Layers: imagebuild.Layers(900, 4*kib), Labels: map[string]string{"n": fmt.Sprint(i)}}
		ref := dst.Host() + "/" + targetPath + "/" + refs[i]
		g.Go(func() error {
			_, err := imagebuild.PushImage(gctx, target, ref, img)
			return err
		})
	}
	if err := g.Wait(); err != nil {
		return usage{}, fmt.Errorf("seeding the audit target: %w", err)
	}
	logf("audit: seeded %d images in %s", auditImages, since(started))
	profile := filepath.Join(work, "audit-profile.json")
	if err := writeSingleProfile(profile, "addon", refs); err != nil {
		return usage{}, err
	}
	return m.measure(ctx, edgemirror, "audit", "-p", profile, "-r", dst.Host()+"/"+targetPath, "--plain-http", "--progress", "none")
}

// printExtras prints the resume and audit figures.
func printExtras(w io.Writer, r resumeResult, a usage) {
	fmt.Fprintln(w, "\n| extra figure | measured | target | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	fmt.Fprintf(w, "| bytes re-sent after a SIGKILL at %.1f MiB of a %.0f MiB layer (rerun sent %.1f MiB) | %.2f MiB | < %d MiB (one chunk) | %s |\n",
		float64(r.first)/mib, float64(r.layer)/mib, float64(r.second)/mib, float64(r.resent())/mib, chunkSize/mib, yes(r.resent() < chunkSize))
	fmt.Fprintf(w, "| audit of %d images (peak RSS %.1f MiB) | %.2f s | < %.0f s | %s |\n",
		auditImages, float64(a.maxRSS)/mib, a.wall.Seconds(), maxAuditTime.Seconds(), yes(a.wall < maxAuditTime))
}
