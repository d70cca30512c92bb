package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/edgemirror/edgemirror/report"
	"github.com/edgemirror/edgemirror/targets"
)

// fixtures is the test data directory; case arguments are relative to it.
const fixtures = "../fixtures"

// run runs the CLI in-process from dir.
func run(t *testing.T, dir string, stdin string, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	if dir != "" {
		t.Chdir(dir)
	}
	var out, errb bytes.Buffer
	code = Run(context.Background(), args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// tsvRows renders a plan report as the sorted rows of expected.tsv.
func tsvRows(rep *report.Report) []string {
	var rows []string
	for _, im := range rep.Images {
		canonical := im.Canonical
		switch {
		case im.Status == targets.Skipped:
			canonical = "-"
		case canonical == "" || im.Status == targets.Unresolved:
			canonical = im.Source
		}
		if canonical == "" {
			canonical = "-"
		}
		target := im.Target
		if target == "" {
			target = "-"
		}
		var origins []string
		for _, o := range im.Origins {
			origins = append(origins, o.Profile+"/"+o.Pack+":"+string(o.Origin))
		}
		sort.Strings(origins)
		rows = append(rows, strings.Join([]string{string(im.Status), canonical, target, strings.Join(origins, ",")}, "\t"))
	}
	sort.Strings(rows)
	return rows
}

// TestPlanGolden runs every fixtures/plan/CASE/args and compares the plan
// with the hand-derived expected.tsv and warnings.txt.
func TestPlanGolden(t *testing.T) {
	cases, err := filepath.Glob(filepath.Join(fixtures, "plan", "*", "args"))
	if err != nil || len(cases) == 0 {
		t.Fatalf("no plan fixtures found: %v", err)
	}
	for _, argsFile := range cases {
		dir := filepath.Dir(argsFile)
		name := filepath.Base(dir)
		t.Run(name, func(t *testing.T) {
			raw, err := os.ReadFile(argsFile)
			if err != nil {
				t.Fatal(err)
			}
			args := []string{"plan", "-o", "json"}
			for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
				if line = strings.TrimSpace(line); line != "" {
					args = append(args, line)
				}
			}
			want, err := os.ReadFile(filepath.Join(dir, "expected.tsv"))
			if err != nil {
				t.Fatal(err)
			}
			abs, _ := filepath.Abs(fixtures)
			code, stdout, stderr := run(t, abs, "", args...)
			var rep report.Report
			if err := json.Unmarshal([]byte(stdout), &rep); err != nil {
				t.Fatalf("exit %d, stdout is not a JSON report: %v\nstderr: %s", code, err, stderr)
			}
			got := strings.Join(tsvRows(&rep), "\n")
			if got != strings.TrimSpace(string(want)) {
				t.Errorf("plan differs from expected.tsv\n--- got\n%s\n--- want\n%s\n--- stderr\n%s", got, strings.TrimSpace(string(want)), stderr)
			}
			wantCode := ExitOK
			if rep.Failures() > 0 {
				wantCode = ExitIncomplete
			}
			if code != wantCode {
				t.Errorf("exit code %d, want %d", code, wantCode)
			}
			if w, err := os.ReadFile(filepath.Join(dir, "warnings.txt")); err == nil {
				for _, sub := range strings.Split(strings.TrimSpace(string(w)), "\n") {
					if sub = strings.TrimSpace(sub); sub != "" && !strings.Contains(stderr, sub) {
						t.Errorf("stderr lacks warning %q:\n%s", sub, stderr)
					}
				}
			}
		})
	}
}

// TestBadInput runs fixtures/bad/cases.tsv: each case's exit code, and for
// usage errors one line on stderr that names what is wrong.
func TestBadInput(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(fixtures, "bad", "cases.tsv"))
	if err != nil {
		t.Fatal(err)
	}
	abs, _ := filepath.Abs(fixtures)
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		cols := strings.Split(line, "\t")
		if len(cols) != 3 {
			t.Fatalf("bad cases.tsv line %q", line)
		}
		t.Run(cols[0], func(t *testing.T) {
			code, stdout, stderr := run(t, abs, "", strings.Fields(cols[0])...)
			if fmt.Sprint(code) != cols[1] {
				t.Errorf("exit %d, want %s\nstderr: %s", code, cols[1], stderr)
			}
			if code == ExitUsage {
				if n := strings.Count(strings.TrimSpace(stderr), "\n"); n != 0 || !strings.Contains(stderr, cols[2]) {
					t.Errorf("stderr should be one line containing %q, got:\n%s", cols[2], stderr)
				}
				if stdout != "" {
					t.Errorf("stdout should be empty on a usage error, got:\n%s", stdout)
				}
			} else if cols[2] != "-" && !strings.Contains(stdout+stderr, cols[2]) {
				t.Errorf("output lacks %q:\n%s\n%s", cols[2], stdout, stderr)
			}
			if strings.Contains(stderr, "panic") || strings.Contains(stderr, "goroutine ") {
				t.Errorf("stack trace on stderr:\n%s", stderr)
			}
		})
	}
}
