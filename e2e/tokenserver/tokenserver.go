// Package tokenserver is a Bearer token server for end-to-end tests: the
// token endpoint of Docker's registry token authentication, serving short
// lived ES256 JWTs on the loopback interface that distribution's "token"
// auth scheme (v3 and 2.8) verifies against the server's signing
// certificate.
//
// A client sends GET /token?service=S&scope=repository:NAME:pull,push with
// HTTP basic auth; the answer is {"token", "access_token", "expires_in",
// "issued_at"}. Wrong credentials get 401. A request without credentials
// gets an anonymous token that grants nothing, as Docker Hub and Harbor do:
// it passes the registry's GET /v2/ check, and any repository request with
// it gets the registry's 401 insufficient_scope.
package tokenserver

import (
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/edgemirror/edgemirror/e2e/registry"
)

// Defaults of Options.
const (
	DefaultService  = "edgemirror-e2e-registry"
	DefaultIssuer   = "edgemirror-e2e-token-server"
	DefaultLifetime = 2 * time.Second
)

// Options configures a token server.
type Options struct {
	// Users are the accepted user names and passwords; not to be changed
	// once the server runs.
	Users map[string]string
	// Service is the registry's service name, the audience of tokens
	// requested without a service parameter. Empty means DefaultService.
	Service string
	// Issuer is the tokens' issuer. Empty means DefaultIssuer.
	Issuer string
	// Lifetime is how long the registry accepts a token after it is
	// issued: at least Lifetime - 1s, never longer (see RegistryLeeway).
	// <= 0 means the default, DefaultLifetime, short enough for tokens to
	// expire inside transfers.
	Lifetime time.Duration
	// TLS serves HTTPS with a certificate for 127.0.0.1, ::1 and localhost
	// issued by the signing certificate, which clients must then trust
	// (CertFile, CertPEM). A registry reached over HTTPS needs it: oras-go,
	// like Docker, refuses a plain-HTTP realm for such a registry.
	TLS bool
	// Grant restricts what authenticated users get on repositories; nil
	// means every action asked for. Other resource types (such as
	// registry:catalog:*) are granted as asked. Anonymous requests get
	// nothing whatever Grant says.
	Grant Grant
}

// Server is a running token server. Its methods are safe for concurrent
// use.
type Server struct {
	// Addr is the host:port the server listens on.
	Addr string
	// Realm is the URL of the token endpoint.
	Realm string
	// Service is the default audience (Options.Service or DefaultService).
	Service string
	// Issuer is the tokens' issuer (Options.Issuer or DefaultIssuer).
	Issuer string
	// CertFile is a PEM file of the signing certificate: the registry's
	// root certificate bundle, and with TLS the CA of the server's
	// certificate.
	CertFile string
	// CertPEM is the content of CertFile.
	CertPEM []byte

	opts    Options
	signer  *registry.CA
	dir     string
	srv     *http.Server
	served  chan struct{}
	issued  atomic.Int64
	refused atomic.Int64
	once    sync.Once
	err     error
}

// Start generates a signing key and certificate and starts serving on
// 127.0.0.1 and a free port.
func Start(opts Options) (*Server, error) {
	if opts.Lifetime <= 0 {
		opts.Lifetime = DefaultLifetime
	}
	s := &Server{opts: opts, Service: opts.Service, Issuer: opts.Issuer}
	if s.Service == "" {
		s.Service = DefaultService
	}
	if s.Issuer == "" {
		s.Issuer = DefaultIssuer
	}
	var err error
	if s.signer, err = registry.NewCA("edgemirror e2e token signer"); err != nil {
		return nil, fmt.Errorf("tokenserver: generating signing certificate: %w", err)
	}
	if s.dir, err = os.MkdirTemp("", "edgemirror-tokenserver-*"); err != nil {
		return nil, fmt.Errorf("tokenserver: %w", err)
	}
	s.CertPEM = s.signer.CertPEM
	s.CertFile = filepath.Join(s.dir, "signer.pem")
	if err := os.WriteFile(s.CertFile, s.CertPEM, 0o644); err != nil {
		os.RemoveAll(s.dir)
		return nil, fmt.Errorf("tokenserver: %w", err)
	}
	ln, err := s.listen()
	if err != nil {
		os.RemoveAll(s.dir)
		return nil, err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/token", s.serveToken)
	s.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		_ = s.srv.Serve(ln) // ErrServerClosed after Close
	}()
	return s, nil
}

// listen listens on 127.0.0.1 and a free port, with TLS when asked, and
// sets Addr and Realm.
func (s *Server) listen() (net.Listener, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("tokenserver: %w", err)
	}
	s.Addr = ln.Addr().String()
	s.Realm = "http://" + s.Addr + "/token"
	if s.opts.TLS {
		cert, err := s.signer.ServerCert()
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("tokenserver: generating server certificate: %w", err)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12})
		s.Realm = "https://" + s.Addr + "/token"
	}
	return ln, nil
}

// RegistryAuth returns the registry settings that trust this server, for
// registry.Options.Token.
func (s *Server) RegistryAuth() *registry.TokenAuth {
	return &registry.TokenAuth{Realm: s.Realm, Service: s.Service, Issuer: s.Issuer, RootCertBundle: s.CertFile}
}

// Lifetime returns how long tokens live (see Options.Lifetime).
func (s *Server) Lifetime() time.Duration { return s.opts.Lifetime }

// Issued returns the number of tokens issued, anonymous ones included.
func (s *Server) Issued() int64 { return s.issued.Load() }

// Refused returns the number of token requests refused: wrong
// credentials, malformed scopes, other methods than GET.
func (s *Server) Refused() int64 { return s.refused.Load() }

// Close stops the server and removes its certificate file. It is
// idempotent.
func (s *Server) Close() error {
	s.once.Do(func() {
		s.err = s.srv.Close()
		<-s.served
		if err := os.RemoveAll(s.dir); s.err == nil {
			s.err = err
		}
	})
	return s.err
}

// tokenResponse is the answer to a token request. access_token repeats
// token for OAuth 2 clients.
type tokenResponse struct {
	Token       string `json:"token"`
	AccessToken string `json:"access_token"`
	ExpiresIn   int    `json:"expires_in"`
	IssuedAt    string `json:"issued_at"`
}

func (s *Server) serveToken(w http.ResponseWriter, req *http.Request) {
	if req.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		s.refuse(w, http.StatusMethodNotAllowed, "UNSUPPORTED", "only GET is supported")
		return
	}
	user := ""
	if name, pass, ok := req.BasicAuth(); ok {
		want, known := s.opts.Users[name]
		if !known || subtle.ConstantTimeCompare([]byte(pass), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Basic realm="`+s.Realm+`"`)
			s.refuse(w, http.StatusUnauthorized, "UNAUTHORIZED", "incorrect username or password")
			return
		}
		user = name
	}
	q := req.URL.Query()
	asked, err := parseScopes(q["scope"])
	if err != nil {
		s.refuse(w, http.StatusBadRequest, "INVALID_SCOPE", err.Error())
		return
	}
	service := q.Get("service")
	if service == "" {
		service = s.Service
	}

	now := time.Now()
	iat, nbf, exp, deadline := window(now, s.opts.Lifetime)
	jti := make([]byte, 16)
	_, _ = rand.Read(jti) // never fails (crypto/rand)
	tok, err := sign(s.signer.Key, s.signer.Cert.Raw, claims{
		Issuer: s.Issuer, Subject: user, Audience: service,
		Expiration: exp, NotBefore: nbf, IssuedAt: iat, JWTID: hex.EncodeToString(jti),
		Access: s.grant(user, asked),
	})
	if err != nil {
		s.refuse(w, http.StatusInternalServerError, "UNKNOWN", err.Error())
		return
	}
	s.issued.Add(1)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(tokenResponse{
		Token: tok, AccessToken: tok,
		ExpiresIn: int(deadline.Sub(now) / time.Second),
		IssuedAt:  now.UTC().Format(time.RFC3339),
	})
}

// refuse answers with status and a distribution-style error body.
func (s *Server) refuse(w http.ResponseWriter, status int, code, msg string) {
	s.refused.Add(1)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{
		"errors": []map[string]string{{"code": code, "message": msg}},
	})
}

// grant applies the policy to the asked access: nothing for anonymous
// users, Grant (or everything) on repositories, the asked actions on other
// resource types. Resources left without actions are dropped.
func (s *Server) grant(user string, asked []access) []access {
	out := []access{}
	if user == "" {
		return out
	}
	g := s.opts.Grant
	if g == nil {
		g = grantAsked
	}
	for _, a := range asked {
		if a.Type == "repository" {
			a.Actions = g(user, a.Name, a.Actions)
		}
		if len(a.Actions) > 0 {
			out = append(out, a)
		}
	}
	return out
}

// parseScopes parses scope parameters ("TYPE:NAME:ACTION,ACTION", several
// per parameter separated by spaces), merging the actions asked for one
// resource.
func parseScopes(params []string) ([]access, error) {
	var out []access
	index := map[[2]string]int{}
	for _, p := range params {
		for _, scope := range strings.Fields(p) {
			typ, rest, ok1 := strings.Cut(scope, ":")
			i := strings.LastIndex(rest, ":")
			if !ok1 || i <= 0 || typ == "" {
				return nil, fmt.Errorf("malformed scope %q", scope)
			}
			name, actions := rest[:i], strings.Split(rest[i+1:], ",")
			key := [2]string{typ, name}
			j, seen := index[key]
			if !seen {
				j = len(out)
				index[key] = j
				out = append(out, access{Type: typ, Name: name})
			}
			for _, act := range actions {
				if act != "" && !slices.Contains(out[j].Actions, act) {
					out[j].Actions = append(out[j].Actions, act)
				}
			}
		}
	}
	return out, nil
}

// Token asks the server for a token as a client would, with user's basic
// credentials (anonymous when user is empty) and the given scopes, and
// returns it.
func (s *Server) Token(user, password string, scopes ...string) (string, error) {
	q := url.Values{"service": {s.Service}, "scope": scopes}
	req, err := http.NewRequest(http.MethodGet, s.Realm+"?"+q.Encode(), nil)
	if err != nil {
		return "", fmt.Errorf("tokenserver: %w", err)
	}
	if user != "" {
		req.SetBasicAuth(user, password)
	}
	ht := http.DefaultTransport.(*http.Transport).Clone()
	pool := x509.NewCertPool()
	pool.AddCert(s.signer.Cert)
	ht.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	hc := &http.Client{Transport: ht}
	defer hc.CloseIdleConnections()
	resp, err := hc.Do(req)
	if err != nil {
		return "", fmt.Errorf("tokenserver: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("tokenserver: token request: %s", resp.Status)
	}
	var tr tokenResponse
	if err := json.NewDecoder(resp.Body).Decode(&tr); err != nil {
		return "", fmt.Errorf("tokenserver: token response: %w", err)
	}
	if tr.Token == "" {
		return "", errors.New("tokenserver: token response without a token")
	}
	return tr.Token, nil
}
