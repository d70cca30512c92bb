package endtoend

import (
	"encoding/base64"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/registry"
)

// TestCredentialSources: the target's credentials and CA come from the
// installer user data alone; the source's from the docker config or a
// palette-edge cred file. No password appears in any output.
func TestCredentialSources(t *testing.T) {
	const srcUser, srcPass = "puller", "Src-Secret-77"
	const tgtUser, tgtPass = "edge", "Tgt-Secret-88"
	src := registry.StartT(t, registry.Options{Users: map[string]string{srcUser: srcPass}})
	c := standardCorpus()
	c.seed(t, src)
	dir := t.TempDir()

	tgt := registry.StartT(t, registry.Options{TLS: true, Users: map[string]string{tgtUser: tgtPass}})
	userData := filepath.Join(dir, "user-data.yaml")
	indented := "            " + strings.ReplaceAll(strings.TrimSpace(string(tgt.CAPEM)), "\n", "\n            ")
	ud := fmt.Sprintf(`#cloud-config
stylus:
  registryCredentials:
    domain: %s%s
    username: %s
    password: %s
    encodedPassword: true
  externalRegistries:
    registries:
      - domain: %s
        certificates:
          - |
%s
`, tgt.Host(), external, tgtUser, base64.StdEncoding.EncodeToString([]byte(tgtPass)), tgt.Host(), indented)
	if err := os.WriteFile(userData, []byte(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"mirror", "-p", c.profile, "--user-data", userData, "--source-plain-http", "--progress", "plain", "--debug"}
	base = append(base, mirrors(src)...)

	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) []string
	}{
		{"docker config", func(t *testing.T) []string {
			cfg := t.TempDir()
			auth := base64.StdEncoding.EncodeToString([]byte(srcUser + ":" + srcPass))
			json := fmt.Sprintf(`{"auths":{%q:{"auth":%q}}}`, src.Host(), auth)
			if err := os.WriteFile(filepath.Join(cfg, "config.json"), []byte(json), 0o600); err != nil {
				t.Fatal(err)
			}
			t.Setenv("DOCKER_CONFIG", cfg)
			return nil
		}},
		{"cred file", func(t *testing.T) []string {
			t.Setenv("DOCKER_CONFIG", t.TempDir()) // an empty docker config
			f := filepath.Join(t.TempDir(), "creds.json")
			json := fmt.Sprintf(`{"image":[{"endpoint":"http://%s","username":%q,"password":%q}]}`, src.Host(), srcUser, srcPass)
			if err := os.WriteFile(f, []byte(json), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--cred-file", f}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			reportFile := filepath.Join(t.TempDir(), "report.json")
			args := append(append(append([]string{}, base...), tc.setup(t)...), "--report", reportFile)
			r := run(t, "", args...)
			if r.code != 0 {
				t.Fatalf("exit %d\n%s", r.code, r.stderr)
			}
			c.checkTarget(t, tgt, external)
			written, _ := os.ReadFile(reportFile)
			for _, secret := range []string{srcPass, tgtPass, base64.StdEncoding.EncodeToString([]byte(tgtPass))} {
				if strings.Contains(r.stdout+r.stderr+string(written), secret) {
					t.Errorf("a secret appears in the output or the report")
				}
			}
		})
	}

	// Without the source credentials every image fails as unauthorized,
	// each with its reason, and the run says so with exit 3.
	t.Setenv("DOCKER_CONFIG", t.TempDir())
	r := run(t, "", append(base, "-o", "json")...)
	rep := decode(t, r)
	if r.code != 3 || rep.Summary.Failed != len(c.images) {
		t.Fatalf("without source credentials: exit %d, %+v", r.code, rep.Summary)
	}
	for _, im := range rep.Images {
		if !strings.HasPrefix(im.Reason, "unauthorized") {
			t.Errorf("%s: reason %q", im.Source, im.Reason)
		}
	}
}

// TestUserDataInsecureMappedRegistry: a registry of
// stylus.externalRegistries marked insecure is reached without verifying
// its certificate, also when images go there only through mapping rules.
func TestUserDataInsecureMappedRegistry(t *testing.T) {
	c, src, tgt := setup(t, registry.Options{TLS: true})
	ud := fmt.Sprintf(`#cloud-config
stylus:
  externalRegistries:
    registries:
      - domain: %[1]s
        insecure: true
    registryMappingRules:
      quay.io: %[1]s/mapped/quay.io
`, tgt.Host())
	userData := filepath.Join(t.TempDir(), "user-data.yaml")
	if err := os.WriteFile(userData, []byte(ud), 0o600); err != nil {
		t.Fatal(err)
	}
	args := append([]string{"mirror", "-p", c.profile, "--user-data", userData, "--source-plain-http", "--progress", "none", "-o", "json"}, mirrors(src)...)
	r := run(t, "", args...)
	rep := decode(t, r)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s", r.code, r.stderr)
	}
	copied := 0
	for _, im := range rep.Images {
		switch {
		case strings.HasPrefix(im.Source, "quay.io/"):
			if im.Status != "copied" || !strings.HasPrefix(im.Target, tgt.Host()+"/mapped/quay.io/") {
				t.Errorf("%s: %s → %s (%s)", im.Source, im.Status, im.Target, im.Reason)
			}
			copied++
		case im.Status != "unmapped":
			t.Errorf("%s: %s, want unmapped (no rule sends it anywhere)", im.Source, im.Status)
		}
	}
	if copied == 0 {
		t.Fatal("no quay.io image in the corpus")
	}
}
