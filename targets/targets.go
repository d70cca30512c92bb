// Package targets computes where every image and chart of a set of
// profiles goes, exactly as the Palette agent will pull it: references
// normalized as containerd does, mapping rules, the external registry
// prefixed, short-name modes, and the statuses of the plan. It does no
// network I/O.
package targets

import (
	// go-digest validates sha256 digests only when the hash is linked in;
	// without it every pinned reference would be "unsupported digest algorithm".
	_ "crypto/sha256"
	"fmt"
	"regexp"
	"sort"
	"strings"

	"github.com/distribution/reference"

	"github.com/edgemirror/edgemirror/profile"
)

// Status is the outcome for one image.
type Status string

// The statuses of the report.
const (
	Planned    Status = "planned"    // plan: will be copied
	Copied     Status = "copied"     // mirror: copied this run
	Present    Status = "present"    // already at the target with the same digest
	Missing    Status = "missing"    // not at the source (audit: not at the target)
	Mismatch   Status = "mismatch"   // the target tag points at another digest
	Failed     Status = "failed"     // could not be placed; Reason says why
	Unresolved Status = "unresolved" // no valid reference could be computed
	Unmapped   Status = "unmapped"   // no rule sends it anywhere: the cluster pulls it from its origin
	Skipped    Status = "skipped"    // deliberately nothing to copy (agent mode)
)

// Failure reports whether a status means the image is not where the cluster
// needs it (exit code 3).
func (s Status) Failure() bool {
	switch s {
	case Missing, Mismatch, Failed, Unresolved:
		return true
	}
	return false
}

// ShortNames says how a short name such as busybox:1.37 is prefixed.
type ShortNames string

// The --short-names modes.
const (
	Canonical ShortNames = "canonical" // prefix docker.io/library/busybox:1.37
	Literal   ShortNames = "literal"   // prefix busybox:1.37 as written
	Both      ShortNames = "both"      // push both tags
)

// Rules are the target rules: mapping rules first, else the external
// registry prefixed to the canonical (or literal) reference.
type Rules struct {
	// Registry is the external registry, HOST[:PORT][/PATH]; "" when only
	// mapping rules apply.
	Registry string
	// Mappings are FROM=TO prefix rules on the canonical name.
	Mappings map[string]string
	// ShortNames is the prefixing mode; "" means Canonical.
	ShortNames ShortNames
	// Bundle makes every target the canonical reference itself: images go
	// into an OCI layout under their own names (save), not to a registry.
	Bundle bool
}

// Image is one image at one target.
type Image struct {
	// Source is the reference as written after macros.
	Source string `json:"source"`
	// Canonical is the normalized source reference.
	Canonical string `json:"canonical,omitempty"`
	// Target is where the image goes.
	Target string `json:"target,omitempty"`
	// Digest is the manifest digest: pinned in the profile, or found at copy.
	Digest string `json:"digest,omitempty"`
	// Status is the outcome; Reason says why when it is not a success.
	Status Status `json:"status"`
	Reason string `json:"reason,omitempty"`
	// Origins lists every place the image was found.
	Origins []profile.Provenance `json:"origins"`
	// Bytes is the total size of the image's blobs and manifests.
	Bytes int64 `json:"bytes,omitempty"`
	// Platforms lists os/arch of the copied manifests.
	Platforms []string `json:"platforms,omitempty"`
	// Note is what planning has to say about a planned image; the outcome's
	// reason is added to it.
	Note string `json:"-"`
	// Optional marks an image whose absence is a warning, not a failure:
	// an edge-native k8s layer image, which the provider image carries.
	Optional bool `json:"optional,omitempty"`

	// Name is the canonical source repository (docker.io/library/busybox).
	Name string `json:"-"`
	// Tag and PinnedDigest are the source's tag and digest, kept apart.
	Tag          string `json:"-"`
	PinnedDigest string `json:"-"`
	// TargetName is the target repository including its host.
	TargetName string `json:"-"`
	// Chart is the chart entry a Helm chart row comes from; nil for images.
	Chart *profile.Chart `json:"-"`
}

// SourceRef is the canonical source reference to read: by digest when pinned.
func (im *Image) SourceRef() string {
	if im.PinnedDigest != "" {
		return im.Name + "@" + im.PinnedDigest
	}
	return im.Name + ":" + im.Tag
}

// Provider reports whether the image is an OS provider image.
func (im *Image) Provider() bool {
	for _, o := range im.Origins {
		if o.Origin == profile.OriginProvider {
			return true
		}
	}
	return false
}

// InProvider reports whether the image comes only from the k8s layer of
// edge-native profiles: the agent loads those from the provider image.
func (im *Image) InProvider() bool {
	for _, o := range im.Origins {
		if o.Layer != "k8s" || o.CloudType != "edge-native" {
			return false
		}
	}
	return len(im.Origins) > 0
}

// Plan is every image and chart with its target.
type Plan struct {
	Images   []*Image
	Charts   []*Image
	Warnings []string
}

// All lists the images, then the charts.
func (p *Plan) All() []*Image {
	return append(append([]*Image(nil), p.Images...), p.Charts...)
}

// Validate checks the registry and mapping targets; the error is one line
// naming the flag value.
func (r Rules) Validate() error {
	if r.Registry != "" {
		if err := checkRegistry(r.Registry); err != nil {
			return fmt.Errorf("registry %q: %w", r.Registry, err)
		}
	}
	for from, to := range r.Mappings {
		if strings.TrimSpace(from) == "" {
			return fmt.Errorf("mapping %q=%q: empty FROM", from, to)
		}
		if err := checkRegistry(to); err != nil {
			return fmt.Errorf("mapping %s=%s: %w", from, to, err)
		}
	}
	switch r.ShortNames {
	case "", Canonical, Literal, Both:
	default:
		return fmt.Errorf("short-names %q: must be canonical, literal or both", r.ShortNames)
	}
	return nil
}

// checkRegistry accepts HOST[:PORT][/PATH] where HOST is a registry host
// (has a dot or a port, or is localhost): anything else would be read as a
// Docker Hub path by the node.
func checkRegistry(reg string) error {
	if strings.Contains(reg, "://") {
		return fmt.Errorf("give the registry without a scheme (HOST[:PORT][/PATH])")
	}
	reg = strings.TrimSuffix(reg, "/")
	n, err := reference.ParseNamed(reg + "/x")
	if err != nil || n.String() != reg+"/x" {
		return fmt.Errorf("not a registry HOST[:PORT][/PATH] (lower-case path components, no tag)")
	}
	host := reference.Domain(n)
	if !strings.ContainsAny(host, ".:") && host != "localhost" {
		return fmt.Errorf("%q is not a registry host (it needs a dot, a port or to be localhost)", host)
	}
	return nil
}

// Build computes the target of every image and chart of res.
func Build(res *profile.Result, rules Rules) *Plan {
	if rules.ShortNames == "" {
		rules.ShortNames = Canonical
	}
	rules.Registry = strings.TrimSuffix(rules.Registry, "/")
	p := &Plan{Warnings: append([]string(nil), res.Warnings...)}
	index := map[string]*Image{}
	add := func(list *[]*Image, im *Image, from profile.Provenance) {
		// The same image written two ways ("busybox:1.36" and its canonical
		// form) is one row; strings that are not images are grouped as written.
		key := im.Canonical + "\x00" + im.Target
		if im.Canonical == "" {
			key = string(im.Status) + "\x00" + im.Source + "\x00" + im.Reason
		}
		if old, ok := index[key]; ok {
			old.Origins = appendOrigin(old.Origins, from)
			return
		}
		im.Origins = []profile.Provenance{from}
		index[key] = im
		*list = append(*list, im)
	}
	for _, img := range res.Images {
		for _, im := range rules.targets(img) {
			add(&p.Images, im, img.From)
		}
	}
	for _, c := range res.Charts {
		add(&p.Charts, rules.chart(c), c.From)
	}
	claimTags(p.Images)
	// The agent pulls the provider image first, so it is copied first.
	sort.SliceStable(p.Images, func(i, j int) bool { return p.Images[i].Provider() && !p.Images[j].Provider() })
	return p
}

// claimTags resolves rows that would move one target tag to different
// digests (nginx:1.25 and nginx:1.25@sha256:...): the digest-pinned rows are
// pushed by digest only, which is how the node pulls them, and the tag goes
// to the row that names it without a digest.
func claimTags(images []*Image) {
	byTarget := map[string][]*Image{}
	for _, im := range images {
		if im.Status == Planned && im.Tag != "" {
			byTarget[im.Target] = append(byTarget[im.Target], im)
		}
	}
	for target, rows := range byTarget {
		if len(rows) < 2 {
			continue
		}
		for _, im := range rows {
			if im.PinnedDigest == "" {
				continue
			}
			im.Tag = ""
			im.Target = im.TargetName + "@" + im.PinnedDigest
			im.Note = fmt.Sprintf("pushed by digest only: %s is also planned for another digest", target)
			im.Reason = im.Note
		}
	}
}

// Notes joins the non-empty notes with "; ".
func Notes(notes ...string) string {
	var out []string
	for _, n := range notes {
		if n != "" {
			out = append(out, n)
		}
	}
	return strings.Join(out, "; ")
}

func appendOrigin(list []profile.Provenance, o profile.Provenance) []profile.Provenance {
	for _, x := range list {
		if x == o {
			return list
		}
	}
	return append(list, o)
}

// targets returns one Image per target of img (two with --short-names both
// when the literal and canonical forms differ).
func (r Rules) targets(img profile.Image) []*Image {
	base := &Image{Source: img.Ref}
	switch {
	case img.Skipped != "":
		base.Status, base.Reason = Skipped, img.Skipped
		return []*Image{base}
	case img.Unresolved != "":
		base.Status, base.Reason = Unresolved, img.Unresolved
		return []*Image{base}
	}
	named, err := reference.ParseNormalizedNamed(img.Ref)
	if err != nil {
		base.Status, base.Reason = Unresolved, refProblem(img.Ref, err)
		return []*Image{base}
	}
	base.Name = named.Name()
	if t, ok := named.(reference.Tagged); ok {
		base.Tag = t.Tag()
	}
	if d, ok := named.(reference.Digested); ok {
		base.PinnedDigest = d.Digest().String()
		base.Digest = base.PinnedDigest
	}
	if base.Tag == "" && base.PinnedDigest == "" {
		base.Tag = "latest"
	}
	base.Canonical = base.SourceRefWithTag()

	names := []string{base.Name}
	if r.ShortNames != Canonical {
		literal := literalName(img.Ref)
		if r.ShortNames == Literal {
			names = []string{literal}
		} else if literal != base.Name {
			names = append(names, literal)
		}
	}
	var out []*Image
	for _, n := range names {
		im := *base
		r.place(&im, n)
		out = append(out, &im)
	}
	return out
}

// SourceRefWithTag renders name:tag@digest with whichever parts are set.
func (im *Image) SourceRefWithTag() string {
	s := im.Name
	if im.Tag != "" {
		s += ":" + im.Tag
	}
	if im.PinnedDigest != "" {
		s += "@" + im.PinnedDigest
	}
	return s
}

// place sets the target of im whose name to prefix is name.
func (r Rules) place(im *Image, name string) {
	target := ""
	if r.Bundle {
		target = im.Name
	} else if from, ok := r.match(im.Name); ok {
		target = strings.TrimSuffix(r.Mappings[from], "/") + strings.TrimPrefix(im.Name, strings.TrimSuffix(from, "/"))
	} else if r.Registry != "" {
		target = r.Registry + "/" + name
	} else {
		im.Status, im.Reason = Unmapped, "no mapping rule matches and no external registry is set: the cluster pulls it from its origin"
		return
	}
	n, err := reference.ParseNamed(target)
	if err != nil || n.String() != target {
		im.Status = Unresolved
		im.Reason = fmt.Sprintf("target %s is not a valid reference", target)
		if d, _, _ := strings.Cut(im.Name, "/"); strings.Contains(d, ":") {
			im.Reason += fmt.Sprintf(": the source host %s has a port, which becomes a path component with a colon; add a --mapping rule for %s", d, d)
		}
		return
	}
	im.TargetName = target
	im.Target = target + ":" + im.Tag
	if im.Tag == "" {
		im.Target = target + "@" + im.PinnedDigest
	}
	im.Status = Planned
}

// match finds the longest mapping key that is a segment-aligned prefix of
// name.
func (r Rules) match(name string) (string, bool) { return longestPrefix(r.Mappings, name) }

// Relocate applies --source-mirror rules (REGISTRY=LOCATION, such as
// quay.io=127.0.0.1:5001/quay.io) to the repository name: the longest
// segment-aligned key wins, its part of the name is replaced by its
// location. A name no rule matches is returned as it is.
func Relocate(mirrors map[string]string, name string) string {
	from, ok := longestPrefix(mirrors, name)
	if !ok {
		return name
	}
	return strings.TrimSuffix(mirrors[from], "/") + strings.TrimPrefix(name, strings.TrimSuffix(from, "/"))
}

// longestPrefix finds the longest key of m that is name or a prefix of it
// ending at a "/".
func longestPrefix(m map[string]string, name string) (string, bool) {
	best, found := "", false
	for from := range m {
		f := strings.TrimSuffix(from, "/")
		if name != f && !strings.HasPrefix(name, f+"/") {
			continue
		}
		// Keys that differ only by a trailing "/" tie: the smaller key
		// wins, whatever order the map gives.
		b := strings.TrimSuffix(best, "/")
		if !found || len(f) > len(b) || len(f) == len(b) && from < best {
			best, found = from, true
		}
	}
	return best, found
}

// literalName is the repository as written, without tag or digest.
func literalName(ref string) string {
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	return ref
}

var (
	placeholderRE = regexp.MustCompile(`<[^>]*>`)
	maskedRE      = regexp.MustCompile(`^\*+$`)
)

// refProblem explains why a string is not an image reference.
func refProblem(s string, err error) string {
	switch {
	case s == "":
		return "empty image reference"
	case strings.Contains(s, "{{"):
		return fmt.Sprintf("%s contains a template expression that is not a Palette macro", s)
	case placeholderRE.MatchString(s):
		return fmt.Sprintf("%s is a placeholder, not an image reference", s)
	case maskedRE.MatchString(s):
		return "masked value, not an image reference"
	case strings.ToLower(s) != s && strings.ToUpper(s) == s:
		return fmt.Sprintf("%s looks like an upper-case placeholder, not an image reference", s)
	}
	return fmt.Sprintf("%s is not a valid image reference: %v", s, err)
}

// chart plans a Helm chart: its OCI reference is REPO-HOST/PATH/NAME:VERSION.
func (r Rules) chart(c profile.Chart) *Image {
	im := &Image{Source: strings.TrimSuffix(c.Repo, "/") + "/" + c.Name + ":" + c.Version, Chart: &c}
	if c.Unresolved != "" {
		im.Status, im.Reason = Unresolved, c.Unresolved
		return im
	}
	repo := c.Repo
	for _, scheme := range []string{"oci://", "https://", "http://"} {
		repo = strings.TrimPrefix(repo, scheme)
	}
	repo = strings.TrimSuffix(repo, "/")
	if c.Name == "" || c.Version == "" || repo == "" {
		im.Status, im.Reason = Unresolved, "chart needs repo, name and version"
		return im
	}
	if strings.HasSuffix(repo, ".tgz") || strings.HasSuffix(repo, ".tar.gz") {
		im.Status, im.Reason = Unresolved, "chart repo is a tarball URL, not a chart repository"
		return im
	}
	// OCI tags cannot hold "+": Helm stores semver build metadata with "_".
	ref := repo + "/" + c.Name + ":" + strings.ReplaceAll(c.Version, "+", "_")
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		im.Status, im.Reason = Unresolved, refProblem(ref, err)
		return im
	}
	im.Name = named.Name()
	im.Tag = named.(reference.Tagged).Tag()
	im.Canonical = im.Name + ":" + im.Tag
	r.place(im, im.Name)
	return im
}
