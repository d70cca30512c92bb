package cli

import (
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/palette/palettetest"
	"github.com/edgemirror/edgemirror/report"
)

const (
	paletteKey     = "pk-Edge-SECRET-4b1d9e0a7c"
	paletteProject = "5f8e0c1d2b3a4c5d6e7f8091"
)

// paletteFixtures are the JSON fixture profiles the test API serves, by
// UID, with their metadata.name.
var paletteFixtures = []struct{ uid, file, name string }{
	{"6650a8f1c2d3e4f5a6b7c801", "edge-infra.json", "edge-rke2-plant-a-infra"},
	{"6650a8f1c2d3e4f5a6b7c802", "addon-observability.json", "plant-observability"},
	{"6650a8f1c2d3e4f5a6b7c803", "shared-edge-profile.json", "edge-k3s-calico-demo"},
	{"6650a8f1c2d3e4f5a6b7c804", "edge-agent-mode.json", "edge-agent-pxke-site"},
}

// startPalette serves the fixtures over HTTPS: the first three in the
// project, the last at tenant scope.
func startPalette(t *testing.T) *palettetest.Server {
	t.Helper()
	cfg := palettetest.Config{APIKey: paletteKey, ProjectID: paletteProject, TLS: true, Project: map[string][]byte{}, Tenant: map[string][]byte{}}
	for i, f := range paletteFixtures {
		data, err := os.ReadFile(filepath.Join(fixtures, "profiles", f.file))
		if err != nil {
			t.Fatal(err)
		}
		if i < 3 {
			cfg.Project[f.uid] = data
		} else {
			cfg.Tenant[f.uid] = data
		}
	}
	cfg.Project["6650a8f1c2d3e4f5a6b7c8ff"] = []byte(`{"items":[],"listmeta":{"count":0}}`)
	return palettetest.Start(t, cfg)
}

// apiArgs are the flags that fetch the profiles of uids from s.
func apiArgs(s *palettetest.Server, uids ...string) []string {
	return []string{"--palette-endpoint", s.URL, "--palette-ca-file", s.CAFile, "--project-id", paletteProject, "--cluster-profile-ids", strings.Join(uids, ",")}
}

func planReport(t *testing.T, args ...string) *report.Report {
	t.Helper()
	code, stdout, stderr := run(t, "", "", append([]string{"plan", "-o", "json", "-r", "10.10.254.254:8000/spectro-images"}, args...)...)
	var rep report.Report
	if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
		t.Fatalf("exit %d, stdout is not a JSON report: %v\nstderr: %s", code, err, stderr)
	}
	if code != ExitOK {
		t.Fatalf("exit %d\nstderr: %s", code, stderr)
	}
	return &rep
}

// TestPlanFromPaletteEqualsFiles: plan computes exactly the same images,
// targets, charts and warnings from profiles fetched by ID as from the same
// exports given as files, alone or mixed with files; only the origins'
// profile names differ, and they name the ID.
func TestPlanFromPaletteEqualsFiles(t *testing.T) {
	t.Setenv(apiKeyEnv, paletteKey)
	s := startPalette(t)
	var files []string
	for _, f := range paletteFixtures[:3] {
		files = append(files, "-p", filepath.Join(fixtures, "profiles", f.file))
	}
	want := planReport(t, files...)
	ids := []string{paletteFixtures[0].uid, paletteFixtures[1].uid, paletteFixtures[2].uid}
	for name, args := range map[string][]string{
		"ids":          apiArgs(s, ids...),
		"repeated":     append(apiArgs(s, ids[0]), "--cluster-profile-ids", ids[1], "--cluster-profile-ids", ids[2]),
		"file and ids": append(files[:2:2], apiArgs(s, ids[1:]...)...),
	} {
		t.Run(name, func(t *testing.T) {
			got := planReport(t, args...)
			fetched := 0
			for _, im := range append(got.Images, got.Charts...) {
				for i, o := range im.Origins {
					for _, f := range paletteFixtures {
						if o.Profile == f.name+" ("+f.uid+")" {
							im.Origins[i].Profile = f.name
							fetched++
						}
					}
				}
			}
			if fetched == 0 {
				t.Fatal("no origin names a profile ID")
			}
			for i, w := range got.Warnings {
				for _, f := range paletteFixtures {
					w = strings.ReplaceAll(w, f.name+" ("+f.uid+")", f.name)
				}
				got.Warnings[i] = w
			}
			if len(got.Images) == 0 || !reflect.DeepEqual(got.Images, want.Images) || !reflect.DeepEqual(got.Charts, want.Charts) ||
				got.Summary != want.Summary || !reflect.DeepEqual(got.Warnings, want.Warnings) {
				g, _ := json.MarshalIndent(got, "", " ")
				w, _ := json.MarshalIndent(want, "", " ")
				t.Errorf("plan from the API differs from the plan from files\n--- API\n%s\n--- files\n%s", g, w)
			}
		})
	}
}

// TestPaletteTenantScope: without --project-id no ProjectUid header is
// sent; a project's profile is then not found, with a hint.
func TestPaletteTenantScope(t *testing.T) {
	t.Setenv(apiKeyEnv, paletteKey)
	s := startPalette(t)
	tenant := paletteFixtures[3]
	args := []string{"plan", "-r", "reg.site", "--palette-endpoint", s.URL, "--palette-ca-file", s.CAFile, "--cluster-profile-ids"}
	code, stdout, stderr := run(t, "", "", append(args, tenant.uid)...)
	if code != ExitOK || !strings.Contains(stdout, tenant.name+" ("+tenant.uid+")") {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	code, _, stderr = run(t, "", "", append(args, paletteFixtures[0].uid)...)
	if code != ExitUsage || !strings.Contains(stderr, "tenant scope (404 Not Found); a project's profile needs --project-id") {
		t.Errorf("a project's profile at tenant scope: exit %d\n%s", code, stderr)
	}
	for _, r := range s.Requests() {
		if !r.TenantScope {
			t.Errorf("request %s sent ProjectUid %q without --project-id", r.Path, r.ProjectUID)
		}
	}
}

// TestPaletteErrors: each failure is one line on stderr naming the profile
// ID, with its exit code, and never the key.
func TestPaletteErrors(t *testing.T) {
	s := startPalette(t)
	uid := paletteFixtures[0].uid
	for _, tc := range []struct {
		name, key string
		args      []string
		code      int
		says      string
	}{
		{"wrong key", "not-" + paletteKey, apiArgs(s, uid), ExitOperation, "cluster profile " + uid + ": the API rejected the API key (401 Unauthorized); check PALETTE_API_KEY"},
		{"wrong project", paletteKey, append(apiArgs(s, uid), "--project-id", "5f8e0c1d2b3a4c5d6e7f8000"), ExitOperation, "cluster profile " + uid + ": no access to project 5f8e0c1d2b3a4c5d6e7f8000 (403 Forbidden)"},
		{"unknown id", paletteKey, apiArgs(s, uid, "6650a8f1c2d3e4f5a6b7c8aa"), ExitUsage, "cluster profile 6650a8f1c2d3e4f5a6b7c8aa: no such profile in project " + paletteProject + " (404 Not Found)"},
		{"not a profile", paletteKey, apiArgs(s, "6650a8f1c2d3e4f5a6b7c8ff"), ExitUsage, "cluster profile 6650a8f1c2d3e4f5a6b7c8ff: not a cluster profile export"},
		{"untrusted certificate", paletteKey, []string{"--palette-endpoint", s.URL, "--cluster-profile-ids", uid}, ExitOperation, "cluster profile " + uid + ": tls: "},
		{"no key", "", apiArgs(s, uid), ExitUsage, "--cluster-profile-ids needs a Palette API key: set the PALETTE_API_KEY environment variable"},
		{"ids without endpoint", paletteKey, []string{"--cluster-profile-ids", uid}, ExitUsage, "--cluster-profile-ids needs --palette-endpoint HOST"},
		{"endpoint without ids", paletteKey, []string{"--palette-endpoint", s.URL}, ExitUsage, "--palette-endpoint needs --cluster-profile-ids"},
		{"project without ids", paletteKey, []string{"-p", filepath.Join(fixtures, "profiles", "edge-infra.json"), "--project-id", paletteProject}, ExitUsage, "--project-id needs --cluster-profile-ids"},
		{"bad id", paletteKey, apiArgs(s, uid+",,x"), ExitUsage, `--cluster-profile-ids: "" is not a profile ID`},
		{"bad endpoint", paletteKey, []string{"--palette-endpoint", "ftp://x", "--cluster-profile-ids", uid}, ExitUsage, "palette endpoint \"ftp://x\": scheme ftp"},
		{"with a bundle", paletteKey, append(apiArgs(s, uid), "--bundle", filepath.Join(t.TempDir(), "bundle")), ExitUsage, "give either --bundle or profiles (-p, --cluster-profile-ids), not both"},
		{"no profile", paletteKey, nil, ExitUsage, "no profile given: use -p FILE (repeatable, - for stdin), or --cluster-profile-ids"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(apiKeyEnv, tc.key)
			code, stdout, stderr := run(t, "", "", append([]string{"plan", "-r", "reg.site"}, tc.args...)...)
			if code != tc.code || !strings.Contains(stderr, tc.says) || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
				t.Errorf("exit %d, want %d with one line saying %q:\n%s", code, tc.code, tc.says, stderr)
			}
			if stdout != "" || strings.Contains(stderr, paletteKey) {
				t.Errorf("stdout %q; the key on stderr: %v", stdout, strings.Contains(stderr, paletteKey))
			}
		})
	}
}

// TestPaletteRetries: 429 and 503 answers are retried, said on stderr,
// then the profile is read.
func TestPaletteRetries(t *testing.T) {
	t.Setenv(apiKeyEnv, paletteKey)
	s := startPalette(t)
	s.Fail(http.StatusTooManyRequests, http.StatusServiceUnavailable)
	code, _, stderr := run(t, "", "", append([]string{"plan", "-r", "reg.site"}, apiArgs(s, paletteFixtures[0].uid)...)...)
	if code != ExitOK || strings.Count(stderr, "retry: palette GET ") != 2 || !strings.Contains(stderr, "503 Service Unavailable") {
		t.Fatalf("exit %d\n%s", code, stderr)
	}
	if n := len(s.Requests()); n != 3 {
		t.Errorf("%d requests, want 3", n)
	}
}

// TestPaletteKeyNeverPrinted: --api-key warns once, and the key is in no
// output, report or --debug trace; --palette-insecure reaches a server
// whose certificate is not trusted.
func TestPaletteKeyNeverPrinted(t *testing.T) {
	t.Setenv(apiKeyEnv, "")
	s := startPalette(t)
	reportFile := filepath.Join(t.TempDir(), "plan.json")
	args := []string{"plan", "-r", "reg.site", "--api-key", paletteKey, "--palette-insecure", "--report", reportFile,
		"--palette-endpoint", s.URL, "--project-id", paletteProject, "--cluster-profile-ids", paletteFixtures[0].uid}
	code, stdout, stderr := run(t, "", "", args...)
	if code != ExitOK || strings.Count(stderr, "warning: --api-key is visible to other users") != 1 {
		t.Fatalf("exit %d, want 0 and one warning\n%s", code, stderr)
	}
	written, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}

	// audit traces with --debug, then stops at the closed target port.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := l.Addr().String()
	l.Close()
	args[0], args[2] = "audit", closed
	code, dstdout, dstderr := run(t, "", "", append(args, "--debug", "--plain-http", "--progress", "none")...)
	if code != ExitOperation || !strings.Contains(dstderr, "http: GET "+s.URL+"/v1/clusterprofiles/"+paletteFixtures[0].uid+"/export") {
		t.Fatalf("audit --debug: exit %d, no trace of the API request:\n%s", code, dstderr)
	}
	for what, out := range map[string]string{"stdout": stdout, "stderr": stderr, "report": string(written), "debug stdout": dstdout, "debug stderr": dstderr} {
		if strings.Contains(out, paletteKey) {
			t.Errorf("the API key appears in %s", what)
		}
	}
}
