package endtoend

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/e2e/registry"
	"github.com/edgemirror/edgemirror/palette/palettetest"
)

// TestMirrorPaletteProfile: a profile fetched from the Palette API by its ID
// (over HTTPS, key from PALETTE_API_KEY, in a project) is mirrored as the
// same export given as a file is: every image at its target, origins naming
// the profile ID, and the key in no output, report or --debug trace.
func TestMirrorPaletteProfile(t *testing.T) { forKinds(t, testMirrorPaletteProfile) }

func testMirrorPaletteProfile(t *testing.T, kind registry.Kind) {
	const key, project, uid = "pk-e2e-SECRET-93f1a0c7", "5f8e0c1d2b3a4c5d6e7f8091", "6650a8f1c2d3e4f5a6b7c8d9"
	c, src, tgt := setup(t, registry.Options{Kind: kind})
	export, err := os.ReadFile(c.profile)
	if err != nil {
		t.Fatal(err)
	}
	api := palettetest.Start(t, palettetest.Config{APIKey: key, ProjectID: project, TLS: true, Project: map[string][]byte{uid: export}})
	t.Setenv("PALETTE_API_KEY", key)

	reportFile := filepath.Join(t.TempDir(), "report.json")
	args := []string{"mirror", "--palette-endpoint", api.URL, "--palette-ca-file", api.CAFile, "--project-id", project,
		"--cluster-profile-ids", uid, "-r", tgt.Host() + external, "--plain-http", "--source-plain-http",
		"--progress", "plain", "-o", "json", "--debug", "--report", reportFile}
	r := run(t, "", append(args, mirrors(src)...)...)
	if r.code != 0 {
		t.Fatalf("exit %d\nstderr: %s", r.code, r.stderr)
	}
	rep := decode(t, r)
	if n := statusCounts(rep)["copied"]; n != len(c.images) {
		t.Fatalf("copied %d of %d: %v", n, len(c.images), statusCounts(rep))
	}
	c.checkTarget(t, tgt, external)
	for _, im := range rep.Images {
		if len(im.Origins) == 0 || im.Origins[0].Profile != "corpus ("+uid+")" {
			t.Errorf("%s: origins %+v do not name profile %s", im.Source, im.Origins, uid)
		}
	}
	if reqs := api.Requests(); len(reqs) != 1 || reqs[0].ProjectUID != project {
		t.Errorf("API requests %+v, want one in project %s", reqs, project)
	}
	if !strings.Contains(r.stderr, "http: GET "+api.URL+"/v1/clusterprofiles/"+uid+"/export") {
		t.Errorf("--debug does not trace the API request:\n%s", r.stderr)
	}
	written, err := os.ReadFile(reportFile)
	if err != nil {
		t.Fatal(err)
	}
	for what, s := range map[string]string{"stdout": r.stdout, "stderr": r.stderr, "report": string(written)} {
		if strings.Contains(s, key) {
			t.Errorf("the API key appears in %s", what)
		}
	}
}
