// Package palettetest is a Palette API for tests: a real HTTP(S) server on
// 127.0.0.1 that serves exported cluster profiles at
// GET /v1/clusterprofiles/{uid}/export?format=json and checks the ApiKey and
// ProjectUid headers as the Palette API does (401 for a missing or wrong
// key, 403 for another project, 404 for a profile not in scope). It records
// each request's scope, and can answer the next requests with 429 or 5xx.
package palettetest

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"testing"
)

// ContentType is what the export answers by default, as the Palette API
// does: the export is a download.
const ContentType = "application/octet-stream"

// Config is what the server holds and accepts.
type Config struct {
	// APIKey is the only key accepted.
	APIKey string
	// ProjectID is the one project.
	ProjectID string
	// Project holds the project's profiles, by UID: served to requests
	// whose ProjectUid is ProjectID.
	Project map[string][]byte
	// Tenant holds the tenant-scope profiles, by UID: served at tenant
	// scope (no ProjectUid header) and within the project.
	Tenant map[string][]byte
	// TLS serves HTTPS with a self-signed certificate (see Server.CAFile).
	TLS bool
	// ContentType of a served export; "" means ContentType.
	ContentType string
}

// Request is what the server saw of one request (never the key).
type Request struct {
	// Path is the request path.
	Path string
	// ProjectUID is the ProjectUid header, if any.
	ProjectUID string
	// TenantScope says the request had no ProjectUid header.
	TenantScope bool
}

// Server is a running test Palette API.
type Server struct {
	// URL is the base URL, such as https://127.0.0.1:40123.
	URL string
	// CAFile is a PEM file of the certificate of a TLS server, to trust
	// with --palette-ca-file; "" for plain HTTP.
	CAFile string

	cfg      Config
	mu       sync.Mutex
	faults   []int
	requests []Request
}

// Start starts a server for the test and closes it in the test's cleanup.
func Start(t testing.TB, cfg Config) *Server {
	t.Helper()
	if cfg.ContentType == "" {
		cfg.ContentType = ContentType
	}
	s := &Server{cfg: cfg}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/clusterprofiles/{uid}/export", s.export)
	hs := httptest.NewUnstartedServer(mux)
	// A client that does not trust the certificate is a test case, not
	// news for the log.
	hs.Config.ErrorLog = log.New(io.Discard, "", 0)
	if cfg.TLS {
		hs.StartTLS()
		s.CAFile = filepath.Join(t.TempDir(), "palette-ca.pem")
		cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: hs.Certificate().Raw})
		if err := os.WriteFile(s.CAFile, cert, 0o600); err != nil {
			t.Fatal(err)
		}
	} else {
		hs.Start()
	}
	t.Cleanup(hs.Close)
	s.URL = hs.URL
	return s
}

// Fail answers the next requests with these statuses, one each, before
// any check: 429 with Retry-After: 0, as a rate limit does.
func (s *Server) Fail(statuses ...int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults = append(s.faults, statuses...)
}

// Requests returns the requests received so far.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Request(nil), s.requests...)
}

// export answers GET /v1/clusterprofiles/{uid}/export in the order the
// API checks: rate limit, key, project, profile.
func (s *Server) export(w http.ResponseWriter, r *http.Request) {
	project := r.Header.Values("ProjectUid")
	inProject := len(project) > 0
	req := Request{Path: r.URL.Path, TenantScope: !inProject}
	if inProject {
		req.ProjectUID = project[0]
	}
	s.mu.Lock()
	s.requests = append(s.requests, req)
	fault := 0
	if len(s.faults) > 0 {
		fault, s.faults = s.faults[0], s.faults[1:]
	}
	s.mu.Unlock()

	uid := r.PathValue("uid")
	switch {
	case fault != 0:
		if fault == http.StatusTooManyRequests {
			w.Header().Set("Retry-After", "0")
		}
		apiError(w, fault, "Fault", "injected by the test")
	case r.URL.Query().Get("format") != "json":
		apiError(w, http.StatusBadRequest, "InvalidFormat", "format must be json")
	case s.cfg.APIKey == "" || r.Header.Get("ApiKey") != s.cfg.APIKey:
		apiError(w, http.StatusUnauthorized, "Unauthorized", "invalid api key")
	case inProject && req.ProjectUID != s.cfg.ProjectID:
		apiError(w, http.StatusForbidden, "Forbidden", "no access to project "+req.ProjectUID)
	default:
		data, ok := s.cfg.Tenant[uid]
		if !ok && inProject {
			data, ok = s.cfg.Project[uid]
		}
		if !ok {
			apiError(w, http.StatusNotFound, "ResourceNotFound", "ClusterProfile '"+uid+"' not found")
			return
		}
		w.Header().Set("Content-Type", s.cfg.ContentType)
		w.Header().Set("Content-Disposition", `attachment; filename="`+uid+`.json"`)
		_, _ = w.Write(data)
	}
}

// apiError writes an error as the Palette API does.
func apiError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg, "status": status})
}
