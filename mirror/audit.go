package mirror

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
	"github.com/edgemirror/edgemirror/transport"
)

// Audit checks, without copying, that every planned image is at its target:
// Present with the digest found, or Missing. With verifySource it also
// resolves each source and reports Mismatch when the target points at
// another digest (with opts.Platforms, the platform manifests of an index
// are compared instead of the index). Without verifySource no request goes
// to any source registry. At most opts.Jobs images are checked at once.
func Audit(ctx context.Context, plan *targets.Plan, opts Options, verifySource bool) {
	if opts.Jobs <= 0 {
		opts.Jobs = 8
	}
	var g errgroup.Group
	g.SetLimit(opts.Jobs)
	for _, im := range plan.All() {
		if im.Status != targets.Planned {
			continue
		}
		g.Go(func() error {
			auditImage(ctx, im, opts, verifySource)
			im.Reason = targets.Notes(im.Note, im.Reason)
			if h := opts.Hooks.ImageDone; h != nil {
				h(im)
			}
			return nil
		})
	}
	_ = g.Wait()
	for _, im := range plan.Images {
		if im.Status == targets.Missing && im.Optional {
			plan.Warnings = append(plan.Warnings, fmt.Sprintf("%s is not at the target; the agent loads it from the provider image, so the deployment does not need it", im.Target))
		}
	}
}

func auditImage(ctx context.Context, im *targets.Image, opts Options, verifySource bool) {
	fail := func(err error) { im.Status, im.Reason = targets.Failed, transport.Describe(err) }
	dst, err := opts.Target(im.TargetName)
	if err != nil {
		fail(err)
		return
	}
	ref := im.Tag
	if ref == "" {
		ref = im.PinnedDigest
	}
	found, err := resolve(ctx, dst, ref)
	switch {
	case errors.Is(err, errdef.ErrNotFound):
		im.Status, im.Reason = targets.Missing, "not at the target"
		if im.InProvider() {
			im.Optional = true
			im.Reason += "; the provider image carries the k8s layer's images, so this is a warning"
		}
		return
	case err != nil:
		fail(fmt.Errorf("checking %s at the target: %w", im.Target, err))
		return
	}
	im.Status, im.Digest, im.Reason = targets.Present, found.Digest.String(), ""
	want := im.PinnedDigest
	if verifySource && want == "" {
		src, err := opts.source(im)
		if err != nil {
			fail(err)
			return
		}
		sdesc, err := resolve(ctx, src, im.Tag)
		if err != nil {
			if errors.Is(err, errdef.ErrNotFound) {
				im.Reason = "present at the target, but not found at the source to compare"
				return
			}
			fail(fmt.Errorf("resolving %s at the source: %w", im.SourceRef(), err))
			return
		}
		if len(opts.Platforms) > 0 && isIndex(sdesc.MediaType) && isIndex(found.MediaType) {
			comparePlatforms(ctx, im, opts, src, dst, sdesc, found)
			return
		}
		want = sdesc.Digest.String()
	}
	if want != "" && want != im.Digest {
		im.Status, im.Reason = targets.Mismatch, fmt.Sprintf("the target points at %s, the source at %s", im.Digest, want)
	}
}

// resolve finds a manifest by HEAD, falling back to GET for registries that
// do not answer HEAD on manifests.
func resolve(ctx context.Context, t oras.ReadOnlyTarget, ref string) (ocispec.Descriptor, error) {
	desc, err := t.Resolve(ctx, ref)
	if err == nil || errors.Is(err, errdef.ErrNotFound) || ctx.Err() != nil {
		return desc, err
	}
	rf, ok := t.(registry.ReferenceFetcher)
	if !ok {
		return desc, err
	}
	d, rc, gerr := rf.FetchReference(ctx, ref)
	if gerr != nil {
		return desc, err
	}
	rc.Close()
	return d, nil
}

// comparePlatforms compares the manifests of the wanted platforms in the
// source and target indexes.
func comparePlatforms(ctx context.Context, im *targets.Image, opts Options, src, dst oras.ReadOnlyTarget, sdesc, tdesc ocispec.Descriptor) {
	children := func(t oras.ReadOnlyTarget, d ocispec.Descriptor) (map[string]string, error) {
		raw, err := registryclient.FetchManifest(ctx, t, d)
		if err != nil {
			return nil, err
		}
		var idx ocispec.Index
		if err := json.Unmarshal(raw, &idx); err != nil {
			return nil, fmt.Errorf("index %s is not valid JSON: %w", d.Digest, err)
		}
		out := map[string]string{}
		for _, m := range idx.Manifests {
			if matchPlatform(m.Platform, opts.Platforms) {
				out[platformString(m.Platform)] = m.Digest.String()
			}
		}
		return out, nil
	}
	want, err := children(src, sdesc)
	if err == nil {
		var got map[string]string
		if got, err = children(dst, tdesc); err == nil {
			var bad []string
			for p, d := range want {
				switch g := got[p]; {
				case g == "":
					bad = append(bad, p+" is not in the target index")
				case g != d:
					bad = append(bad, fmt.Sprintf("%s is %s at the target, %s at the source", p, g, d))
				}
			}
			sort.Strings(bad)
			if len(bad) > 0 {
				im.Status, im.Reason = targets.Mismatch, strings.Join(bad, "; ")
			}
			return
		}
	}
	im.Status, im.Reason = targets.Failed, transport.Describe(err)
}
