package helmrepo

import (
	"fmt"
	"testing"
)

func TestHelmRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"https://charts.example.com/stable", "https://charts.example.com/stable"},
		{"https://user:pw@charts.example.com/stable/?token=x", "https://charts.example.com/stable/?xxxxx"},
		{"https://tok@charts.example.com/s#frag", "https://charts.example.com/s"},
		{"https://u:p/w@host/x", "https://host/x"},
		{"https://u:1?s@host/x", "https://host/x"},
		{"https://u:p?s#@host/x?q", "https://host/x?xxxxx"},
	}
	for _, tc := range tests {
		if got := redact(tc.in); got != tc.want {
			t.Errorf("redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestHelmAvailable(t *testing.T) {
	entries := func(vs ...string) []*indexEntry {
		var es []*indexEntry
		for _, v := range vs {
			es = append(es, &indexEntry{Version: looseString(v)})
		}
		return append(es, nil)
	}
	tests := []struct {
		versions []string
		want     string
	}{
		{[]string{"1.10.0", "1.2.0", "v1.9.0", "1.2.0-rc.10", "1.2.0-rc.2", "weird", "1.2.0"}, "(the repository has weird, 1.2.0-rc.2, 1.2.0-rc.10, 1.2.0, v1.9.0, 1.10.0)"},
		{nil, "(the repository lists no versions of it)"},
	}
	var many []string // newest first, as Helm sorts an index
	for i := range 12 {
		many = append(many, fmt.Sprintf("1.%d.0", 11-i))
	}
	tests = append(tests, struct {
		versions []string
		want     string
	}{many, "(the repository has 12 versions, the newest 1.2.0, 1.3.0, 1.4.0, 1.5.0, 1.6.0, 1.7.0, 1.8.0, 1.9.0, 1.10.0, 1.11.0)"})
	for _, tc := range tests {
		if got := availableVersions(entries(tc.versions...)); got != tc.want {
			t.Errorf("availableVersions(%v)\n got %s\nwant %s", tc.versions, got, tc.want)
		}
	}
}
