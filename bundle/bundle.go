// Package bundle writes and reads airgap bundles: OCI image layouts (a
// directory, or the same as an uncompressed tar) holding every image of a
// plan under its canonical reference, annotated with where it came from,
// and the profiles themselves. A bundle written by save is pushed on site
// with the same engine as a mirror.
package bundle

import (
	"archive/tar"
	"context"

	// go-digest hashes only with the algorithms linked in.
	_ "crypto/sha256"
	_ "crypto/sha512"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/content/oci"
	"oras.land/oras-go/v2/errdef"
	"oras.land/oras-go/v2/registry"

	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
)

// Annotations edgemirror puts on the index.json entries of a bundle, next to
// org.opencontainers.image.ref.name (the canonical reference).
const (
	AnnotationSource    = "io.edgemirror.source"     // the reference as the profile wrote it
	AnnotationCanonical = "io.edgemirror.canonical"  // the canonical reference (name:tag@digest)
	AnnotationOrigins   = "io.edgemirror.origins"    // JSON list of {profile, pack, layer, origin}
	AnnotationChartRepo = "io.edgemirror.chart.repo" // a chart's repository, name and version
	AnnotationChartName = "io.edgemirror.chart.name"
	AnnotationChartVer  = "io.edgemirror.chart.version"
)

// The bundle's copy of the profiles: one artifact, one layer per file.
const (
	profilesRef          = "edgemirror.local/profiles:bundle"
	profilesArtifactType = "application/vnd.edgemirror.profiles.v1"
	profileMediaType     = "application/vnd.edgemirror.profile.v1"
)

// layoutStore is what a bundle repository needs of an OCI layout store.
type layoutStore interface {
	oras.ReadOnlyTarget
	Tag(ctx context.Context, desc ocispec.Descriptor, reference string) error
	Push(ctx context.Context, expected ocispec.Descriptor, r io.Reader) error
	Predecessors(ctx context.Context, node ocispec.Descriptor) ([]ocispec.Descriptor, error)
}

// bundleRepo is one repository inside an OCI layout: its tags are kept as
// full references (docker.io/library/busybox:1.36), so images of every
// repository share the layout and its blobs.
type bundleRepo struct {
	store layoutStore
	name  string
	dir   string // the layout directory, "" when read-only
}

func (b *bundleRepo) full(ref string) string {
	if _, err := digest.Parse(ref); err == nil {
		return b.name + "@" + ref
	}
	return b.name + ":" + ref
}

// Resolve finds ref (a tag or a digest) of this repository. A digest
// reference of an image saved under its tag (name:tag@digest) is found by
// the digest alone.
func (b *bundleRepo) Resolve(ctx context.Context, ref string) (ocispec.Descriptor, error) {
	desc, err := b.store.Resolve(ctx, b.full(ref))
	if _, derr := digest.Parse(ref); err != nil && derr == nil && errors.Is(err, errdef.ErrNotFound) {
		if desc, err = b.store.Resolve(ctx, ref); err == nil && desc.MediaType == "application/octet-stream" {
			// Only a blob by that digest: not a manifest the layout names.
			return ocispec.Descriptor{}, fmt.Errorf("%s: %w", ref, errdef.ErrNotFound)
		}
	}
	return desc, err
}

// Fetch reads content by descriptor.
func (b *bundleRepo) Fetch(ctx context.Context, d ocispec.Descriptor) (io.ReadCloser, error) {
	return b.store.Fetch(ctx, d)
}

// Exists reports whether the layout holds d.
func (b *bundleRepo) Exists(ctx context.Context, d ocispec.Descriptor) (bool, error) {
	return b.store.Exists(ctx, d)
}

// Push stores content.
func (b *bundleRepo) Push(ctx context.Context, d ocispec.Descriptor, r io.Reader) error {
	return b.store.Push(ctx, d, r)
}

// Tag tags d with this repository's ref.
func (b *bundleRepo) Tag(ctx context.Context, d ocispec.Descriptor, ref string) error {
	return b.store.Tag(ctx, d, b.full(ref))
}

// Referrers lists the manifests of the layout whose subject is desc.
func (b *bundleRepo) Referrers(ctx context.Context, desc ocispec.Descriptor, artifactType string, fn func([]ocispec.Descriptor) error) error {
	refs, err := registry.Referrers(ctx, b.store, desc, artifactType)
	if err != nil {
		return err
	}
	return fn(refs)
}

// KeepReferrer names a referrer in index.json (as NAME@DIGEST): an OCI
// layout reader finds only what the index names, and a referrer has no tag.
func (b *bundleRepo) KeepReferrer(ctx context.Context, desc ocispec.Descriptor) error {
	return b.store.Tag(ctx, desc, b.full(desc.Digest.String()))
}

// UploadChunked writes a large blob through a partial file that survives an
// interrupted run: the next run hashes what is there and reads the source
// from that offset.
func (b *bundleRepo) UploadChunked(ctx context.Context, d ocispec.Descriptor, open func(off int64) (io.ReadCloser, error), _ registryclient.ChunkOptions) (registryclient.UploadStats, error) {
	return registryclient.UploadStats{}, b.writePartial(d, open)
}

// Both kinds of target resume large blobs (checked when compiled).
var _ registryclient.ChunkUploader = (*bundleRepo)(nil)

// writePartial writes d through its partial file.
func (b *bundleRepo) writePartial(d ocispec.Descriptor, open func(off int64) (io.ReadCloser, error)) error {
	if b.dir == "" {
		return errors.New("the bundle is read-only")
	}
	alg := d.Digest.Algorithm()
	if !alg.Available() {
		return fmt.Errorf("blob %s: digest algorithm %q is not supported", d.Digest, alg)
	}
	final := filepath.Join(b.dir, "blobs", d.Digest.Algorithm().String(), d.Digest.Encoded())
	if _, err := os.Stat(final); err == nil {
		return nil
	}
	partDir := filepath.Join(b.dir, partialDir)
	if err := os.MkdirAll(partDir, 0o755); err != nil {
		return err
	}
	part := filepath.Join(partDir, d.Digest.Encoded())
	f, err := os.OpenFile(part, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	h := alg.Hash()
	off, err := io.Copy(h, f) // what an earlier run wrote
	if err != nil {
		return err
	}
	if off > d.Size {
		if err := f.Truncate(0); err != nil {
			return err
		}
		off, h = 0, alg.Hash()
	}
	if _, err := f.Seek(off, io.SeekStart); err != nil {
		return err
	}
	if off < d.Size {
		rc, err := open(off)
		if err != nil {
			return err
		}
		_, err = io.Copy(io.MultiWriter(f, h), io.LimitReader(rc, d.Size-off))
		rc.Close()
		if err != nil {
			return fmt.Errorf("writing blob %s: %w", d.Digest, err)
		}
	}
	return finishPartial(f, h, d, part, final)
}

// partialDir holds blobs being written; OCI tools ignore it.
const partialDir = ".edgemirror-partial"

func finishPartial(f *os.File, h hash.Hash, d ocispec.Descriptor, part, final string) error {
	st, err := f.Stat()
	if err != nil {
		return err
	}
	if got := digest.NewDigest(d.Digest.Algorithm(), h); st.Size() != d.Size || got != d.Digest {
		os.Remove(part)
		return fmt.Errorf("blob %s: wrote %d bytes with digest %s; the partial file is discarded", d.Digest, st.Size(), got)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	return os.Rename(part, final)
}

// Layout is a bundle being written: an OCI image layout directory.
type Layout struct {
	dir   string
	store *oci.Store
}

// Create opens (creating it) the OCI layout directory dir; what an
// earlier run stored there is kept and skipped.
func Create(ctx context.Context, dir string) (*Layout, error) {
	store, err := oci.NewWithContext(ctx, dir)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", dir, err)
	}
	// index.json is written once at the end, not after every tag.
	store.AutoSaveIndex = false
	return &Layout{dir: dir, store: store}, nil
}

// Repository is the layout as the target repository name.
func (l *Layout) Repository(name string) oras.Target {
	return &bundleRepo{store: l.store, name: name, dir: l.dir}
}

// Finish annotates every image and chart in the layout with where it came
// from, stores the profiles, and writes index.json.
func (l *Layout) Finish(ctx context.Context, plan *targets.Plan, profiles []*profile.Profile) error {
	for _, im := range plan.All() {
		if im.Status != targets.Copied && im.Status != targets.Present {
			continue
		}
		desc, err := l.rootDescriptor(ctx, im)
		if err != nil {
			return fmt.Errorf("bundle: %s: %w", im.Target, err)
		}
		origins, err := json.Marshal(im.Origins)
		if err != nil {
			return err
		}
		desc.Annotations = map[string]string{
			AnnotationSource: im.Source, AnnotationCanonical: im.Canonical, AnnotationOrigins: string(origins),
		}
		if im.Chart != nil {
			desc.Annotations[AnnotationChartRepo] = im.Chart.Repo
			desc.Annotations[AnnotationChartName] = im.Chart.Name
			desc.Annotations[AnnotationChartVer] = im.Chart.Version
		}
		if err := l.store.Tag(ctx, desc, im.Target); err != nil {
			return fmt.Errorf("bundle: %s: %w", im.Target, err)
		}
		// A name:tag@digest image is also named by its digest, as the node
		// and push read it.
		if im.PinnedDigest != "" && im.Tag != "" {
			if err := l.store.Tag(ctx, desc, im.TargetName+"@"+im.PinnedDigest); err != nil {
				return fmt.Errorf("bundle: %s: %w", im.Target, err)
			}
		}
	}
	if err := l.saveProfiles(ctx, profiles); err != nil {
		return err
	}
	if err := l.store.SaveIndex(); err != nil {
		return fmt.Errorf("bundle %s: index.json: %w", l.dir, err)
	}
	return nil
}

// rootDescriptor finds an image's manifest in the layout: by its reference,
// or, for a digest-pinned image the engine pushed untagged, by its digest,
// reading the manifest's media type (the layout knows only the bytes).
func (l *Layout) rootDescriptor(ctx context.Context, im *targets.Image) (ocispec.Descriptor, error) {
	desc, err := l.store.Resolve(ctx, im.Target)
	if err == nil || im.Tag != "" || !errors.Is(err, errdef.ErrNotFound) {
		return desc, err
	}
	if desc, err = l.store.Resolve(ctx, im.PinnedDigest); err != nil {
		return desc, err
	}
	raw, err := registryclient.FetchManifest(ctx, l.store, desc)
	if err != nil {
		return desc, err
	}
	var m struct {
		MediaType string            `json:"mediaType"`
		Manifests []json.RawMessage `json:"manifests"`
	}
	if err := json.Unmarshal(raw, &m); err != nil {
		return desc, fmt.Errorf("manifest %s is not valid JSON: %w", desc.Digest, err)
	}
	switch {
	case m.MediaType != "":
		desc.MediaType = m.MediaType
	case m.Manifests != nil: // mediaType is optional in OCI
		desc.MediaType = ocispec.MediaTypeImageIndex
	default:
		desc.MediaType = ocispec.MediaTypeImageManifest
	}
	return desc, nil
}

// saveProfiles stores each profile file once, as one artifact.
func (l *Layout) saveProfiles(ctx context.Context, profiles []*profile.Profile) error {
	var layers []ocispec.Descriptor
	seen := map[string]bool{}
	for _, p := range profiles {
		if len(p.Data) == 0 || seen[p.File] {
			continue
		}
		seen[p.File] = true
		d := content.NewDescriptorFromBytes(profileMediaType, p.Data)
		title := filepath.Base(p.File)
		if p.File == "-" {
			title = "stdin"
		}
		d.Annotations = map[string]string{ocispec.AnnotationTitle: title}
		if err := l.store.Push(ctx, d, strings.NewReader(string(p.Data))); err != nil && !errors.Is(err, errdef.ErrAlreadyExists) {
			return fmt.Errorf("bundle: profile %s: %w", p.File, err)
		}
		layers = append(layers, d)
	}
	if len(layers) == 0 {
		return nil
	}
	desc, err := oras.PackManifest(ctx, l.store, oras.PackManifestVersion1_1, profilesArtifactType, oras.PackManifestOptions{Layers: layers})
	if err != nil {
		return fmt.Errorf("bundle: profiles: %w", err)
	}
	return l.store.Tag(ctx, desc, profilesRef)
}

// WriteTar writes the layout directory dir as an uncompressed tar at path
// (through a temporary file, renamed when complete), leaving out partial
// blobs.
func WriteTar(dir, path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	defer os.Remove(tmp.Name())
	tw := tar.NewWriter(tmp)
	err = filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if d.IsDir() && rel == partialDir {
			return filepath.SkipDir
		}
		if rel == "." || d.IsDir() {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		hdr, err := tar.FileInfoHeader(info, "")
		if err != nil {
			return err
		}
		hdr.Name = filepath.ToSlash(rel)
		if err := tw.WriteHeader(hdr); err != nil {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		_, err = io.Copy(tw, f)
		return err
	})
	if err == nil {
		err = tw.Close()
	}
	if err == nil {
		err = tmp.Close()
	} else {
		tmp.Close()
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("bundle %s: %w", path, err)
	}
	return nil
}

// Reader is a bundle opened for reading (push, plan, audit).
type Reader struct {
	store interface {
		layoutStore
		Tags(ctx context.Context, last string, fn func(tags []string) error) error
	}
	// Result is what the bundle holds, as a profile extraction would
	// return it: the images and charts with their origins.
	Result *profile.Result
}

// readOnly adapts oci.ReadOnlyStore, which cannot tag or push.
type readOnly struct{ *oci.ReadOnlyStore }

func (readOnly) Tag(context.Context, ocispec.Descriptor, string) error {
	return errors.New("the bundle is read-only")
}

func (readOnly) Push(context.Context, ocispec.Descriptor, io.Reader) error {
	return errors.New("the bundle is read-only")
}

// Open opens a bundle written by save: a layout directory, or a .tar
// read in place (not unpacked).
func Open(ctx context.Context, path string) (*Reader, error) {
	st, err := os.Stat(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("bundle %s: no such file or directory", path)
		}
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	var ro *oci.ReadOnlyStore
	if st.IsDir() {
		ro, err = oci.NewFromFS(ctx, os.DirFS(path))
	} else {
		ro, err = oci.NewFromTar(ctx, path)
	}
	if err != nil {
		return nil, fmt.Errorf("bundle %s: not an OCI image layout written by edgemirror save: %w", path, err)
	}
	b := &Reader{store: readOnly{ro}, Result: &profile.Result{}}
	var refs []string
	if err := ro.Tags(ctx, "", func(tags []string) error { refs = append(refs, tags...); return nil }); err != nil {
		return nil, fmt.Errorf("bundle %s: %w", path, err)
	}
	sort.Strings(refs)
	for _, ref := range refs {
		desc, err := ro.Resolve(ctx, ref)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %s: %w", path, ref, err)
		}
		a := desc.Annotations
		if a[AnnotationSource] == "" {
			continue // not an image of the profiles (the profiles artifact)
		}
		var origins []profile.Provenance
		if err := json.Unmarshal([]byte(a[AnnotationOrigins]), &origins); err != nil {
			return nil, fmt.Errorf("bundle %s: %s: annotation %s: %w", path, ref, AnnotationOrigins, err)
		}
		for _, o := range origins {
			if a[AnnotationChartName] != "" {
				b.Result.Charts = append(b.Result.Charts, profile.Chart{Repo: a[AnnotationChartRepo], Name: a[AnnotationChartName], Version: a[AnnotationChartVer], From: o})
				continue
			}
			b.Result.Images = append(b.Result.Images, profile.Image{Ref: a[AnnotationSource], Raw: a[AnnotationSource], From: o})
		}
	}
	if len(b.Result.Images)+len(b.Result.Charts) == 0 {
		return nil, fmt.Errorf("bundle %s: holds no image saved by edgemirror save", path)
	}
	return b, nil
}

// Repository is the bundle as the source repository name.
func (b *Reader) Repository(name string) oras.ReadOnlyTarget {
	return &bundleRepo{store: b.store, name: name}
}
