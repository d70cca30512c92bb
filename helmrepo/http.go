package helmrepo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// repoBase checks repoURL and splits off its credentials.
func repoBase(repoURL string) (*url.URL, *url.Userinfo, error) {
	u, err := url.Parse(repoURL)
	if err != nil || u.Opaque != "" {
		return nil, nil, errors.New("the repository is not a valid URL")
	}
	switch strings.ToLower(u.Scheme) {
	case "http", "https":
	case "oci":
		return nil, nil, errors.New("an oci:// repository is an OCI registry, not a Helm HTTP repository")
	default:
		return nil, nil, errors.New("a Helm repository URL must start with http:// or https://")
	}
	if u.Host == "" {
		return nil, nil, errors.New("the repository URL has no host")
	}
	if p := strings.ToLower(strings.TrimSuffix(u.Path, "/")); strings.HasSuffix(p, ".tgz") || strings.HasSuffix(p, ".tar.gz") {
		return nil, nil, errors.New("the repository URL is a chart archive; give the chart repository URL (the directory holding index.yaml) instead")
	}
	if strings.HasSuffix(strings.ToLower(u.Path), "/index.yaml") {
		return nil, nil, errors.New("the repository URL names index.yaml; give the directory holding it")
	}
	user := u.User
	u.User = nil
	u.Fragment, u.RawFragment = "", ""
	return u, user, nil
}

// credentialsFor sends the repository's credentials to its own scheme and
// host only, as Helm does unless --pass-credentials.
func credentialsFor(base *url.URL, user *url.Userinfo, u *url.URL) *url.Userinfo {
	if u.User != nil {
		return u.User
	}
	if user != nil && strings.EqualFold(u.Scheme, base.Scheme) && strings.EqualFold(u.Host, base.Host) {
		return user
	}
	return nil
}

// resolveRef is Helm's repo.ResolveReferenceURL: an absolute URL as is,
// else relative to the repository URL taken as a directory, with the
// repository URL's query.
func resolveRef(base *url.URL, ref string) (*url.URL, error) {
	r, err := url.Parse(ref)
	if err != nil {
		return nil, err
	}
	if r.IsAbs() {
		if s := strings.ToLower(r.Scheme); s != "http" && s != "https" {
			return nil, errors.New("not http(s)")
		}
		return r, nil
	}
	dir := *base
	dir.RawPath = strings.TrimSuffix(dir.RawPath, "/") + "/"
	dir.Path = strings.TrimSuffix(dir.Path, "/") + "/"
	if dir.RawPath == "/" {
		dir.RawPath = ""
	}
	res := dir.ResolveReference(r)
	res.RawQuery = base.RawQuery
	return res, nil
}

// getAll reads u whole, at most limit bytes.
func getAll(ctx context.Context, client *http.Client, u *url.URL, user *url.Userinfo, limit int64, what string) ([]byte, error) {
	target := *u
	target.User = nil
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, unwrapURLError(err))
	}
	if user != nil {
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", what, unwrapURLError(err))
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %s", what, resp.Status)
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("%s: larger than the %s allowed (%d bytes)", what, sizeText(limit), resp.ContentLength)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("%s: reading: %w", what, unwrapURLError(err))
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s: larger than the %s allowed", what, sizeText(limit))
	}
	return b, nil
}

// unwrapURLError drops the *url.Error wrapper: its text repeats the URL,
// which may carry a query worth hiding.
func unwrapURLError(err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Err
	}
	return err
}

func sizeText(n int64) string {
	if n >= 1<<20 && n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%d bytes", n)
}

// redact shows a URL without its userinfo, query and fragment.
func redact(raw string) string {
	u, err := url.Parse(raw)
	if err == nil && u.Opaque == "" && !strings.Contains(u.RawQuery+u.Fragment, "@") {
		q := u.RawQuery != "" || u.ForceQuery
		u.User, u.RawQuery, u.ForceQuery, u.Fragment, u.RawFragment = nil, "", false, "", ""
		s := u.String()
		if q {
			s += "?xxxxx"
		}
		return s
	}
	// Not a URL Go can read (a raw password with '/', '?' or '#' in it, say):
	// keep only what follows the last '@', and cut the query.
	scheme, rest, ok := strings.Cut(raw, "://")
	if !ok {
		scheme, rest = "", raw
	} else {
		scheme += "://"
	}
	if i := strings.LastIndex(rest, "@"); i >= 0 {
		rest = rest[i+1:]
	}
	if i := strings.IndexAny(rest, "?#"); i >= 0 {
		rest = rest[:i] + "?xxxxx"
	}
	return scheme + rest
}
