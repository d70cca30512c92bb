package helmrepo

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestHelmMetadata checks Chart.yaml → config JSON; every want is what
// Helm v3.22.0 (loader.LoadArchive, then json.Marshal(chart.Metadata), as
// `helm push` does) printed for the same Chart.yaml, apiVersion aside.
func TestHelmMetadata(t *testing.T) {
	tests := []struct{ name, yaml, want string }{
		{"field order and omitempty", "version: 1.2.3\nname: a\napiVersion: v2\ntype: library\nkubeVersion: '>=1.25'\ndeprecated: true\nicon: https://i/x.png\n",
			`{"name":"a","version":"1.2.3","icon":"https://i/x.png","apiVersion":"v2","deprecated":true,"kubeVersion":"\u003e=1.25","type":"library"}`},
		{"float appVersion as YAML 1.1 float32", "name: a\nversion: 1.0.0\nappVersion: 1.10\n",
			`{"name":"a","version":"1.0.0","appVersion":"1.1"}`},
		{"numbers and booleans become text", "name: a\nversion: 1.0.0\nappVersion: 7\nkeywords: [on, \"on\", 3]\nannotations: {a: 1, b: true, c: x}\n",
			`{"name":"a","version":"1.0.0","keywords":["true","on","3"],"appVersion":"7","annotations":{"a":"1","b":"true","c":"x"}}`},
		{"YAML 1.1 booleans", "name: a\nversion: 1.0.0\ndeprecated: yes\nicon: n\nhome: 'n'\n", `{"name":"a","home":"n","version":"1.0.0","icon":"false","deprecated":true}`},
		{"unquoted date stays text", "name: a\nversion: 1.0.0\nappVersion: 2024-01-15\n", `{"name":"a","version":"1.0.0","appVersion":"2024-01-15"}`},
		{"keys match case-insensitively", "NAME: a\nVersion: 1.0.0\nappversion: '1'\n", `{"name":"a","version":"1.0.0","appVersion":"1"}`},
		{"unknown keys dropped", "name: a\nversion: 1.0.0\nurls: [x]\ndigest: abc\ncreated: '2024-01-01'\n", `{"name":"a","version":"1.0.0"}`},
		{"strings sanitized", "name: a\nversion: 1.0.0\ndescription: \"two\\nlines\\ttab\\u0007\"\nmaintainers:\n- name: \"J\\nD\"\n",
			`{"name":"a","version":"1.0.0","description":"two lines tab","maintainers":[{"name":"J D"}]}`},
		{"dependencies", "name: a\nversion: 1.0.0\ndependencies:\n- name: b\n  version: ~1.2\n  repository: https://r\n  enabled: yes\n  import-values: [x, {child: c, parent: p}]\n  alias: bee\n",
			`{"name":"a","version":"1.0.0","dependencies":[{"name":"b","version":"~1.2","repository":"https://r","enabled":true,"import-values":["x",{"child":"c","parent":"p"}],"alias":"bee"}]}`},
		{"anchors and merge keys", "name: &n a\nversion: 1.0.0\nhome: *n\nmaintainers:\n- &m {name: x, email: e}\n- {<<: *m, name: z}\n",
			`{"name":"a","home":"a","version":"1.0.0","maintainers":[{"name":"x","email":"e"},{"name":"z","email":"e"}]}`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var m metadata
			if err := unmarshalYAML([]byte(tc.yaml), &m); err != nil {
				t.Fatal(err)
			}
			if err := m.sanitize(); err != nil {
				t.Fatal(err)
			}
			got, err := json.Marshal(&m)
			if err != nil {
				t.Fatal(err)
			}
			if string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

func TestHelmReadArchive(t *testing.T) {
	chart := "apiVersion: v1\nname: old\nversion: 0.1.0\n"
	tests := []struct {
		name    string
		files   []helmTestFile
		want    string // config JSON
		wantErr string
	}{
		{name: "any directory name, requirements.yaml merged",
			files: []helmTestFile{{"whatever/Chart.yaml", chart}, {"whatever/requirements.yaml", "dependencies:\n- name: dep\n  repository: https://r\n"}, {"whatever/charts/dep/Chart.yaml", "name: dep\nversion: 9.9.9\n"}},
			want:  `{"name":"old","version":"0.1.0","apiVersion":"v1","dependencies":[{"name":"dep","repository":"https://r"}]}`},
		{name: "apiVersion defaults to v1, BOM dropped", files: []helmTestFile{{"c/Chart.yaml", "\xef\xbb\xbfname: c\nversion: 1.0.0\n"}},
			want: `{"name":"c","version":"1.0.0","apiVersion":"v1"}`},
		{name: "windows separators", files: []helmTestFile{{`c\Chart.yaml`, "name: c\nversion: 1.0.0\napiVersion: v2\n"}},
			want: `{"name":"c","version":"1.0.0","apiVersion":"v2"}`},
		{name: "Chart.yaml at the top", files: []helmTestFile{{"Chart.yaml", chart}}, wantErr: "the archive has Chart.yaml at its top"},
		{name: "only a subchart's Chart.yaml", files: []helmTestFile{{"c/charts/sub/Chart.yaml", chart}}, wantErr: "the archive has no Chart.yaml in the chart's directory"},
		{name: "bad YAML", files: []helmTestFile{{"c/Chart.yaml", "name: [\n"}}, wantErr: "the archive's Chart.yaml: yaml: "},
		{name: "wrong type", files: []helmTestFile{{"c/Chart.yaml", "name: c\nversion: 1.0.0\nmaintainers: jane\n"}}, wantErr: "the archive's Chart.yaml: maintainers: a string where a list is expected"},
		{name: "null maintainer", files: []helmTestFile{{"c/Chart.yaml", "name: c\nversion: 1.0.0\nmaintainers: [~]\n"}}, wantErr: "maintainers must not contain empty or null nodes"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			meta, created, err := readArchive(helmTestArchive(t, tc.files...), defaultLimits)
			if tc.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
					t.Fatalf("got %v, want %q", err, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !created.Equal(helmTestTime) {
				t.Errorf("created %v", created)
			}
			if got, _ := json.Marshal(meta); string(got) != tc.want {
				t.Errorf("\n got %s\nwant %s", got, tc.want)
			}
		})
	}

	t.Run("unpacked size bounded", func(t *testing.T) {
		lim := defaultLimits
		lim.unpacked = 4 << 10
		a := helmTestArchive(t, helmTestFile{"c/Chart.yaml", chart}, helmTestFile{"c/big", strings.Repeat("x", 64<<10)})
		if _, _, err := readArchive(a, lim); err == nil || !strings.Contains(err.Error(), "more than the allowed size") {
			t.Fatalf("got %v", err)
		}
	})
	t.Run("truncated archive", func(t *testing.T) {
		a := helmTestChart(t, "c", "c", "1.0.0")
		if _, _, err := readArchive(a[:len(a)-6], defaultLimits); err == nil {
			t.Fatal("no error")
		}
	})
}
