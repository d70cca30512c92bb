package auth

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	orasauth "oras.land/oras-go/v2/registry/remote/auth"
)

func basic(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

// writeFile writes content into dir/name and returns its path.
func writeFile(t *testing.T, dir, name, content string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// newStore builds a Store or fails the test.
func newStore(t *testing.T, opts Options) *Store {
	t.Helper()
	s, err := NewStore(opts)
	if err != nil {
		t.Fatalf("NewStore: %v", err)
	}
	return s
}

func user(t *testing.T, s *Store, host string) string {
	t.Helper()
	c, err := s.Credential(context.Background(), host)
	if err != nil {
		t.Fatalf("Credential(%s): %v", host, err)
	}
	return c.Username
}

func TestPrecedence(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "nodocker"))
	ud := &UserData{Registry: "reg.example.com:5000/edge", Registries: []Registry{
		{Domain: "reg.example.com:5000/edge", Username: "ud", Password: "p"},
		{Domain: "REG.example.com:5000/other", Username: "ud-second", Password: "p"}, // same host: first wins
		{Domain: "anon.example.com"},
	}}
	credFile := writeFile(t, dir, "creds.json", `{"image":[
		{"endpoint":"https://reg.example.com:5000/v2/","username":"cf","password":"p"},
		{"endpoint":"cf-only.example.com","username":"cf","password":"p"},
		{"endpoint":"anon.example.com","username":"cf-anon","password":"p"}]}`)
	docker := writeFile(t, dir, "config.json", fmt.Sprintf(`{"auths":{
		"reg.example.com:5000":{"auth":%q},
		"https://docker-only.example.com/v1/":{"auth":%q},
		"cf-only.example.com":{"auth":%q}}}`, basic("dk", "p"), basic("dk", "p"), basic("dk", "p")))

	tests := []struct {
		name string
		opts Options
		host string
		want string
	}{
		{"flags win", Options{Registry: "reg.example.com:5000/edge", Username: "flag", Password: "p", UserData: ud, CredFile: credFile, DockerConfig: docker}, "reg.example.com:5000", "flag"},
		{"flags use the user data registry when -r is absent", Options{Username: "flag", Password: "p", UserData: ud, CredFile: credFile, DockerConfig: docker}, "reg.example.com:5000", "flag"},
		{"user data next", Options{UserData: ud, CredFile: credFile, DockerConfig: docker}, "reg.example.com:5000", "ud"},
		{"host compare is case-insensitive", Options{UserData: ud}, "Reg.Example.COM:5000", "ud"},
		{"anonymous user data entry does not hide the cred file", Options{UserData: ud, CredFile: credFile}, "anon.example.com", "cf-anon"},
		{"cred file next", Options{CredFile: credFile, DockerConfig: docker}, "reg.example.com:5000", "cf"},
		{"cred file beats docker config", Options{UserData: ud, CredFile: credFile, DockerConfig: docker}, "cf-only.example.com", "cf"},
		{"docker config last", Options{DockerConfig: docker}, "reg.example.com:5000", "dk"},
		{"docker key with scheme and path", Options{DockerConfig: docker}, "docker-only.example.com", "dk"},
		{"NoDockerConfig", Options{DockerConfig: docker, NoDockerConfig: true}, "reg.example.com:5000", ""},
		{"unknown host", Options{UserData: ud, CredFile: credFile, DockerConfig: docker}, "elsewhere.example.com", ""},
		{"flags are only for the target host", Options{Registry: "reg.example.com:5000", Username: "flag", Password: "p", DockerConfig: docker}, "docker-only.example.com", "dk"},
		{"port matters", Options{DockerConfig: docker}, "reg.example.com", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := user(t, newStore(t, tc.opts), tc.host); got != tc.want {
				t.Errorf("user for %s = %q, want %q", tc.host, got, tc.want)
			}
		})
	}
}

func TestDockerHubAliases(t *testing.T) {
	hosts := []string{"registry-1.docker.io", "docker.io", "index.docker.io", "https://index.docker.io/v1/", "Docker.IO"}
	keys := []string{"https://index.docker.io/v1/", "docker.io", "index.docker.io", "registry-1.docker.io", "https://index.docker.io/v1"}
	for _, key := range keys {
		t.Run(key, func(t *testing.T) {
			dir := t.TempDir()
			cfg := writeFile(t, dir, "config.json", fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, key, basic("hubuser", "hubpass")))
			s := newStore(t, Options{DockerConfig: cfg})
			for _, host := range hosts {
				c, err := s.Credential(context.Background(), host)
				if err != nil || c.Username != "hubuser" || c.Password != "hubpass" {
					t.Errorf("Credential(%s) = %q, %v; want hubuser", host, c.Username, err)
				}
			}
		})
	}
	// The key docker login writes wins over an alias.
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.json", fmt.Sprintf(`{"auths":{"docker.io":{"auth":%q},"https://index.docker.io/v1/":{"auth":%q}}}`,
		basic("alias", "p"), basic("canonical", "p")))
	if got := user(t, newStore(t, Options{DockerConfig: cfg}), "registry-1.docker.io"); got != "canonical" {
		t.Errorf("user = %q, want canonical", got)
	}
	// -u/-p for docker.io apply to the host oras-go asks for.
	s := newStore(t, Options{Registry: "docker.io/myorg", Username: "flag", Password: "p", NoDockerConfig: true})
	if got := user(t, s, "registry-1.docker.io"); got != "flag" {
		t.Errorf("user = %q, want flag", got)
	}
}

func TestDockerConfigFields(t *testing.T) {
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.json", `{"auths":{
		"legacy.example.com":{"username":"lu","password":"lp"},
		"token.example.com":{"identitytoken":"idtok"},
		"empty.example.com":{},
		"bad.example.com":{"auth":"`+base64.StdEncoding.EncodeToString([]byte("no-colon-"+secretPassword))+`"}}}`)
	s := newStore(t, Options{DockerConfig: cfg})
	ctx := context.Background()
	if c, _ := s.Credential(ctx, "legacy.example.com"); c != (orasauth.Credential{Username: "lu", Password: "lp"}) {
		t.Errorf("legacy = %+v", c.Username)
	}
	if c, _ := s.Credential(ctx, "token.example.com"); c.RefreshToken != "idtok" {
		t.Errorf("identity token not used")
	}
	if c, err := s.Credential(ctx, "empty.example.com"); err != nil || c != orasauth.EmptyCredential {
		t.Errorf("empty entry = %v", err)
	}
	_, err := s.Credential(ctx, "bad.example.com")
	if err == nil || err.Error() != fmt.Sprintf(`docker config %s: auths["bad.example.com"].auth: not base64 of username:password`, cfg) {
		t.Errorf("bad auth error = %v", err)
	}
	if err != nil {
		assertNoSecret(t, err.Error())
	}
}

func TestDockerConfigLocation(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "config.json", fmt.Sprintf(`{"auths":{"env.example.com":{"auth":%q}}}`, basic("envuser", "p")))
	t.Setenv("DOCKER_CONFIG", dir)
	if got := user(t, newStore(t, Options{}), "env.example.com"); got != "envuser" {
		t.Errorf("DOCKER_CONFIG not honoured: %q", got)
	}
	t.Setenv("DOCKER_CONFIG", filepath.Join(dir, "absent"))
	if got := user(t, newStore(t, Options{}), "env.example.com"); got != "" {
		t.Errorf("missing default config should give no credentials, got %q", got)
	}
	missing := filepath.Join(dir, "missing.json")
	if _, err := NewStore(Options{DockerConfig: missing}); err == nil || err.Error() != "docker config "+missing+": no such file or directory" {
		t.Errorf("explicit missing docker config: %v", err)
	}
	typed := writeFile(t, dir, "typed.json", `{"auths":{"x.example":"`+secretPassword+`"}}`)
	if _, err := NewStore(Options{DockerConfig: typed}); err == nil || err.Error() != "docker config "+typed+": auths: wrong type (a JSON string where an object was expected)" {
		t.Errorf("mistyped docker config: %v", err)
	}
	bad := writeFile(t, dir, "bad.json", "{\n\"auths\": {\"x\": "+secretPassword+"}}")
	if _, err := NewStore(Options{DockerConfig: bad}); err == nil || !strings.HasPrefix(err.Error(), "docker config "+bad+": invalid JSON: line 2: ") {
		t.Errorf("invalid docker config: %v", err)
	} else {
		assertNoSecret(t, err.Error())
	}
}

func TestCredFileErrors(t *testing.T) {
	t.Chdir(t.TempDir())
	tests := []struct {
		name, content, want string
	}{
		{"missing endpoint", `{"image":[{"endpoint":"a","username":"u","password":"` + secretPassword + `"},{"endpoint":"b","username":"u","password":"p"},{"username":"u","password":"` + secretPassword + `"}]}`, "creds.json: image[2].endpoint: missing"},
		{"missing password", `{"image":[{"endpoint":"` + secretDomain + `","username":"u"}]}`, "creds.json: image[0].password: missing"},
		{"number username", `{"image":[{"endpoint":"` + secretDomain + `","username":7,"password":"` + secretPassword + `"}]}`, "creds.json: image[0].username: must be a string"},
		{"no image", `{"images":[]}`, "creds.json: image: missing"},
		{"image not a list", `{"image":{"endpoint":"x"}}`, "creds.json: image: must be a list"},
		{"entry not an object", `{"image":["` + secretPassword + `"]}`, "creds.json: image[0]: must be an object"},
		{"invalid JSON", "{\n \"image\": [\n  {\"password\": \"" + secretPassword + "\",}\n]}", "creds.json: invalid JSON: line 3: invalid character '}' looking for beginning of object key string"},
		{"not an object", `["` + secretPassword + `"]`, "creds.json: invalid JSON: expected an object, found a array"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			writeFile(t, ".", "creds.json", tc.content)
			_, err := NewStore(Options{CredFile: "creds.json", NoDockerConfig: true})
			if err == nil || err.Error() != tc.want {
				t.Fatalf("error\n got %v\nwant %s", err, tc.want)
			}
			assertNoSecret(t, err.Error())
		})
	}
	if _, err := NewStore(Options{CredFile: "absent.json", NoDockerConfig: true}); err == nil || err.Error() != "absent.json: no such file or directory" || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("missing cred file: %v", err)
	}
}

func TestFlagErrors(t *testing.T) {
	if _, err := NewStore(Options{Username: "u", Password: secretPassword, NoDockerConfig: true}); err == nil {
		t.Error("credentials without a registry accepted")
	} else {
		assertNoSecret(t, err.Error())
	}
	if _, err := NewStore(Options{Registry: "r.example", Username: "u", NoDockerConfig: true}); err == nil {
		t.Error("username without a password accepted")
	}
}

func TestStoreStringHasNoSecrets(t *testing.T) {
	ud := &UserData{Registries: []Registry{{Domain: "a.example", Username: "u", Password: secretPassword}}}
	s := newStore(t, Options{Registry: "r.example", Username: "u", Password: secretPassword, UserData: ud, NoDockerConfig: true})
	for _, f := range []string{"%v", "%+v", "%#v", "%s"} {
		for _, v := range []any{s, *s} {
			if out := fmt.Sprintf(f, v); strings.Contains(out, secretPassword) {
				t.Errorf("%s leaks: %s", f, out)
			}
		}
	}
}

// fakeHelper is a real docker credential helper speaking the protocol.
const fakeHelper = `#!/bin/sh
[ "$1" = get ] || exit 3
server=$(cat)
echo "$server" >> "$FAKE_HELPER_LOG"
case "$server" in
helper.example.com)
	printf '{"ServerURL":"%s","Username":"helperuser","Secret":"helper-secret"}\n' "$server" ;;
https://index.docker.io/v1/)
	printf '{"ServerURL":"%s","Username":"<token>","Secret":"hub-identity-token"}\n' "$server" ;;
fail.example.com)
	echo "LEAKED-STDERR-SECRET" >&2
	echo "LEAKED-STDOUT-SECRET"
	exit 1 ;;
garbage.example.com)
	echo "not json LEAKED-STDOUT-SECRET" ;;
*)
	echo "credentials not found in native keychain"
	exit 1 ;;
esac
`

// installFakeHelper puts docker-credential-fake on PATH and returns the
// file logging its invocations.
func installFakeHelper(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("sh"); err != nil {
		t.Skip("no /bin/sh")
	}
	bin := t.TempDir()
	if err := os.WriteFile(filepath.Join(bin, "docker-credential-fake"), []byte(fakeHelper), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "calls.log")
	t.Setenv("FAKE_HELPER_LOG", log)
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return log
}

func helperCalls(t *testing.T, log string) []string {
	t.Helper()
	data, err := os.ReadFile(log)
	if err != nil {
		return nil
	}
	return strings.Fields(string(data))
}

func TestCredentialHelpers(t *testing.T) {
	log := installFakeHelper(t)
	dir := t.TempDir()
	cfg := writeFile(t, dir, "config.json", fmt.Sprintf(`{
		"credsStore": "fake",
		"credHelpers": {"per-host.example.com": "fake", "missing-helper.example.com": "absent"},
		"auths": {"fallback.example.com": {"auth": %q}, "helper.example.com": {}}}`, basic("fileuser", "p")))
	s := newStore(t, Options{DockerConfig: cfg})
	ctx := context.Background()

	c, err := s.Credential(ctx, "helper.example.com")
	if err != nil || c != (orasauth.Credential{Username: "helperuser", Password: "helper-secret"}) {
		t.Errorf("helper.example.com = %q, %v", c.Username, err)
	}
	// Cached: a second lookup does not run the helper again.
	if _, err := s.Credential(ctx, "HELPER.example.com"); err != nil {
		t.Error(err)
	}
	if calls := helperCalls(t, log); len(calls) != 1 {
		t.Errorf("helper ran %d times, want 1: %q", len(calls), calls)
	}

	// Docker Hub: the helper is asked for the docker login server address,
	// and "<token>" means an identity token.
	c, err = s.Credential(ctx, "registry-1.docker.io")
	if err != nil || c != (orasauth.Credential{RefreshToken: "hub-identity-token"}) {
		t.Errorf("docker hub = %+v, %v", c.Username, err)
	}

	// Helper has nothing: the auths entry is used.
	if got := user(t, s, "fallback.example.com"); got != "fileuser" {
		t.Errorf("fallback = %q", got)
	}
	// Per-host helper that has nothing: no credential, no error.
	if got := user(t, s, "per-host.example.com"); got != "" {
		t.Errorf("per-host = %q", got)
	}
	// credHelpers naming a helper that is not installed: an error naming it.
	_, err = s.Credential(ctx, "missing-helper.example.com")
	if err == nil || !strings.Contains(err.Error(), "docker-credential-absent") || !errors.Is(err, exec.ErrNotFound) {
		t.Errorf("missing helper error = %v", err)
	}

	// Failing helpers: errors name the helper, leak neither stdout nor stderr.
	for _, host := range []string{"fail.example.com", "garbage.example.com"} {
		stderr := captureStderr(t, func() {
			_, err = s.Credential(ctx, host)
		})
		if err == nil || !strings.Contains(err.Error(), "credential helper docker-credential-fake") || !strings.Contains(err.Error(), cfg) {
			t.Errorf("%s: error = %v", host, err)
		}
		if err != nil && strings.Contains(err.Error(), "LEAKED") {
			t.Errorf("%s: error leaks helper output: %v", host, err)
		}
		if strings.Contains(stderr, "LEAKED") {
			t.Errorf("%s: helper stderr reached ours: %q", host, stderr)
		}
	}
	// Failures are not cached.
	before := len(helperCalls(t, log))
	_, _ = s.Credential(ctx, "fail.example.com")
	if after := len(helperCalls(t, log)); after != before+1 {
		t.Errorf("failed lookup was cached (%d -> %d calls)", before, after)
	}
}

func TestMissingCredsStoreHelperFallsBack(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PATH", dir) // no helpers at all
	cfg := writeFile(t, dir, "config.json", fmt.Sprintf(`{"credsStore":"desktop","auths":{"a.example.com":{"auth":%q}}}`, basic("fileuser", "p")))
	s := newStore(t, Options{DockerConfig: cfg})
	if got := user(t, s, "a.example.com"); got != "fileuser" {
		t.Errorf("a.example.com = %q", got)
	}
	if got := user(t, s, "public.example.com"); got != "" {
		t.Errorf("public.example.com = %q", got)
	}
}

// captureStderr runs f with os.Stderr redirected and returns what was
// written there (what a helper wired to os.Stderr would print).
func captureStderr(t *testing.T, f func()) string {
	t.Helper()
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	saved := os.Stderr
	os.Stderr = w
	done := make(chan string)
	go func() {
		b, _ := io.ReadAll(r)
		done <- string(b)
	}()
	defer func() { os.Stderr = saved }()
	f()
	os.Stderr = saved
	_ = w.Close()
	return <-done
}
