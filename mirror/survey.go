package mirror

import (
	"context"
	"encoding/json"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sync/errgroup"
	"oras.land/oras-go/v2"

	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
)

// survey learns, before anything is copied, which blobs the target already
// holds: for every planned image whose target tag exists (this version
// copied by an earlier run, or an older one an upgrade replaces), the blobs
// its manifests name are in that repository, so a new image that shares
// them mounts them instead of uploading them again (a site prepared once,
// then upgraded, holds most base layers already, often in other
// repositories). A registry keeps a manifest's blobs with it, so no blob is
// asked for. Failures only mean fewer mounts: the copy checks every blob.
func (e *engine) survey(ctx context.Context, plan *targets.Plan) {
	var g errgroup.Group
	g.SetLimit(e.opts.Jobs * 4)
	for _, im := range plan.Images {
		if im.Status != targets.Planned || im.Tag == "" {
			continue
		}
		g.Go(func() error {
			dst, err := e.opts.Target(im.TargetName)
			if err != nil {
				return nil
			}
			if root, err := dst.Resolve(ctx, im.Tag); err == nil {
				e.registerHeld(ctx, dst, im.TargetName, root, 0)
			}
			return nil
		})
	}
	_ = g.Wait()
}

// maxSurveyDepth bounds the nesting of indexes the survey follows.
const maxSurveyDepth = 2

// registerHeld remembers the blobs below desc as held by repo, reading the
// manifests from the target.
func (e *engine) registerHeld(ctx context.Context, dst oras.ReadOnlyTarget, repo string, desc ocispec.Descriptor, depth int) {
	raw, err := registryclient.FetchManifest(ctx, dst, desc)
	if err != nil {
		return
	}
	if isIndex(desc.MediaType) {
		var idx ocispec.Index
		if depth >= maxSurveyDepth || json.Unmarshal(raw, &idx) != nil {
			return
		}
		for _, child := range idx.Manifests {
			e.registerHeld(ctx, dst, repo, child, depth+1)
		}
		return
	}
	blobs, err := manifestBlobs(desc, raw)
	if err != nil {
		return
	}
	for _, b := range blobs {
		if here, _ := e.known(b.Digest, repo); !here && !isForeign(b) {
			e.remember(b.Digest, repo)
		}
	}
}
