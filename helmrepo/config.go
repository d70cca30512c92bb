package helmrepo

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"
	"unicode"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2/content/memory"
)

// Media types of a Helm chart stored in an OCI registry, as `helm push`
// writes them (the constants of Helm's registry package).
const (
	// ConfigMediaType is the media type of the config blob: the
	// chart's metadata (Chart.yaml) as JSON.
	ConfigMediaType = "application/vnd.cncf.helm.config.v1+json"
	// ChartMediaType is the media type of the layer: the chart
	// archive (.tgz), byte for byte.
	ChartMediaType = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
)

// buildStore lays the chart out as `helm push` does (Helm's
// registry.Client.Push): config json.Marshal(metadata), the archive as the
// only layer, and a manifest annotated as generateOCIAnnotations does.
func buildStore(ctx context.Context, meta *metadata, created time.Time, archive []byte, tag string) (*memory.Store, error) {
	config, err := json.Marshal(meta)
	if err != nil {
		return nil, fmt.Errorf("encoding the chart metadata: %w", err)
	}
	configDesc := ocispec.Descriptor{MediaType: ConfigMediaType, Digest: digest.FromBytes(config), Size: int64(len(config))}
	layerDesc := ocispec.Descriptor{MediaType: ChartMediaType, Digest: digest.FromBytes(archive), Size: int64(len(archive))}
	manifest, err := json.Marshal(ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		// Helm leaves mediaType out of the manifest body; the OCI image spec
		// asks for it, and registries rely on it for content negotiation.
		MediaType:   ocispec.MediaTypeImageManifest,
		Config:      configDesc,
		Layers:      []ocispec.Descriptor{layerDesc},
		Annotations: manifestAnnotations(meta, created),
	})
	if err != nil {
		return nil, fmt.Errorf("encoding the manifest: %w", err)
	}
	manifestDesc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest))}

	store := memory.New()
	for _, b := range []struct {
		desc ocispec.Descriptor
		data []byte
	}{{configDesc, config}, {layerDesc, archive}, {manifestDesc, manifest}} {
		if err := store.Push(ctx, b.desc, bytes.NewReader(b.data)); err != nil {
			return nil, fmt.Errorf("storing %s: %w", b.desc.MediaType, err)
		}
	}
	if err := store.Tag(ctx, manifestDesc, tag); err != nil {
		return nil, fmt.Errorf("tagging %s: %w", tag, err)
	}
	return store, nil
}

// manifestAnnotations is Helm's registry.generateOCIAnnotations:
// description, title, version, url, created, source, authors from the
// metadata, then every Chart.yaml annotation except title and version.
// created is the modification time of Chart.yaml in the archive: Helm uses
// the archive file's modification time, which is the moment `helm package`
// wrote both; the archive's own clock keeps the manifest digest stable.
func manifestAnnotations(meta *metadata, created time.Time) map[string]string {
	a := map[string]string{}
	add := func(k, v string) {
		if strings.TrimSpace(v) != "" {
			a[k] = v
		}
	}
	add(ocispec.AnnotationDescription, string(meta.Description))
	add(ocispec.AnnotationTitle, string(meta.Name))
	add(ocispec.AnnotationVersion, string(meta.Version))
	add(ocispec.AnnotationURL, string(meta.Home))
	add(ocispec.AnnotationCreated, created.UTC().Format(time.RFC3339))
	if len(meta.Sources) > 0 {
		add(ocispec.AnnotationSource, string(meta.Sources[0]))
	}
	if len(meta.Maintainers) > 0 {
		var sb strings.Builder
		for i, m := range meta.Maintainers {
			sb.WriteString(string(m.Name))
			if m.Email != "" {
				sb.WriteString(" (" + string(m.Email) + ")")
			}
			if i < len(meta.Maintainers)-1 {
				sb.WriteString(", ")
			}
		}
		add(ocispec.AnnotationAuthors, sb.String())
	}
	for k, v := range meta.Annotations {
		if k != ocispec.AnnotationTitle && k != ocispec.AnnotationVersion {
			a[k] = string(v)
		}
	}
	return a
}

// metadata is Helm's chart.Metadata (chart API v2): the
// same fields, order and JSON names, so json.Marshal gives the bytes
// `helm push` writes as the config.
type metadata struct {
	Name         looseString            `json:"name,omitempty"`
	Home         looseString            `json:"home,omitempty"`
	Sources      []looseString          `json:"sources,omitempty"`
	Version      looseString            `json:"version,omitempty"`
	Description  looseString            `json:"description,omitempty"`
	Keywords     []looseString          `json:"keywords,omitempty"`
	Maintainers  []*maintainer          `json:"maintainers,omitempty"`
	Icon         looseString            `json:"icon,omitempty"`
	APIVersion   looseString            `json:"apiVersion,omitempty"`
	Condition    looseString            `json:"condition,omitempty"`
	Tags         looseString            `json:"tags,omitempty"`
	AppVersion   looseString            `json:"appVersion,omitempty"`
	Deprecated   bool                   `json:"deprecated,omitempty"`
	Annotations  map[string]looseString `json:"annotations,omitempty"`
	KubeVersion  looseString            `json:"kubeVersion,omitempty"`
	Dependencies []*dependency          `json:"dependencies,omitempty"`
	Type         looseString            `json:"type,omitempty"`
}

// maintainer is Helm's chart.Maintainer.
type maintainer struct {
	Name  looseString `json:"name,omitempty"`
	Email looseString `json:"email,omitempty"`
	URL   looseString `json:"url,omitempty"`
}

// dependency is Helm's chart.Dependency.
type dependency struct {
	Name         looseString   `json:"name"`
	Version      looseString   `json:"version,omitempty"`
	Repository   looseString   `json:"repository"`
	Condition    looseString   `json:"condition,omitempty"`
	Tags         []looseString `json:"tags,omitempty"`
	Enabled      bool          `json:"enabled,omitempty"`
	ImportValues []any         `json:"import-values,omitempty"`
	Alias        looseString   `json:"alias,omitempty"`
	DependsOn    []looseString `json:"depends-on,omitempty"`
}

// sanitize is the string clean-up of Helm's Metadata.Validate (what `helm
// push` stores has been through it), with its checks for null list items.
func (m *metadata) sanitize() error {
	s := func(p ...*looseString) {
		for _, v := range p {
			*v = looseString(sanitizeString(string(*v)))
		}
	}
	each := func(l []looseString) {
		for i := range l {
			s(&l[i])
		}
	}
	s(&m.Name, &m.Description, &m.Home, &m.Icon, &m.Condition, &m.Tags, &m.AppVersion, &m.KubeVersion)
	each(m.Sources)
	each(m.Keywords)
	for _, mt := range m.Maintainers {
		if mt == nil {
			return errors.New("maintainers must not contain empty or null nodes")
		}
		s(&mt.Name, &mt.Email, &mt.URL)
	}
	for _, d := range m.Dependencies {
		if d == nil {
			return errors.New("dependencies must not contain empty or null nodes")
		}
		s(&d.Name, &d.Version, &d.Repository, &d.Condition)
		each(d.Tags)
		each(d.DependsOn)
	}
	return nil
}

// sanitizeString is Helm's sanitizeString: white space becomes a space,
// other unprintable characters go.
func sanitizeString(str string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsSpace(r) {
			return ' '
		}
		if unicode.IsPrint(r) {
			return r
		}
		return -1
	}, str)
}
