package main

import (
	"context"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// Targets of the extra figures.
const (
	auditImages  = 1000
	maxAuditTime = 3 * time.Second
	// resumeRate throttles the resume figure's uploads so that the kill
	// lands near the half-way mark (signalAt).
	resumeRate = 128 * mib
)

// extras are the resume and audit figures; nil when not measured.
type extras struct {
	resume *interruptResult
	audit  *usage
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

// print prints the extra figures that were measured.
func (x extras) print(w io.Writer) {
	fmt.Fprintln(w, "\n| extra figure | measured | target | met |")
	fmt.Fprintln(w, "|---|---:|---:|---|")
	if r := x.resume; r != nil {
		fmt.Fprintf(w, "| bytes re-sent after a SIGKILL at %.1f MiB of a %.0f MiB layer (rerun sent %.1f MiB, exit %d) | %.2f MiB | < %d MiB (one chunk) | %s |\n",
			float64(r.first-(r.unique-r.layer))/mib, float64(r.layer)/mib, float64(r.second)/mib, r.rerun.exit, float64(r.resent())/mib, chunkSize/mib,
			yes(r.resent() < chunkSize && r.rerun.exit == 0 && r.check == ""))
	}
	if a := x.audit; a != nil {
		fmt.Fprintf(w, "| audit of %d images (peak RSS %.1f MiB) | %.2f s | < %.0f s | %s |\n",
			auditImages, float64(a.maxRSS)/mib, a.wall.Seconds(), maxAuditTime.Seconds(), yes(a.wall < maxAuditTime))
	}
}
