package profile

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestParseErrors(t *testing.T) {
	cases := []struct{ name, data, want string }{
		{"empty.json", "  \n", "empty.json: empty file"},
		{"bad.json", "{\"metadata\": {\n \"name\": }", "bad.json: invalid JSON: line 2"},
		{"bad.yaml", "metadata:\n  name: [x\n", "bad.yaml: invalid YAML"},
		{"notprofile.json", `{"foo": 1}`, "notprofile.json: not a cluster profile export: no spec"},
		{"list.json", `[]`, "list.json: empty list"},
		{"nopacks.json", `{"metadata":{"name":"p"},"spec":{"template":{"packs":[]}}}`, "nopacks.json: profile p: spec.template.packs: empty"},
		{"values.json", `{"metadata":{"name":"p"},"spec":{"template":{"packs":[{"name":"x","values":{"a":1}}]}}}`, "values.json: profile p: spec.template.packs[0] (x): values: expected one YAML string, got an object"},
		{"scalar.yaml", "just a string", "scalar.yaml: line 1: expected an exported cluster profile"},
		{"version.json", `{"spec":{"version":{"x":1},"template":{"packs":[{"name":"x"}]}}}`, "version.json: invalid JSON"},
	}
	for _, c := range cases {
		_, err := Parse(c.name, []byte(c.data))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("Parse(%s) error = %v, want it to contain %q", c.name, err, c.want)
		}
		if err != nil && strings.Contains(err.Error(), "\n") {
			t.Errorf("Parse(%s) error is not one line: %q", c.name, err)
		}
	}
}

func TestParseLenient(t *testing.T) {
	js := `[{"metadata":{"name":"a","unknown":true},"spec":{"version":1.10,"template":{"packs":[{"name":"p","version":2,"tag":"1.x","manifests":null,"extra":[1]}]},"variables":[{"name":"v","defaultValue":3}]}},
	        {"metadata":{"name":"b"},"spec":{"template":{"packs":[{"name":"q"}]}}}]`
	ps, err := Parse("two.json", []byte(js))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Version != "1.10" || ps[0].Packs[0].Version != "2" || ps[0].Variables[0].DefaultValue != "3" || ps[1].Name != "b" {
		t.Fatalf("unexpected decode: %+v %+v", ps[0], ps[1])
	}
	y := "metadata:\n  name: y\nspec:\n  version: 1.10\n  template:\n    packs:\n      - name: p\n        version: 1.20\n"
	ps, err = Parse("one.yaml", []byte(y))
	if err != nil {
		t.Fatal(err)
	}
	if ps[0].Version != "1.10" || ps[0].Packs[0].Version != "1.20" {
		t.Fatalf("YAML versions not kept as written: %+v", ps[0])
	}
}

func TestReadFilesAndStdin(t *testing.T) {
	dir := t.TempDir()
	f := filepath.Join(dir, "p.json")
	if err := os.WriteFile(f, []byte(`{"metadata":{"name":"file"},"spec":{"template":{"packs":[{"name":"x"}]}}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	ps, err := Read([]string{f, "-"}, strings.NewReader("metadata: {name: stdin}\nspec: {template: {packs: [{name: y}]}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[0].Name != "file" || ps[1].Name != "stdin" || ps[1].File != "-" {
		t.Fatalf("got %+v", ps)
	}
	_, err = Read([]string{filepath.Join(dir, "missing.json")}, nil)
	if err == nil || !strings.Contains(err.Error(), "missing.json: cannot read profile: no such file or directory") {
		t.Fatalf("missing file error = %v", err)
	}
}

func TestExtract(t *testing.T) {
	p := &Profile{Name: "prof", File: "f.json", CloudType: "edge-native", Packs: []Pack{
		{Name: "os", Layer: "os", Values: "pack:\n  content:\n    images:\n      - image: '{{ .spectro.pack.os.options.system.uri }}'\noptions:\n  system.uri: NA\n"},
		{Name: "app", Layer: "addon", Type: "oci", Values: `
pack:
  content:
    images:
      - image: container://quay.io/a/b:1
      - iamge: quay.io/typo:1
      - image: "<versionNumber>"
      - image: "{{ .spectro.macro.missing }}"
    charts:
      - repo: oci://reg.example/charts
        name: app
        version: "{{ .spectro.var.v }}"
image:
  repository: bitnami/redis
  tag: 7.2
sidecar:
  image: quay.io/a/b:1
`},
		{Name: "m", Layer: "addon", Type: "manifest", Manifests: []Manifest{{Name: "x", Content: `
apiVersion: v1
kind: ConfigMap
data:
  image: not/an:image
---
apiVersion: batch/v1
kind: CronJob
spec:
  jobTemplate:
    spec:
      template:
        spec:
          containers: [{name: c, image: "busybox:{{ .spectro.var.v }}"}]
---
kind: List
items:
  - kind: Pod
    spec:
      ephemeralContainers: [{image: debug:1}]
      initContainers: [{image: init:1}]
`}}},
	}, Variables: []Variable{{Name: "v", DefaultValue: "1.36"}}}
	res, err := Extract([]*Profile{p}, Options{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range res.Images {
		got = append(got, string(im.From.Origin)+" "+im.Ref+" u="+im.Unresolved+" s="+im.Skipped)
	}
	want := []string{
		"provider NA u= s=agent mode: system.uri is NA, there is no provider image",
		"content quay.io/a/b:1 u= s=",
		"content <versionNumber> u= s=",
		`content {{ .spectro.macro.missing }} u={{ .spectro.macro.missing }}: macro "missing" is not in the export; give --macro missing=VALUE s=`,
		"manifest busybox:1.36 u= s=",
		"manifest init:1 u= s=",
		"manifest debug:1 u= s=",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("images:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if len(res.Charts) != 1 || res.Charts[0].Version != "1.36" || res.Charts[0].Repo != "oci://reg.example/charts" {
		t.Errorf("charts = %+v", res.Charts)
	}
	warnings := strings.Join(res.Warnings, "\n")
	for _, w := range []string{`pack.content.images[1]: unknown key "iamge"`, "image bitnami/redis:7.2 is referenced but not content-tagged"} {
		if !strings.Contains(warnings, w) {
			t.Errorf("warnings lack %q:\n%s", w, warnings)
		}
	}
	if strings.Contains(warnings, "sidecar") {
		t.Errorf("a content-tagged image was warned about:\n%s", warnings)
	}

	res, err = Extract([]*Profile{p}, Options{IncludeValues: true})
	if err != nil {
		t.Fatal(err)
	}
	var values []string
	for _, im := range res.Images {
		if im.From.Origin == OriginValues {
			values = append(values, im.Ref)
		}
	}
	if strings.Join(values, ",") != "bitnami/redis:7.2" {
		t.Errorf("IncludeValues: values images = %v, want [bitnami/redis:7.2]", values)
	}
}

func TestExtractBadManifest(t *testing.T) {
	p := &Profile{Name: "prof", File: "f.json", Packs: []Pack{{Name: "m", Type: "manifest", Manifests: []Manifest{{Name: "x", Content: "kind: [\n"}}}}}
	_, err := Extract([]*Profile{p}, Options{})
	if err == nil || !strings.Contains(err.Error(), "f.json: profile prof: pack m: manifests[0] (x).content: invalid YAML") {
		t.Fatalf("error = %v", err)
	}
}

func FuzzParse(f *testing.F) {
	f.Add([]byte(`{"metadata":{"name":"a"},"spec":{"template":{"packs":[{"name":"p","values":"pack:\n  content:\n    images:\n      - image: '{{ .spectro.pack.p.x }}'\nx: y\n"}]}}}`))
	f.Add([]byte("metadata: {name: y}\nspec: {template: {packs: [{name: q, values: 'a: {{ .spectro.var.z | substr 0 2 }}'}]}}\n"))
	f.Add([]byte(`[{"spec":{"template":{"packs":[{"name":"m","type":"manifest","manifests":[{"content":"kind: Pod\nspec: {containers: [{image: x}]}"}]}]}}}]`))
	f.Fuzz(func(t *testing.T, data []byte) {
		ps, err := Parse("fuzz", data)
		if err != nil {
			if strings.Contains(err.Error(), "\n") {
				t.Fatalf("multi-line error: %q", err)
			}
			return
		}
		res, err := Extract(ps, Options{IncludeValues: true})
		if err == nil {
			for _, im := range res.Images {
				if im.Unresolved == "" && im.Skipped == "" && hasSpectroMacro(im.Ref) {
					t.Fatalf("image %q kept a macro without being unresolved", im.Ref)
				}
			}
		}
	})
}
