package auth

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sort"
	"strings"
	"sync"
	"time"

	orasauth "oras.land/oras-go/v2/registry/remote/auth"
)

// The docker config is read here rather than with oras-go's
// registry/remote/credentials package because, in v2.7.0, (1) its credential
// helper runner connects the helper's stderr to our stderr, where a failing
// helper may print secrets, and returns the helper's stdout as the error
// text; (2) its file lookup for Docker Hub only finds the
// "https://index.docker.io/v1/" key, not "docker.io" or "index.docker.io";
// (3) NewMemoryStoreFromDockerConfig files that key under "index.docker.io"
// while the lookup asks for "https://index.docker.io/v1/", so Docker Hub
// credentials are never found.

// dockerHubServer is the server address under which docker login files
// Docker Hub credentials, and which credential helpers are asked for.
const dockerHubServer = "https://index.docker.io/v1/"

// helperTimeout bounds one credential helper run: a helper that waits for a
// desktop keyring prompt nobody sees must not hang the run forever.
const helperTimeout = 2 * time.Minute

// maxHelperOutput bounds what is read from a helper's stdout.
const maxHelperOutput = 1 << 20

// helperNotFound is the stdout of a helper that has no credentials (the
// docker-credential-helpers protocol).
const helperNotFound = "credentials not found in native keychain"

// dockerConfig is the credential part of a docker config.json.
type dockerConfig struct {
	path        string
	auths       map[string]dockerAuth
	credsStore  string
	credHelpers map[string]string
}

// dockerAuth is one entry of "auths".
type dockerAuth struct {
	Auth          string `json:"auth,omitempty"`
	Username      string `json:"username,omitempty"`
	Password      string `json:"password,omitempty"`
	IdentityToken string `json:"identitytoken,omitempty"`
	RegistryToken string `json:"registrytoken,omitempty"`
}

// loadDockerConfig reads the docker config at path, or at the default
// location when path is "". A missing default file means no credentials and
// gives a nil config.
func loadDockerConfig(path string) (*dockerConfig, error) {
	explicit := path != ""
	if !explicit {
		dir := os.Getenv("DOCKER_CONFIG")
		if dir == "" {
			home, err := os.UserHomeDir()
			if err != nil {
				return nil, nil // no home, no docker config: nothing to read
			}
			dir = filepath.Join(home, ".docker")
		}
		path = filepath.Join(dir, "config.json")
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err
		}
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	cfg := &dockerConfig{path: path}
	if len(bytes.TrimSpace(data)) == 0 {
		return cfg, nil
	}
	var raw struct {
		Auths       map[string]dockerAuth `json:"auths"`
		CredsStore  string                `json:"credsStore"`
		CredHelpers map[string]string     `json:"credHelpers"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		var typeErr *json.UnmarshalTypeError
		if errors.As(err, &typeErr) && typeErr.Field != "" {
			want := "a string"
			if k := typeErr.Type.Kind(); k == reflect.Struct || k == reflect.Map {
				want = "an object"
			}
			// Value is the JSON type ("string", "number"), never the value.
			return nil, fmt.Errorf("docker config %s: %s: wrong type (a JSON %s where %s was expected)", path, typeErr.Field, typeErr.Value, want)
		}
		return nil, fmt.Errorf("docker config %s: invalid JSON: %s", path, jsonError(data, err))
	}
	cfg.auths, cfg.credsStore, cfg.credHelpers = raw.Auths, strings.TrimSpace(raw.CredsStore), raw.CredHelpers
	return cfg, nil
}

// credential looks host up the way the docker CLI does: a credHelpers entry
// for the host, else the credsStore, else the auths entries; a helper that
// has nothing falls back to auths.
func (c *dockerConfig) credential(ctx context.Context, helpers *helperCache, host string) (orasauth.Credential, error) {
	server := host
	if host == dockerHub {
		server = dockerHubServer
	}
	if helper := c.helperFor(host); helper != "" {
		cred, err := helpers.get(ctx, c.path, helper, server)
		if err != nil {
			return orasauth.EmptyCredential, err
		}
		if cred != orasauth.EmptyCredential {
			return cred, nil
		}
	} else if c.credsStore != "" {
		cred, err := helpers.get(ctx, c.path, c.credsStore, server)
		// A credsStore applies to every registry, including public ones that
		// need no credentials; a config copied from a desktop (credsStore
		// "desktop" or "osxkeychain") onto a server without that helper must
		// not fail every anonymous pull, so a missing helper binary means
		// "no credentials here" (the docker CLI would fail instead). A helper
		// that is installed but fails is an error.
		if err != nil && !errors.Is(err, exec.ErrNotFound) {
			return orasauth.EmptyCredential, err
		}
		if cred != orasauth.EmptyCredential {
			return cred, nil
		}
	}
	return c.authFor(host)
}

// helperFor returns the credHelpers entry for host, "" if none.
func (c *dockerConfig) helperFor(host string) string {
	for _, key := range sortedKeys(c.credHelpers) {
		if helper := strings.TrimSpace(c.credHelpers[key]); hostOf(key) == host && helper != "" {
			return helper
		}
	}
	return ""
}

// authFor returns the auths entry for host. For Docker Hub the key docker
// login writes, https://index.docker.io/v1/, is preferred over its aliases.
func (c *dockerConfig) authFor(host string) (orasauth.Credential, error) {
	keys := sortedKeys(c.auths)
	if host == dockerHub {
		sort.SliceStable(keys, func(i, j int) bool { return keys[i] == dockerHubServer && keys[j] != dockerHubServer })
	}
	for _, key := range keys {
		if hostOf(key) != host {
			continue
		}
		a := c.auths[key]
		cred := orasauth.Credential{
			Username:     a.Username,
			Password:     a.Password,
			RefreshToken: a.IdentityToken,
			AccessToken:  a.RegistryToken,
		}
		if a.Auth != "" {
			decoded, err := decodeBase64(a.Auth)
			user, pass, ok := strings.Cut(decoded, ":")
			if err != nil || !ok {
				return orasauth.EmptyCredential, fmt.Errorf("docker config %s: auths[%q].auth: not base64 of username:password", c.path, key)
			}
			cred.Username, cred.Password = user, pass
		}
		if cred != orasauth.EmptyCredential {
			return cred, nil
		}
		// An empty entry ({}), as left by docker login with a credsStore,
		// holds nothing: keep looking.
	}
	return orasauth.EmptyCredential, nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// helperCache holds the credential helper lookups of a Store.
type helperCache struct {
	mu    sync.Mutex
	calls map[string]*helperCall // in-flight or successful lookups
}

// helperCall is one credential helper lookup, shared by concurrent callers.
type helperCall struct {
	done chan struct{}
	cred orasauth.Credential
	err  error
}

// get runs "docker-credential-<helper> get" for server once per Store;
// successful answers are cached, failures are not.
func (h *helperCache) get(ctx context.Context, configPath, helper, server string) (orasauth.Credential, error) {
	key := helper + "\x00" + server
	h.mu.Lock()
	call, ok := h.calls[key]
	if !ok {
		call = &helperCall{done: make(chan struct{})}
		h.calls[key] = call
	}
	h.mu.Unlock()
	if ok {
		select {
		case <-call.done:
			return call.cred, call.err
		case <-ctx.Done():
			return orasauth.EmptyCredential, ctx.Err()
		}
	}
	call.cred, call.err = runHelper(ctx, configPath, helper, server)
	if call.err != nil {
		h.mu.Lock()
		delete(h.calls, key) // do not cache failures
		h.mu.Unlock()
	}
	close(call.done)
	return call.cred, call.err
}

// runHelper speaks the docker credential helper protocol: the server
// address on stdin, {"ServerURL","Username","Secret"} on stdout. The
// helper's stderr is discarded and its stdout never quoted in errors, as
// either may hold secrets.
func runHelper(ctx context.Context, configPath, helper, server string) (orasauth.Credential, error) {
	name := "docker-credential-" + helper
	fail := func(format string, args ...any) error {
		return fmt.Errorf("docker config %s: credential helper %s (get %s): %s", configPath, name, server, fmt.Sprintf(format, args...))
	}
	if strings.ContainsAny(helper, `/\`) {
		return orasauth.EmptyCredential, fail("invalid helper name")
	}
	path, err := exec.LookPath(name)
	if err != nil {
		return orasauth.EmptyCredential, fmt.Errorf("docker config %s: credential helper %s: %w", configPath, name, exec.ErrNotFound)
	}
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout limitedBuffer
	cmd.Stdout = &stdout
	cmd.Stderr = nil // the null device: a failing helper's stderr stays out of our output
	runErr := cmd.Run()
	out := bytes.TrimSpace(stdout.Bytes())
	if runErr != nil {
		if string(out) == helperNotFound {
			return orasauth.EmptyCredential, nil
		}
		if ctxErr := ctx.Err(); ctxErr != nil {
			return orasauth.EmptyCredential, fmt.Errorf("docker config %s: credential helper %s (get %s): %w", configPath, name, server, ctxErr)
		}
		var exitErr *exec.ExitError
		if errors.As(runErr, &exitErr) {
			return orasauth.EmptyCredential, fail("exited with status %d (its output is not shown as it may contain secrets)", exitErr.ExitCode())
		}
		return orasauth.EmptyCredential, fmt.Errorf("docker config %s: credential helper %s (get %s): %w", configPath, name, server, runErr)
	}
	if stdout.truncated {
		return orasauth.EmptyCredential, fail("output too large")
	}
	var resp struct {
		Username string `json:"Username"`
		Secret   string `json:"Secret"`
	}
	if err := json.Unmarshal(out, &resp); err != nil {
		return orasauth.EmptyCredential, fail("output is not the helper protocol's JSON")
	}
	if resp.Username == "<token>" { // the protocol's marker for an identity token
		return orasauth.Credential{RefreshToken: resp.Secret}, nil
	}
	return orasauth.Credential{Username: resp.Username, Password: resp.Secret}, nil
}

// limitedBuffer keeps the first maxHelperOutput bytes written to it.
type limitedBuffer struct {
	bytes.Buffer
	truncated bool
}

// Write implements io.Writer, discarding what exceeds the limit.
func (b *limitedBuffer) Write(p []byte) (int, error) {
	if room := maxHelperOutput - b.Len(); len(p) > room {
		b.truncated = true
		if room > 0 {
			b.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return b.Buffer.Write(p)
}
