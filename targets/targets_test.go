package targets

import (
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/profile"
)

func planOf(rules Rules, refs ...string) *Plan {
	res := &profile.Result{}
	for _, r := range refs {
		res.Images = append(res.Images, profile.Image{Ref: r, Raw: r, From: profile.Provenance{Profile: "p", Pack: "k", Origin: profile.OriginContent}})
	}
	return Build(res, rules)
}

func TestTargets(t *testing.T) {
	const reg = "10.10.254.254:8000/spectro-images"
	const dgst = "sha256:4c5a1b57e685b2631909b958487f65af7746361346fcd82a8635bea3ef14509d"
	cases := []struct {
		name  string
		rules Rules
		ref   string
		want  []string // "status target" per row
	}{
		{"docker hub official", Rules{Registry: reg}, "busybox:1.37", []string{"planned " + reg + "/docker.io/library/busybox:1.37"}},
		{"docker hub user", Rules{Registry: reg}, "appdynamics/x:1", []string{"planned " + reg + "/docker.io/appdynamics/x:1"}},
		{"no tag is latest", Rules{Registry: reg}, "quay.io/a/b", []string{"planned " + reg + "/quay.io/a/b:latest"}},
		{"literal", Rules{Registry: reg, ShortNames: Literal}, "busybox:1.37", []string{"planned " + reg + "/busybox:1.37"}},
		{"both", Rules{Registry: reg, ShortNames: Both}, "busybox:1.37", []string{"planned " + reg + "/docker.io/library/busybox:1.37", "planned " + reg + "/busybox:1.37"}},
		{"both, already canonical", Rules{Registry: reg, ShortNames: Both}, "quay.io/a/b:1", []string{"planned " + reg + "/quay.io/a/b:1"}},
		{"trailing slash", Rules{Registry: "reg.local:5000/"}, "quay.io/a/b:1", []string{"planned reg.local:5000/quay.io/a/b:1"}},
		{"tag and digest", Rules{Registry: reg}, "registry.k8s.io/x:v1@" + dgst, []string{"planned " + reg + "/registry.k8s.io/x:v1"}},
		{"digest only", Rules{Registry: reg}, "registry.k8s.io/x@" + dgst, []string{"planned " + reg + "/registry.k8s.io/x@" + dgst}},
		{"mapping wins", Rules{Registry: reg, Mappings: map[string]string{"gcr.io/spectro-images-public": "site.local/spectro"}},
			"gcr.io/spectro-images-public/calico/cni:v3", []string{"planned site.local/spectro/calico/cni:v3"}},
		{"longest mapping", Rules{Mappings: map[string]string{"quay.io": "m.local/q", "quay.io/example": "m.local/ex/"}},
			"quay.io/example/app:1", []string{"planned m.local/ex/app:1"}},
		{"mapping is segment aligned", Rules{Mappings: map[string]string{"quay.io/exam": "m.local/wrong"}},
			"quay.io/example/app:1", []string{"unmapped "}},
		{"mapping on canonical docker name", Rules{Mappings: map[string]string{"docker.io/library": "m.local/lib"}},
			"busybox:1", []string{"planned m.local/lib/busybox:1"}},
		{"source host with port", Rules{Registry: reg}, "myreg.local:5000/team/app:1.0", []string{"unresolved "}},
		{"source host with port, mapped", Rules{Registry: reg, Mappings: map[string]string{"myreg.local:5000": "m.local/myreg"}},
			"myreg.local:5000/team/app:1.0", []string{"planned m.local/myreg/team/app:1.0"}},
		{"placeholder", Rules{Registry: reg}, "<versionNumber>", []string{"unresolved "}},
		{"upper-case placeholder", Rules{Registry: reg}, "REGISTRY/IMAGE:TAG", []string{"unresolved "}},
		{"empty", Rules{Registry: reg}, "", []string{"unresolved "}},
	}
	for _, c := range cases {
		p := planOf(c.rules, c.ref)
		var got []string
		for _, im := range p.Images {
			got = append(got, string(im.Status)+" "+im.Target)
		}
		if strings.Join(got, "|") != strings.Join(c.want, "|") {
			t.Errorf("%s: %q → %q, want %q", c.name, c.ref, got, c.want)
		}
	}
}

func TestReasons(t *testing.T) {
	cases := map[string]string{
		"<versionNumber>":               "<versionNumber> is a placeholder",
		"REGISTRY/IMAGE:TAG":            "looks like an upper-case placeholder",
		"****":                          "masked value",
		"":                              "empty image reference",
		"x/{{ .Values.tag }}":           "template expression that is not a Palette macro",
		"quay.io/a/b:bad tag":           "is not a valid image reference",
		"myreg.local:5000/team/app:1.0": "the source host myreg.local:5000 has a port",
	}
	for ref, want := range cases {
		p := planOf(Rules{Registry: "reg.local"}, ref)
		if len(p.Images) != 1 || p.Images[0].Status != Unresolved || !strings.Contains(p.Images[0].Reason, want) {
			t.Errorf("%q: got %+v, want unresolved with %q", ref, p.Images[0], want)
		}
	}
}

func TestUnmappedWithoutRegistry(t *testing.T) {
	p := planOf(Rules{Mappings: map[string]string{"gcr.io": "m.local/g"}}, "quay.io/a:1")
	if p.Images[0].Status != Unmapped || p.Images[0].Status.Failure() {
		t.Fatalf("got %+v", p.Images[0])
	}
}

func TestDedupAndProviderFirst(t *testing.T) {
	res := &profile.Result{Images: []profile.Image{
		{Ref: "busybox:1.36", From: profile.Provenance{Profile: "a", Pack: "x", Origin: profile.OriginContent}},
		{Ref: "docker.io/library/busybox:1.36", From: profile.Provenance{Profile: "b", Pack: "y", Origin: profile.OriginManifest}},
		{Ref: "busybox:1.36", From: profile.Provenance{Profile: "a", Pack: "x", Origin: profile.OriginContent}},
		{Ref: "ttl.sh/ubuntu:k3s", From: profile.Provenance{Profile: "a", Pack: "os", Origin: profile.OriginProvider}},
	}}
	p := Build(res, Rules{Registry: "reg.local"})
	if len(p.Images) != 2 {
		t.Fatalf("want 2 images, got %d", len(p.Images))
	}
	if !p.Images[0].Provider() || p.Images[0].Target != "reg.local/ttl.sh/ubuntu:k3s" {
		t.Errorf("provider image is not first: %+v", p.Images[0])
	}
	if len(p.Images[1].Origins) != 2 {
		t.Errorf("busybox origins = %+v, want both profiles", p.Images[1].Origins)
	}
}

func TestValidate(t *testing.T) {
	for _, reg := range []string{"UPPER/Case:x:y", "https://reg.local", "myreg", "reg.local:5000/Path", "reg.local/x:tag"} {
		if err := (Rules{Registry: reg}).Validate(); err == nil {
			t.Errorf("registry %q accepted", reg)
		}
	}
	for _, reg := range []string{"10.10.254.254:8000/spectro-images", "localhost/x", "reg.local", "reg.local:5000/a/b/"} {
		if err := (Rules{Registry: reg}).Validate(); err != nil {
			t.Errorf("registry %q rejected: %v", reg, err)
		}
	}
	if err := (Rules{Mappings: map[string]string{"gcr.io": "nohost"}}).Validate(); err == nil {
		t.Error("mapping to a non-registry accepted")
	}
	if err := (Rules{ShortNames: "odd"}).Validate(); err == nil {
		t.Error("short-names odd accepted")
	}
}

func TestCharts(t *testing.T) {
	res := &profile.Result{Charts: []profile.Chart{
		{Repo: "https://charts.example.com/stable/", Name: "hello", Version: "1.1.0"},
		{Repo: "oci://registry-1.docker.io/bitnamicharts", Name: "nginx", Version: "15.0.0+build.1"},
		{Repo: "https://example.com/x.tgz", Name: "x", Version: "1"},
		{Repo: "https://example.com", Name: "x"},
	}}
	p := Build(res, Rules{Registry: "reg.local"})
	want := []string{
		"planned reg.local/charts.example.com/stable/hello:1.1.0",
		"planned reg.local/registry-1.docker.io/bitnamicharts/nginx:15.0.0_build.1",
		"unresolved ", "unresolved ",
	}
	for i, c := range p.Charts {
		if got := string(c.Status) + " " + c.Target; got != want[i] {
			t.Errorf("chart %d: %q, want %q", i, got, want[i])
		}
	}
}

func FuzzTargets(f *testing.F) {
	for _, s := range []string{"busybox:1.37", "quay.io/a/b:1@sha256:4c5a1b57e685b2631909b958487f65af7746361346fcd82a8635bea3ef14509d", "h:5000/a", "<x>", "A/B"} {
		f.Add(s, "reg.local:5000/edge", "quay.io")
	}
	f.Fuzz(func(t *testing.T, ref, reg, from string) {
		rules := Rules{Registry: reg, Mappings: map[string]string{from: "m.local/x"}, ShortNames: Both}
		if rules.Validate() != nil {
			rules = Rules{Registry: "reg.local", ShortNames: Both}
		}
		for _, im := range planOf(rules, ref).Images {
			switch im.Status {
			case Planned:
				if im.Target == "" || im.TargetName == "" || !strings.HasPrefix(im.Target, im.TargetName) {
					t.Fatalf("planned %q with target %q", ref, im.Target)
				}
			case Unresolved, Unmapped:
				if im.Reason == "" || im.Target != "" {
					t.Fatalf("%s %q without reason or with target %q", im.Status, ref, im.Target)
				}
			default:
				t.Fatalf("unexpected status %s", im.Status)
			}
		}
	})
}

func TestClaimTags(t *testing.T) {
	const old = "sha256:4c5a1b57e685b2631909b958487f65af7746361346fcd82a8635bea3ef14509d"
	p := planOf(Rules{Registry: "reg.local"}, "nginx:1.25@"+old, "nginx:1.25", "quay.io/a/b:1@"+old)
	got := map[string]string{}
	for _, im := range p.Images {
		got[im.Source] = im.Target + " | " + im.Reason
	}
	want := map[string]string{
		"nginx:1.25@" + old:    "reg.local/docker.io/library/nginx@" + old + " | pushed by digest only: reg.local/docker.io/library/nginx:1.25 is also planned for another digest",
		"nginx:1.25":           "reg.local/docker.io/library/nginx:1.25 | ",
		"quay.io/a/b:1@" + old: "reg.local/quay.io/a/b:1 | ",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %q, want %q", k, got[k], v)
		}
	}
}

// TestMappingTieIsDeterministic: two rules whose keys differ only by a
// trailing "/" match the same names equally; the same one must win every
// time, not whichever the map yields first.
func TestMappingTieIsDeterministic(t *testing.T) {
	rules := Rules{Mappings: map[string]string{"quay.io/acme": "reg.a/one", "quay.io/acme/": "reg.b/two"}}
	first := planOf(rules, "quay.io/acme/app:1").Images[0].Target
	for range 64 {
		if got := planOf(rules, "quay.io/acme/app:1").Images[0].Target; got != first {
			t.Fatalf("the same image went to %s, then to %s", first, got)
		}
	}
	if first != "reg.a/one/app:1" {
		t.Errorf("target %s, want the rule without the trailing slash (reg.a/one/app:1)", first)
	}
}
