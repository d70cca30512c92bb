package report

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/targets"
)

func sample() *Report {
	from := profile.Provenance{Profile: "infra", Pack: "os|pack", Layer: "os", Origin: profile.OriginProvider}
	plan := &targets.Plan{
		Images: []*targets.Image{
			{Source: "ttl.sh/ubuntu:k3s", Canonical: "ttl.sh/ubuntu:k3s", Target: "reg.local/ttl.sh/ubuntu:k3s", Status: targets.Copied, Bytes: 42, Origins: []profile.Provenance{from}},
			{Source: "<versionNumber>", Status: targets.Unresolved, Reason: "<versionNumber> is a placeholder", Origins: []profile.Provenance{from, from}},
		},
		Charts:   []*targets.Image{{Source: "https://c.example/x:1", Status: targets.Planned, Target: "reg.local/c.example/x:1"}},
		Warnings: []string{"a warning"},
	}
	r := New("mirror", "1.0.0", "reg.local", plan, time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	r.Finish(time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC))
	return r
}

func TestSummaryAndFailures(t *testing.T) {
	r := sample()
	if r.Summary.Images != 2 || r.Summary.Charts != 1 || r.Summary.Planned != 1 || r.Summary.Copied != 1 || r.Summary.Unresolved != 1 || r.Failures() != 1 {
		t.Fatalf("summary %+v, failures %d", r.Summary, r.Failures())
	}
	if got := SummaryLine(r); got != "2 images and 1 charts: 1 planned, 1 copied, 1 unresolved" {
		t.Errorf("summary line %q", got)
	}
}

func TestRender(t *testing.T) {
	r := sample()
	var b bytes.Buffer
	if err := Write(&b, r, JSON); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schemaVersion", "tool", "version", "command", "startedAt", "finishedAt", "registry", "summary", "images", "charts", "warnings"} {
		if _, ok := back[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	img := back["images"].([]any)[0].(map[string]any)
	for _, k := range []string{"source", "canonical", "target", "status", "origins", "bytes"} {
		if _, ok := img[k]; !ok {
			t.Errorf("JSON image lacks %q", k)
		}
	}

	b.Reset()
	if err := Write(&b, r, CSV); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil || len(rows) != 4 || rows[2][1] != "unresolved" || rows[3][0] != "chart" {
		t.Fatalf("CSV rows %v, %v", rows, err)
	}

	b.Reset()
	if err := Write(&b, r, Markdown); err != nil {
		t.Fatal(err)
	}
	md := b.String()
	for _, want := range []string{"# edgemirror mirror report", `os\|pack`, "## Warnings", "- a warning"} {
		if !strings.Contains(md, want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}

	b.Reset()
	if err := Write(&b, r, Text); err != nil {
		t.Fatal(err)
	}
	txt := b.String()
	for _, want := range []string{"STATUS", "ttl.sh/ubuntu:k3s → reg.local/ttl.sh/ubuntu:k3s", "(<versionNumber> is a placeholder)", "os|pack (+1)", "chart https://c.example/x:1"} {
		if !strings.Contains(txt, want) {
			t.Errorf("text lacks %q:\n%s", want, txt)
		}
	}
}

func TestFormatFor(t *testing.T) {
	for _, c := range []struct{ path, override, want string }{
		{"r.json", "", "json"}, {"r.CSV", "", "csv"}, {"r.md", "", "md"}, {"r.txt", "", "txt"}, {"r.out", "csv", "csv"}, {"r", "", ""}, {"r.json", "xml", ""},
	} {
		got, err := FormatFor(c.path, c.override)
		if string(got) != c.want || (c.want == "") != (err != nil) {
			t.Errorf("FormatFor(%q,%q) = %q, %v", c.path, c.override, got, err)
		}
	}
}
