package mirror

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// ParsePlatforms checks --platform values (os/arch[/variant]).
func ParsePlatforms(list []string) ([]string, error) {
	var out []string
	for _, item := range list {
		for _, p := range strings.Split(item, ",") {
			p = strings.TrimSpace(p)
			if p == "" {
				continue
			}
			parts := strings.Split(p, "/")
			if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
				return nil, fmt.Errorf("platform %q: expected os/arch[/variant], such as linux/amd64", p)
			}
			out = append(out, p)
		}
	}
	return out, nil
}

// matchPlatform reports whether p is one of the wanted os/arch[/variant];
// a wanted value without a variant matches every variant.
func matchPlatform(p *ocispec.Platform, wanted []string) bool {
	if p == nil {
		return false
	}
	for _, w := range wanted {
		parts := strings.Split(w, "/")
		if parts[0] == p.OS && parts[1] == p.Architecture && (len(parts) == 2 || parts[2] == p.Variant) {
			return true
		}
	}
	return false
}

// filterIndex keeps the index entries of the wanted platforms. The result is
// a new index with a new digest: with --platform, an image pulled by tag gets
// exactly the platforms asked for, and the report says the digest changed.
func (e *engine) filterIndex(raw []byte, desc ocispec.Descriptor) (ocispec.Descriptor, []byte, string, error) {
	var doc map[string]json.RawMessage
	var idx ocispec.Index
	if err := json.Unmarshal(raw, &doc); err != nil {
		return desc, nil, "", fmt.Errorf("index %s is not valid JSON: %w", desc.Digest, err)
	}
	if err := json.Unmarshal(raw, &idx); err != nil {
		return desc, nil, "", fmt.Errorf("index %s is not valid JSON: %w", desc.Digest, err)
	}
	var keep []ocispec.Descriptor
	for _, m := range idx.Manifests {
		if matchPlatform(m.Platform, e.opts.Platforms) {
			keep = append(keep, m)
		}
	}
	if len(keep) == 0 {
		return desc, nil, "", fmt.Errorf("index %s has no manifest for %s", desc.Digest, strings.Join(e.opts.Platforms, ","))
	}
	if len(keep) == len(idx.Manifests) {
		return desc, raw, "", nil
	}
	list, err := json.Marshal(keep)
	if err != nil {
		return desc, nil, "", err
	}
	// Every other field of the index (annotations, mediaType) is kept as is.
	doc["manifests"] = list
	out, err := json.Marshal(doc)
	if err != nil {
		return desc, nil, "", err
	}
	nd := ocispec.Descriptor{MediaType: desc.MediaType, Digest: digest.FromBytes(out), Size: int64(len(out))}
	note := fmt.Sprintf("index filtered to %s: digest %s differs from the source index %s", strings.Join(e.opts.Platforms, ","), nd.Digest, desc.Digest)
	return nd, out, note, nil
}
