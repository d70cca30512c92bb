// Package auth finds registry credentials for edgemirror: the command-line
// flags, the registry entries of a Palette Edge installer user data file
// (which it parses, see ParseUserData), a palette-edge credentials file and
// the docker config with its credential helpers.
//
// Secrets never appear in the errors, warnings or descriptions this package
// produces.
package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"

	orasauth "oras.land/oras-go/v2/registry/remote/auth"
)

// Options says where a Store finds credentials. Sources are consulted in
// this order, the first with a credential for the host winning: the flags
// (Username/Password), the user data, the cred file, the docker config.
type Options struct {
	// Registry is the target registry, host[:port][/path] as given with -r;
	// its host is the one Username and Password are for. When "" the user
	// data's Registry is used.
	Registry string
	// Username is the user name for the target registry (-u).
	Username string
	// Password is the password for the target registry (--password-stdin
	// or --password).
	Password string
	// UserData supplies the credentials of its registry entries, by the
	// host of their domain. nil means none.
	UserData *UserData
	// CredFile is a palette-edge credentials file,
	// {"image":[{"endpoint","username","password"}]}; "" means none.
	CredFile string
	// DockerConfig is the path of a docker config.json; "" means the default
	// location ($DOCKER_CONFIG/config.json, else ~/.docker/config.json),
	// where a missing file simply means no credentials. credsStore and
	// credHelpers (docker credential helpers) are honoured.
	DockerConfig string
	// NoDockerConfig ignores the docker config entirely.
	NoDockerConfig bool
}

// Store resolves credentials by registry host. It is safe for concurrent
// use. Its String method lists only the hosts it knows.
type Store struct {
	// static are the flag, user data and cred file credentials, by
	// normalised host, in precedence order.
	static  []source
	docker  *dockerConfig
	helpers *helperCache
}

// source is one origin of static credentials.
type source struct {
	name  string
	creds map[string]orasauth.Credential
}

// NewStore loads the credential sources of opts. Errors are one line naming
// the file and the field; they never contain a secret.
func NewStore(opts Options) (*Store, error) {
	s := &Store{helpers: &helperCache{calls: map[string]*helperCall{}}}

	flags := source{name: "flags", creds: map[string]orasauth.Credential{}}
	if opts.Username != "" || opts.Password != "" {
		target := opts.Registry
		if target == "" && opts.UserData != nil {
			target = opts.UserData.Registry
		}
		host := hostOf(target)
		switch {
		case host == "":
			return nil, errors.New("a username or password was given but no target registry")
		case opts.Password == "":
			return nil, fmt.Errorf("a username was given for %s but no password", host)
		}
		flags.creds[host] = orasauth.Credential{Username: opts.Username, Password: opts.Password}
	}
	s.static = append(s.static, flags)

	ud := source{name: "user data", creds: map[string]orasauth.Credential{}}
	if opts.UserData != nil {
		for _, r := range opts.UserData.Registries {
			if r.Username == "" && r.Password == "" {
				continue
			}
			// Registry auth is per host: the first entry for a host wins.
			host := hostOf(r.Domain)
			if _, ok := ud.creds[host]; !ok && host != "" {
				ud.creds[host] = orasauth.Credential{Username: r.Username, Password: r.Password}
			}
		}
	}
	s.static = append(s.static, ud)

	if opts.CredFile != "" {
		creds, err := readCredFile(opts.CredFile)
		if err != nil {
			return nil, err
		}
		s.static = append(s.static, source{name: opts.CredFile, creds: creds})
	}

	if !opts.NoDockerConfig {
		cfg, err := loadDockerConfig(opts.DockerConfig)
		if err != nil {
			return nil, err
		}
		s.docker = cfg
	}
	return s, nil
}

// Credential returns the credential for a registry host[:port] (a scheme or
// path is ignored), or an empty credential when no source has one. Its
// signature is that of oras-go's auth.Client.Credential. Hosts compare
// case-insensitively, and docker.io, index.docker.io, registry-1.docker.io
// and https://index.docker.io/v1/ are the same registry.
func (s *Store) Credential(ctx context.Context, hostport string) (orasauth.Credential, error) {
	host := hostOf(hostport)
	if host == "" {
		return orasauth.EmptyCredential, nil
	}
	for _, src := range s.static {
		if c, ok := src.creds[host]; ok {
			return c, nil
		}
	}
	if s.docker != nil {
		return s.docker.credential(ctx, s.helpers, host)
	}
	return orasauth.EmptyCredential, nil
}

// String lists the hosts with credentials per source, never a secret.
func (s Store) String() string {
	var parts []string
	for _, src := range s.static {
		hosts := make([]string, 0, len(src.creds))
		for h := range src.creds {
			hosts = append(hosts, h)
		}
		sort.Strings(hosts)
		parts = append(parts, fmt.Sprintf("%s: [%s]", src.name, strings.Join(hosts, " ")))
	}
	if s.docker != nil {
		parts = append(parts, "docker config: "+s.docker.path)
	}
	return "auth.Store{" + strings.Join(parts, "; ") + "}"
}

// GoString is String, so that %#v cannot print a secret either.
func (s Store) GoString() string { return s.String() }

// dockerHub is the normalised host of Docker Hub.
const dockerHub = "docker.io"

// hostOf returns the lower-cased host[:port] of a registry given as
// host[:port][/path], possibly with a scheme; Docker Hub's aliases are folded
// into "docker.io".
func hostOf(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	if i := strings.IndexAny(s, "/?#"); i >= 0 {
		s = s[:i]
	}
	s = strings.ToLower(s)
	switch s {
	case "docker.io", "index.docker.io", "registry-1.docker.io":
		return dockerHub
	}
	return s
}

// readCredFile reads a palette-edge credentials file:
// {"image":[{"endpoint","username","password"}]}.
func readCredFile(path string) (map[string]orasauth.Credential, error) {
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("%s: invalid JSON: %s", path, jsonError(data, err))
	}
	raw, ok := doc["image"]
	if !ok || string(raw) == "null" {
		return nil, fmt.Errorf("%s: image: missing", path)
	}
	var entries []json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, fmt.Errorf("%s: image: must be a list", path)
	}
	creds := map[string]orasauth.Credential{}
	for i, e := range entries {
		field := fmt.Sprintf("image[%d]", i)
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(e, &fields); err != nil || fields == nil {
			return nil, fmt.Errorf("%s: %s: must be an object", path, field)
		}
		var vals [3]string
		for j, name := range []string{"endpoint", "username", "password"} {
			v, ok := fields[name]
			if ok && string(v) != "null" {
				if err := json.Unmarshal(v, &vals[j]); err != nil {
					return nil, fmt.Errorf("%s: %s.%s: must be a string", path, field, name)
				}
			}
			if strings.TrimSpace(vals[j]) == "" {
				return nil, fmt.Errorf("%s: %s.%s: missing", path, field, name)
			}
		}
		host := hostOf(vals[0])
		if host == "" {
			return nil, fmt.Errorf("%s: %s.endpoint: no host", path, field)
		}
		if _, dup := creds[host]; !dup { // the first entry for a host wins
			creds[host] = orasauth.Credential{Username: strings.TrimSpace(vals[1]), Password: vals[2]}
		}
	}
	return creds, nil
}

// jsonError describes a JSON decoding error with its line, without quoting
// the input.
func jsonError(data []byte, err error) string {
	var syntax *json.SyntaxError
	if errors.As(err, &syntax) {
		line := 1 + strings.Count(string(data[:min(int(syntax.Offset), len(data))]), "\n")
		return fmt.Sprintf("line %d: %s", line, syntax.Error())
	}
	var typeErr *json.UnmarshalTypeError
	if errors.As(err, &typeErr) {
		return fmt.Sprintf("expected an object, found a %s", typeErr.Value)
	}
	return oneLine(err.Error())
}
