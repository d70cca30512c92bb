package profile

import (
	"strings"
	"testing"
)

func testProfiles() []*Profile {
	infra := &Profile{Name: "infra", File: "infra.json", Packs: []Pack{
		{Name: "edge-native-byoi", Layer: "os", Values: `
options:
  system.uri: "{{ .spectro.pack.edge-native-byoi.options.system.registry }}/{{ .spectro.pack.edge-native-byoi.options.system.repo }}:{{ .spectro.pack.edge-native-byoi.options.system.k8sDistribution }}-{{ .spectro.system.kubernetes.version }}-{{ .spectro.pack.edge-native-byoi.options.system.peVersion }}-{{ .spectro.pack.edge-native-byoi.options.system.customTag }}"
  system.registry: ttl.sh
  system.repo: ubuntu
  system.k8sDistribution: k3s
  system.peVersion: v4.1.2
  system.customTag: demo
  system: {registry: wrong.example}
  loop.a: "{{ .spectro.pack.edge-native-byoi.options.loop.b }}"
  loop.b: "{{ .spectro.pack.edge-native-byoi.options.loop.a }}"
  list: [zero, one]
  unquoted: {{ .spectro.var.ns }}
  nested:
    map: {a: 1}
`},
		{Name: "edge-k3s", Layer: "k8s", Version: "1.27.5", Tag: "1.27.x"},
	}, Variables: []Variable{{Name: "ns", DefaultValue: "hello"}, {Name: "empty"}}}
	addon := &Profile{Name: "addon", File: "addon.json", Packs: []Pack{{Name: "app", Layer: "addon", Values: "image:\n  tag: 1.2.3\n"}},
		Variables: []Variable{{Name: "ns", DefaultValue: "addon-ns"}}}
	return []*Profile{infra, addon}
}

func TestExpand(t *testing.T) {
	cases := []struct {
		in, want, err string
		vars          map[string]string
		macros        map[string]string
		cur           int
	}{
		{in: "{{.spectro.pack.edge-native-byoi.options.system.uri}}", want: "ttl.sh/ubuntu:k3s-1.27.5-v4.1.2-demo"},
		{in: "{{ .spectro.system.kubernetes.version }}", want: "1.27.5"},
		{in: "{{ .spectro.system.kubernetes.version }}", want: "1.29.0", macros: map[string]string{"system.kubernetes.version": "1.29.0"}},
		{in: "{{ .spectro.var.ns }}", want: "hello"},
		{in: "{{ .spectro.var.ns }}", want: "addon-ns", cur: 1},
		{in: "{{ .spectro.var.ns }}", want: "over", vars: map[string]string{"ns": "over"}},
		{in: "{{ .spectro.var.empty }}", err: `profile variable "empty" has no default value; give --var empty=VALUE`},
		{in: `{{ .spectro.var.empty | default "fallback" }}`, want: "fallback"},
		{in: `{{ .spectro.var.ns | default "fallback" }}`, want: "hello"},
		{in: "{{ .spectro.var.ns | upper }}", want: "HELLO"},
		{in: "{{ .spectro.var.ns | upper | lower }}", want: "hello"},
		{in: "{{ .spectro.var.ns | substr 0 4 }}", want: "hell"},
		{in: "{{ .spectro.var.ns | substr 2 99 }}", want: "llo"},
		{in: `{{ .spectro.var.pad | trim }}`, want: "x", vars: map[string]string{"pad": "  x "}},
		{in: "{{ .spectro.var.ns | reverse }}", err: `unsupported function "reverse"`},
		{in: "{{ .spectro.macro.site }}", err: `macro "site" is not in the export; give --macro site=VALUE`},
		{in: "{{ .spectro.macro.site }}", want: "lab", macros: map[string]string{"macro.site": "lab"}},
		{in: "{{ .spectro.system.cluster.name }}", err: `give --macro system.cluster.name=VALUE`},
		{in: "{{ .spectro.pack.edge-native-byoi.options.loop.a }}", err: "macro nesting deeper than 10"},
		{in: "{{ .spectro.pack.nope.x }}", err: `no pack named "nope"`},
		{in: "{{ .spectro.pack.edge-native-byoi.options.missing }}", err: `pack edge-native-byoi has no value "options.missing"`},
		{in: "{{ .spectro.pack.edge-native-byoi.options.nested }}", err: "is not a single value"},
		{in: "{{ .spectro.pack.edge-native-byoi.options.list.1 }}", want: "one"},
		{in: "{{ .spectro.pack.edge-native-byoi.options.unquoted }}", want: "hello"},
		{in: "{{ .spectro.pack.app.image.tag }}", want: "1.2.3"},
		{in: "keep {{ .Values.image.tag }} as is", want: "keep {{ .Values.image.tag }} as is"},
		{in: "{{- .spectro.var.ns -}}", want: "hello"},
		{in: "plain", want: "plain"},
	}
	for _, c := range cases {
		ps := testProfiles()
		r := &resolver{profiles: ps, cur: ps[c.cur], vars: c.vars, macros: c.macros, values: map[*Pack]map[string]any{}}
		got, err := r.expand(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("expand(%q) error = %v, want it to contain %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || got != c.want {
			t.Errorf("expand(%q) = %q, %v; want %q", c.in, got, err, c.want)
		}
	}
}

func TestSubstr(t *testing.T) {
	for _, c := range []struct {
		s          string
		start, end int
		want       string
	}{{"abcdef", 0, 4, "abcd"}, {"abcdef", -1, 2, "ab"}, {"abc", 1, -1, "bc"}, {"abc", 5, 9, ""}, {"abc", 2, 1, ""}} {
		if got := substr(c.s, c.start, c.end); got != c.want {
			t.Errorf("substr(%q,%d,%d) = %q, want %q", c.s, c.start, c.end, got, c.want)
		}
	}
}

func FuzzExpand(f *testing.F) {
	for _, s := range []string{
		"{{ .spectro.pack.edge-native-byoi.options.system.uri }}",
		`{{ .spectro.var.ns | default "x" | upper | substr 1 3 }}`,
		"{{ .spectro.pack.edge-native-byoi.options.loop.a }}{{ .spectro.pack.edge-native-byoi.options.loop.a }}",
		"a{{ .spectro.macro.m }}b{{ .Values.x }}",
		`{{ .spectro.var.ns | substr "a" }}`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		ps := testProfiles()
		r := &resolver{profiles: ps, cur: ps[0], values: map[*Pack]map[string]any{}}
		out, err := r.expand(in)
		if err == nil && hasSpectroMacro(out) {
			t.Fatalf("expand(%q) = %q kept a Palette macro without an error", in, out)
		}
		if len(out) > maxLen+len(in) {
			t.Fatalf("expand(%q) grew to %d bytes", in, len(out))
		}
	})
}
