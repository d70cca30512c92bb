package palette_test

import (
	"context"
	"errors"
	"net/http"
	"os"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/palette"
	"github.com/edgemirror/edgemirror/palette/palettetest"
	"github.com/edgemirror/edgemirror/transport"
)

const (
	key          = "k3y-Palette-SECRET-0123456789"
	project      = "5f8e0c1d2b3a4c5d6e7f8091"
	infraID      = "6650a8f1c2d3e4f5a6b7c8d9"
	tenantID     = "6650a8f1c2d3e4f5a6b7c8e0"
	notProfileID = "6650a8f1c2d3e4f5a6b7c8e1"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	data, err := os.ReadFile("../fixtures/profiles/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// start runs a test API holding edge-infra.json in the project,
// edge-agent-mode.json at tenant scope and a JSON answer that is no profile.
func start(t *testing.T, contentType string) *palettetest.Server {
	t.Helper()
	return palettetest.Start(t, palettetest.Config{
		APIKey: key, ProjectID: project, ContentType: contentType,
		Project: map[string][]byte{infraID: fixture(t, "edge-infra.json"), notProfileID: []byte(`{"items":[],"listmeta":{"count":0}}`)},
		Tenant:  map[string][]byte{tenantID: fixture(t, "edge-agent-mode.json")},
	})
}

// client is a client of s with the transport's retries, waiting little.
func client(t *testing.T, s *palettetest.Server, apiKey, projectID string) *palette.Client {
	t.Helper()
	hc, err := transport.New(transport.Options{MinBackoff: 1, MaxBackoff: 1})
	if err != nil {
		t.Fatal(err)
	}
	u, err := palette.ParseEndpoint(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	return &palette.Client{HTTP: hc, Endpoint: u, APIKey: apiKey, ProjectID: projectID}
}

func TestProfilesFetchesExports(t *testing.T) {
	for _, ct := range []string{palettetest.ContentType, "application/json"} {
		t.Run(ct, func(t *testing.T) {
			s := start(t, ct)
			ps, err := client(t, s, key, project).Profiles(context.Background(), []string{infraID, tenantID})
			if err != nil {
				t.Fatal(err)
			}
			if len(ps) != 2 || ps[0].Name != "edge-rke2-plant-a-infra ("+infraID+")" || ps[1].Name != "edge-agent-pxke-site ("+tenantID+")" {
				t.Fatalf("profiles %v", ps)
			}
			if host := strings.TrimPrefix(s.URL, "http://"); ps[0].File != "palette "+host+": cluster profile "+infraID || len(ps[0].Packs) == 0 {
				t.Errorf("profile 0: file %q, %d packs", ps[0].File, len(ps[0].Packs))
			}
			for _, r := range s.Requests() {
				if r.TenantScope || r.ProjectUID != project {
					t.Errorf("request %s: tenant scope %v, ProjectUid %q", r.Path, r.TenantScope, r.ProjectUID)
				}
			}
		})
	}
}

// TestTenantScope: without a project ID no ProjectUid header is sent, and
// only tenant-scope profiles are found.
func TestTenantScope(t *testing.T) {
	s := start(t, "")
	c := client(t, s, key, "")
	if _, err := c.Profiles(context.Background(), []string{tenantID}); err != nil {
		t.Fatal(err)
	}
	_, err := c.Profiles(context.Background(), []string{infraID})
	if !errors.Is(err, palette.ErrNotFound) || !strings.Contains(err.Error(), "tenant scope") {
		t.Errorf("a project's profile at tenant scope: %v", err)
	}
	for _, r := range s.Requests() {
		if !r.TenantScope {
			t.Errorf("request %s sent ProjectUid %q", r.Path, r.ProjectUID)
		}
	}
}

func TestProfilesErrors(t *testing.T) {
	s := start(t, "")
	for _, tc := range []struct {
		name, key, project, id string
		kind                   error
		says                   string
	}{
		{"wrong key", "wrong", project, infraID, palette.ErrUnauthorized, "rejected the API key (401"},
		{"no key", "", project, infraID, palette.ErrUnauthorized, "rejected the API key (401"},
		{"other project", key, "other-project", infraID, palette.ErrForbidden, "no access to project other-project (403"},
		{"unknown id", key, project, "0000000000000000000000ff", palette.ErrNotFound, "no such profile in project " + project + " (404"},
		{"not a profile", key, project, notProfileID, palette.ErrNotProfile, "not a cluster profile export"},
		{"not an id", key, project, "../../users", palette.ErrNotFound, `"../../users" is not a profile ID`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := client(t, s, tc.key, tc.project).Profiles(context.Background(), []string{tc.id})
			if !errors.Is(err, tc.kind) || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("error %v, want %v saying %q", err, tc.kind, tc.says)
			}
			if msg := err.Error(); !strings.Contains(msg, tc.id) || strings.Contains(msg, "\n") || strings.Contains(msg, key) {
				t.Errorf("error %q should be one line naming %s, without the key", msg, tc.id)
			}
		})
	}
}

// TestRetries: 429 and 503 are retried by the transport, then the export
// is read; a status that stays is one line with the API's message.
func TestRetries(t *testing.T) {
	s := start(t, "")
	s.Fail(http.StatusTooManyRequests, http.StatusServiceUnavailable)
	c := client(t, s, key, project)
	if _, err := c.Profiles(context.Background(), []string{infraID}); err != nil {
		t.Fatal(err)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests, want 3 (429, 503, 200)", n)
	}
	s.Fail(http.StatusBadRequest)
	_, err := c.Profiles(context.Background(), []string{infraID})
	if err == nil || !strings.Contains(err.Error(), "400 Bad Request: Fault injected by the test") {
		t.Errorf("400: %v", err)
	}
}

func TestParseEndpoint(t *testing.T) {
	for in, want := range map[string]string{
		"api.spectrocloud.com":              "https://api.spectrocloud.com",
		"palette.site:8443/":                "https://palette.site:8443",
		"http://127.0.0.1:8080/palette/":    "http://127.0.0.1:8080/palette",
		" https://api.spectrocloud.com/x/ ": "https://api.spectrocloud.com/x",
	} {
		u, err := palette.ParseEndpoint(in)
		if err != nil || u.String() != want {
			t.Errorf("ParseEndpoint(%q) = %v, %v; want %s", in, u, err, want)
		}
	}
	for _, in := range []string{"", "ftp://host", "https://user:" + key + "@host", "https://host/?apikey=" + key, "https://"} {
		_, err := palette.ParseEndpoint(in)
		if err == nil || strings.Contains(err.Error(), key) {
			t.Errorf("ParseEndpoint(%q): %v, want an error without the key", in, err)
		}
	}
}
