// Package palette fetches exported cluster profiles from the Spectro Cloud
// Palette API by their IDs, as palette-edge's --cluster-profile-ids does:
// GET /v1/clusterprofiles/{uid}/export?format=json with the API key in the
// ApiKey header and the project in the ProjectUid header (none at tenant
// scope). The answer is the console's export, read by package profile.
package palette

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/transport"
)

// maxExport bounds an export read into memory: the largest real profiles
// (many packs with whole values.yaml files) are a few MiB.
const maxExport = 64 << 20

// The kinds of a failed fetch, for errors.Is.
var (
	// ErrUnauthorized: the API rejected the key (401).
	ErrUnauthorized = errors.New("unauthorized")
	// ErrForbidden: the key has no access to the project (403).
	ErrForbidden = errors.New("forbidden")
	// ErrNotFound: no such profile in the project, or at tenant scope (404).
	ErrNotFound = errors.New("not found")
	// ErrNotProfile: the answer is not one exported cluster profile.
	ErrNotProfile = errors.New("not a cluster profile export")
)

// Client fetches profiles from one Palette endpoint.
type Client struct {
	// HTTP sends the requests; transport.New's client gives the TLS
	// settings and the retries on 429 and 5xx.
	HTTP *http.Client
	// Endpoint is the API's base URL, as ParseEndpoint returns it.
	Endpoint *url.URL
	// APIKey goes in the ApiKey header, and nowhere else.
	APIKey string
	// ProjectID goes in the ProjectUid header; empty is tenant scope, with
	// no ProjectUid header at all.
	ProjectID string
}

// ParseEndpoint reads a Palette endpoint: a host such as
// api.spectrocloud.com (HTTPS implied), HOST:PORT, or an http(s) URL,
// possibly with a path prefix.
func ParseEndpoint(s string) (*url.URL, error) {
	raw := strings.TrimSpace(s)
	if !strings.Contains(raw, "://") {
		raw = "https://" + raw
	}
	u, err := url.Parse(raw)
	switch {
	case err != nil || u.Host == "":
		return nil, fmt.Errorf("palette endpoint %q: expected a host such as api.spectrocloud.com or an https:// URL", s)
	case u.Scheme != "https" && u.Scheme != "http":
		return nil, fmt.Errorf("palette endpoint %q: scheme %s, expected https or http", s, u.Scheme)
	case u.User != nil || u.RawQuery != "" || u.Fragment != "":
		// A key in the URL would be printed with it.
		return nil, fmt.Errorf("palette endpoint %q: no user, query or fragment; the API key goes in PALETTE_API_KEY", transport.Redact(s))
	}
	u.Path = strings.TrimRight(u.Path, "/")
	u.RawPath = ""
	return u, nil
}

// ValidID reports whether id can be a profile ID: Palette UIDs are
// hexadecimal; letters, digits, '-' and '_' keep the request path as given.
func ValidID(id string) bool {
	if id == "" {
		return false
	}
	for _, r := range id {
		if (r < 'a' || r > 'z') && (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '-' && r != '_' {
			return false
		}
	}
	return true
}

// Profiles fetches the profiles with these IDs, in order. Each one's File
// names the endpoint and the ID ("palette HOST: cluster profile ID"), and its
// Name is "NAME (ID)", so that errors, warnings and the report's origins
// name the ID. The first failure is returned: a one-line error naming the
// endpoint and the ID, wrapping one of the Err kinds for the statuses that
// have one, or the transport error.
//
// Every ID is checked before the first request: one that is not ValidID
// is ErrNotFound.
func (c *Client) Profiles(ctx context.Context, ids []string) ([]*profile.Profile, error) {
	for _, id := range ids {
		if !ValidID(id) {
			return nil, &fetchError{msg: fmt.Sprintf("palette %s: %q is not a profile ID (letters, digits, '-' and '_')", c.Endpoint.Host, id), cause: ErrNotFound}
		}
	}
	var out []*profile.Profile
	for _, id := range ids {
		p, err := c.profile(ctx, id)
		if err != nil {
			return nil, err
		}
		out = append(out, p)
	}
	return out, nil
}

// fetchError is a failed fetch: its message, and the kind or the cause.
type fetchError struct {
	msg   string
	cause error
}

func (e *fetchError) Error() string { return e.msg }
func (e *fetchError) Unwrap() error { return e.cause }

// source names where the profile id comes from, in errors and as its File.
func (c *Client) source(id string) string {
	return fmt.Sprintf("palette %s: cluster profile %s", c.Endpoint.Host, id)
}

// fail is the one-line error of fetching id.
func (c *Client) fail(id string, cause error, format string, args ...any) error {
	return &fetchError{msg: c.source(id) + ": " + fmt.Sprintf(format, args...), cause: cause}
}

// profile fetches and reads one profile.
func (c *Client) profile(ctx context.Context, id string) (*profile.Profile, error) {
	fail := func(cause error, format string, args ...any) error { return c.fail(id, cause, format, args...) }
	u := *c.Endpoint
	u.Path += "/v1/clusterprofiles/" + id + "/export"
	u.RawQuery = "format=json"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, fail(err, "%s", transport.Redact(err.Error()))
	}
	req.Header.Set("ApiKey", c.APIKey)
	if c.ProjectID != "" {
		req.Header.Set("ProjectUid", c.ProjectID)
	}
	resp, err := c.HTTP.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is in our message already
		}
		return nil, fail(err, "%s", transport.Describe(err))
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, maxExport+1))
	if err != nil {
		return nil, fail(err, "reading the answer: %s", transport.Describe(err))
	}
	status := fmt.Sprintf("%d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
	switch resp.StatusCode {
	case http.StatusOK:
	case http.StatusUnauthorized:
		return nil, fail(ErrUnauthorized, "the API rejected the API key (%s)", status)
	case http.StatusForbidden:
		return nil, fail(ErrForbidden, "no access to %s (%s)", c.scope(), status)
	case http.StatusNotFound:
		return nil, fail(ErrNotFound, "no such profile in %s (%s)", c.scope(), status)
	default:
		return nil, fail(nil, "%s%s", status, c.message(data))
	}
	if len(data) > maxExport {
		return nil, fail(ErrNotProfile, "the answer is larger than %d MiB, not a cluster profile export", maxExport>>20)
	}
	ps, err := profile.Parse(c.source(id), data)
	if err != nil {
		return nil, &fetchError{msg: err.Error(), cause: ErrNotProfile} // names source already
	}
	if len(ps) != 1 {
		return nil, fail(ErrNotProfile, "the answer holds %d profiles, expected one", len(ps))
	}
	p := ps[0]
	p.Name = fmt.Sprintf("%s (%s)", p.Name, id)
	return p, nil
}

// scope names where the profiles are looked up.
func (c *Client) scope() string {
	if c.ProjectID == "" {
		return "the tenant scope"
	}
	return "project " + c.ProjectID
}

// message is the message of a Palette error answer ({"code", "message"}),
// redacted, for the statuses without a kind; "" when there is none.
func (c *Client) message(body []byte) string {
	var e struct{ Code, Message string }
	if json.Unmarshal(body, &e) != nil || e.Code+e.Message == "" {
		return ""
	}
	msg := strings.TrimSpace(e.Code + " " + e.Message)
	if c.APIKey != "" {
		msg = strings.ReplaceAll(msg, c.APIKey, "REDACTED")
	}
	if len(msg) > 200 {
		msg = msg[:200] + "..."
	}
	return ": " + transport.Redact(msg)
}
