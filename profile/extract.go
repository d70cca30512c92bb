package profile

import (
	"errors"
	"fmt"
	"sort"
	"strings"

	"github.com/distribution/reference"
)

// Origin says how a profile references an image.
type Origin string

// The origins of an image reference.
const (
	OriginContent  Origin = "content"  // pack.content.images
	OriginProvider Origin = "provider" // the OS layer's provider image
	OriginManifest Origin = "manifest" // a pod spec in a manifest layer
	OriginValues   Origin = "values"   // an image string in values that is not content-tagged
	OriginChart    Origin = "chart"    // pack.content.charts
)

// Provenance says where in which profile a reference was found.
type Provenance struct {
	File           string `json:"-"`
	Profile        string `json:"profile"`
	ProfileVersion string `json:"profileVersion,omitempty"`
	Pack           string `json:"pack"`
	Layer          string `json:"layer"`
	Origin         Origin `json:"origin"`
	// CloudType is the profile's cloud type (edge-native, ...).
	CloudType string `json:"-"`
}

// Image is one image reference found in a profile.
type Image struct {
	// Ref is the reference after macro expansion, scheme stripped.
	Ref string
	// Raw is the string as the profile wrote it.
	Raw string
	// Unresolved, when set, says why Ref could not be computed.
	Unresolved string
	// Skipped, when set, says why there is deliberately no image (agent mode).
	Skipped string
	// From is where the reference was found.
	From Provenance
}

// Chart is one Helm chart named in pack.content.charts.
type Chart struct {
	Repo, Name, Version string
	// Unresolved, when set, says why a field could not be expanded.
	Unresolved string
	From       Provenance
}

// Result is everything found in a set of profiles, in profile and pack order.
type Result struct {
	Images   []Image
	Charts   []Chart
	Warnings []string
}

// Options tune Extract.
type Options struct {
	// Vars override profile variables' defaults (--var NAME=VALUE).
	Vars map[string]string
	// Macros supply .spectro.macro.* and other values not in the export
	// (--macro NAME=VALUE); NAME is the path after ".spectro." or, for
	// .spectro.macro.X, just X.
	Macros map[string]string
	// IncludeValues adds image strings found in values that are not
	// content-tagged (otherwise they are only warnings).
	IncludeValues bool
}

// Extract finds every image and chart the profiles reference. Per-image
// problems become Unresolved entries; only a pack whose values or manifests
// cannot be parsed at all is an error.
func Extract(profiles []*Profile, opts Options) (*Result, error) {
	res := &Result{}
	macros := map[string]string{}
	for k, v := range opts.Macros {
		k = strings.TrimPrefix(strings.TrimPrefix(k, "."), "spectro.")
		if !strings.Contains(k, ".") {
			k = "macro." + k
		}
		macros[k] = v
	}
	values := map[*Pack]map[string]any{}
	for _, p := range profiles {
		r := &resolver{profiles: profiles, cur: p, vars: opts.Vars, macros: macros, values: values}
		for i := range p.Packs {
			if err := extractPack(r, p, &p.Packs[i], opts, res); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

// packError names the file, profile, pack and field of a bad pack.
func packError(p *Profile, pk *Pack, field string, err error) error {
	return fmt.Errorf("%s: profile %s: pack %s: %s: %v", p.File, p.Name, pk.Name, field, err)
}

func extractPack(r *resolver, p *Profile, pk *Pack, opts Options, res *Result) error {
	from := Provenance{File: p.File, Profile: p.Name, ProfileVersion: p.Version, Pack: pk.Name, Layer: pk.Layer, CloudType: p.CloudType}
	warn := func(format string, args ...any) {
		res.Warnings = append(res.Warnings, fmt.Sprintf("profile %s, pack %s: ", p.Name, pk.Name)+fmt.Sprintf(format, args...))
	}
	tree, err := r.packValues(pk)
	if err != nil {
		return fmt.Errorf("%s: profile %s: pack %s: %v", p.File, p.Name, pk.Name, err)
	}
	content := get(tree, "pack", "content")
	isOS := pk.Layer == "os"
	sawProvider := false

	list, err := listAt(content, "images")
	if err != nil {
		return packError(p, pk, "values: pack.content.images", err)
	}
	for i, item := range list {
		raw, ok := contentImage(item, func(msg string) { warn("pack.content.images[%d]: %s", i, msg) })
		if !ok {
			continue
		}
		f := from
		f.Origin = OriginContent
		if isOS {
			f.Origin = OriginProvider
			sawProvider = true
		}
		res.Images = append(res.Images, r.image(raw, f))
	}
	// An OS pack that defines system.uri but does not list it still has a
	// provider image: the agent pulls it all the same.
	if isOS && !sawProvider {
		if uri, ok := walk(get(tree, "options"), "system.uri"); ok && scalarString(uri) != "" {
			f := from
			f.Origin = OriginProvider
			res.Images = append(res.Images, r.image(scalarString(uri), f))
		}
	}

	charts, err := listAt(content, "charts")
	if err != nil {
		return packError(p, pk, "values: pack.content.charts", err)
	}
	for i, item := range charts {
		m, ok := item.(map[string]any)
		if !ok {
			warn("pack.content.charts[%d]: expected {repo, name, version}", i)
			continue
		}
		c := Chart{From: from}
		c.From.Origin = OriginChart
		for _, fld := range []struct {
			dst *string
			key string
		}{{&c.Repo, "repo"}, {&c.Name, "name"}, {&c.Version, "version"}} {
			v, err := r.expand(strings.TrimSpace(scalarString(m[fld.key])))
			if err != nil && c.Unresolved == "" {
				c.Unresolved = err.Error()
			}
			*fld.dst = v
		}
		res.Charts = append(res.Charts, c)
	}

	for i, m := range pk.Manifests {
		docs, err := parseDocs(m.Content)
		if err != nil {
			return packError(p, pk, fmt.Sprintf("manifests[%d] (%s).content", i, m.Name), err)
		}
		for _, doc := range docs {
			for _, raw := range podImages(doc) {
				f := from
				f.Origin = OriginManifest
				res.Images = append(res.Images, r.image(raw, f))
			}
		}
	}

	scanValues(r, tree, from, opts, res, warn)
	return nil
}

// listAt reads node[key] as a list; absent or null is empty, anything else
// is an error: a content list that is silently skipped loses images.
func listAt(node any, key string) ([]any, error) {
	switch v := get(node, key).(type) {
	case nil:
		return nil, nil
	case []any:
		return v, nil
	default:
		if _, ok := v.(map[string]any); ok {
			return nil, errors.New("expected a list, got an object")
		}
		return nil, fmt.Errorf("expected a list, got %q", scalarString(v))
	}
}

// contentImage reads one pack.content.images entry, warning about typos.
func contentImage(item any, warn func(string)) (string, bool) {
	switch t := item.(type) {
	case string:
		return t, true
	case map[string]any:
		var unknown []string
		for k := range t {
			if k != "image" {
				unknown = append(unknown, k)
			}
		}
		sort.Strings(unknown)
		for _, k := range unknown {
			warn(fmt.Sprintf("unknown key %q (only \"image\" is read)", k))
		}
		v, ok := t["image"]
		if !ok {
			warn("no \"image\" key; entry ignored")
			return "", false
		}
		return scalarString(v), true
	default:
		warn("expected {image: REF}; entry ignored")
		return "", false
	}
}

// image expands one raw reference into an Image.
func (r *resolver) image(raw string, from Provenance) Image {
	img := Image{Raw: raw, From: from}
	v, err := r.expand(strings.TrimSpace(raw))
	img.Ref = stripScheme(strings.TrimSpace(v))
	if err != nil {
		img.Unresolved = err.Error()
		return img
	}
	if from.Origin == OriginProvider && strings.EqualFold(img.Ref, "NA") {
		img.Skipped = "agent mode: system.uri is NA, there is no provider image"
	}
	return img
}

// stripScheme removes the container:// (or docker://) prefix Palette allows.
func stripScheme(s string) string {
	for _, scheme := range []string{"container://", "docker://"} {
		if len(s) >= len(scheme) && strings.EqualFold(s[:len(scheme)], scheme) {
			return s[len(scheme):]
		}
	}
	return s
}

// scanValues finds image strings in values outside pack.content: `image:`
// strings and {registry, repository, tag} maps. They are warnings, or images
// with opts.IncludeValues.
func scanValues(r *resolver, tree map[string]any, from Provenance, opts Options, res *Result, warn func(string, ...any)) {
	tagged := map[string]bool{}
	for _, img := range res.Images {
		if img.From.Profile == from.Profile && img.From.Pack == from.Pack {
			tagged[normalize(img.Ref)] = true
		}
	}
	seen := map[string]bool{}
	var visit func(node any, path string)
	visit = func(node any, path string) {
		switch t := node.(type) {
		case map[string]any:
			if path == "pack" {
				return // pack.* holds content tags and install settings, not chart values
			}
			if raw, ok := repoTag(t); ok {
				report(r, raw, path, from, opts, res, warn, tagged, seen)
			}
			keys := make([]string, 0, len(t))
			for k := range t {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			for _, k := range keys {
				child := joinPath(path, k)
				if s, ok := t[k].(string); ok && k == "image" {
					report(r, s, child, from, opts, res, warn, tagged, seen)
					continue
				}
				visit(t[k], child)
			}
		case []any:
			for i, v := range t {
				visit(v, fmt.Sprintf("%s[%d]", path, i))
			}
		}
	}
	visit(tree, "")
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// repoTag reads a Helm-style {registry, repository, tag} image map.
func repoTag(m map[string]any) (string, bool) {
	repo, ok := m["repository"].(string)
	if !ok || repo == "" {
		return "", false
	}
	tag := scalarString(m["tag"])
	if tag == "" {
		return "", false
	}
	ref := repo + ":" + tag
	if reg, ok := m["registry"].(string); ok && reg != "" {
		ref = strings.TrimSuffix(reg, "/") + "/" + ref
	}
	return ref, true
}

func report(r *resolver, raw, path string, from Provenance, opts Options, res *Result, warn func(string, ...any), tagged, seen map[string]bool) {
	raw = strings.TrimSpace(raw)
	if raw == "" || strings.ContainsAny(raw, " \t\n") {
		return
	}
	img := r.image(raw, from)
	img.From.Origin = OriginValues
	key := normalize(img.Ref)
	if tagged[key] || seen[key] {
		return
	}
	seen[key] = true
	if opts.IncludeValues {
		res.Images = append(res.Images, img)
		return
	}
	warn("values %s: image %s is referenced but not content-tagged (not mirrored; add it to pack.content.images, or use --include-values)", path, img.Ref)
}

// normalize gives the canonical form of a reference for comparisons, or the
// string itself when it is not a valid reference.
func normalize(s string) string {
	if n, err := reference.ParseNormalizedNamed(s); err == nil {
		return reference.TagNameOnly(n).String()
	}
	return s
}
