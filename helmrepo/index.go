package helmrepo

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// fetchIndex downloads the index.yaml at u, at most limit bytes, and parses
// it. Its errors start with "index.yaml: ".
func fetchIndex(ctx context.Context, client *http.Client, u *url.URL, user *url.Userinfo, limit int64) (*repoIndex, error) {
	raw, err := getAll(ctx, client, u, user, limit, "index.yaml")
	if err != nil {
		return nil, err
	}
	idx, err := parseIndex(raw)
	if err != nil {
		return nil, fmt.Errorf("index.yaml: %w", err)
	}
	return idx, nil
}

// repoIndex is the part of a repository's index.yaml Repos reads (Helm's
// repo.IndexFile).
type repoIndex struct {
	APIVersion looseString              `json:"apiVersion" yaml:"apiVersion"`
	Entries    map[string][]*indexEntry `json:"entries" yaml:"entries"`
}

type indexEntry struct {
	Name    looseString   `json:"name" yaml:"name"`
	Version looseString   `json:"version" yaml:"version"`
	URLs    []looseString `json:"urls" yaml:"urls"`
	Digest  looseString   `json:"digest" yaml:"digest"`
}

// parseIndex reads an index as Helm's loadIndex does: JSON when it is
// valid JSON, YAML otherwise.
func parseIndex(b []byte) (*repoIndex, error) {
	var idx repoIndex
	if len(bytes.TrimSpace(b)) == 0 {
		return nil, errors.New("empty")
	}
	if json.Valid(b) {
		if err := json.Unmarshal(b, &idx); err != nil {
			return nil, jsonError(err)
		}
	} else {
		var doc yaml.Node
		if err := yaml.Unmarshal(b, &doc); err != nil {
			return nil, oneLine(err)
		}
		if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
			return nil, errors.New("not a Helm chart repository index (not a YAML mapping)")
		}
		if err := doc.Content[0].Decode(&idx); err != nil {
			return nil, oneLine(err)
		}
	}
	if idx.APIVersion == "" && len(idx.Entries) == 0 {
		return nil, errors.New("not a Helm chart repository index (no apiVersion, no entries)")
	}
	return &idx, nil
}

// findVersion finds version exactly, then ignoring a leading "v" on
// either side (what Helm's semver match amounts to for an exact version).
func findVersion(entries []*indexEntry, version string) *indexEntry {
	for _, e := range entries {
		if e != nil && string(e.Version) == version {
			return e
		}
	}
	want := strings.TrimPrefix(version, "v")
	for _, e := range entries {
		if e != nil && strings.TrimPrefix(string(e.Version), "v") == want {
			return e
		}
	}
	return nil
}

// availableVersions lists the versions an index has, oldest first; past 10, the
// newest 10.
func availableVersions(entries []*indexEntry) string {
	var vs []string
	for _, e := range entries {
		if e != nil && e.Version != "" && !slices.Contains(vs, string(e.Version)) {
			vs = append(vs, string(e.Version))
		}
	}
	if len(vs) == 0 {
		return "(the repository lists no versions of it)"
	}
	slices.SortStableFunc(vs, compareVersions)
	const show = 10
	if len(vs) > show {
		return fmt.Sprintf("(the repository has %d versions, the newest %s)", len(vs), strings.Join(vs[len(vs)-show:], ", "))
	}
	return "(the repository has " + strings.Join(vs, ", ") + ")"
}

func didYouMean(idx *repoIndex, name string) string {
	for n := range idx.Entries {
		if strings.EqualFold(n, name) {
			return " (did you mean " + n + "?)"
		}
	}
	return ""
}

// compareVersions orders versions by semantic versioning (a leading "v"
// and build metadata ignored); what does not parse sorts first, by text.
func compareVersions(a, b string) int {
	pa, oka := parseSemver(a)
	pb, okb := parseSemver(b)
	switch {
	case !oka && !okb:
		return strings.Compare(a, b)
	case !oka:
		return -1
	case !okb:
		return 1
	}
	for i := range 3 {
		if c := cmp.Compare(pa.core[i], pb.core[i]); c != 0 {
			return c
		}
	}
	switch {
	case pa.pre == nil && pb.pre == nil:
		return strings.Compare(a, b)
	case pa.pre == nil:
		return 1
	case pb.pre == nil:
		return -1
	}
	for i := 0; i < len(pa.pre) && i < len(pb.pre); i++ {
		x, y := pa.pre[i], pb.pre[i]
		nx, ex := strconv.ParseUint(x, 10, 64)
		ny, ey := strconv.ParseUint(y, 10, 64)
		switch {
		case ex == nil && ey == nil && nx != ny:
			return cmp.Compare(nx, ny)
		case ex == nil && ey != nil:
			return -1
		case ex != nil && ey == nil:
			return 1
		case x != y:
			return strings.Compare(x, y)
		}
	}
	if c := cmp.Compare(len(pa.pre), len(pb.pre)); c != 0 {
		return c
	}
	return strings.Compare(a, b)
}

type semver struct {
	core [3]int64
	pre  []string
}

func parseSemver(s string) (semver, bool) {
	var v semver
	s = strings.TrimPrefix(s, "v")
	s, _, _ = strings.Cut(s, "+")
	s, pre, hasPre := strings.Cut(s, "-")
	parts := strings.Split(s, ".")
	if len(parts) > 3 {
		return v, false
	}
	for i, p := range parts {
		n, err := strconv.ParseInt(p, 10, 64)
		if err != nil || n < 0 {
			return v, false
		}
		v.core[i] = n
	}
	if hasPre {
		v.pre = strings.Split(pre, ".")
	}
	return v, true
}
