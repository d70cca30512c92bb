package cli

import (
	"fmt"
	"os"
	"time"

	"github.com/edgemirror/edgemirror/bundle"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/report"
	"github.com/edgemirror/edgemirror/targets"
)

func runPlan(e *env, args []string) (int, error) {
	var pf profileFlags
	var tf targetFlags
	var of outputFlags
	fs := newFlagSet(e, "plan", "-p PROFILE... [-r REGISTRY] [flags]")
	var bundlePath string
	pf.add(fs)
	fs.StringVar(&bundlePath, "bundle", "", "plan the images of a bundle written by edgemirror save instead of profiles")
	tf.add(fs)
	of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if err := pf.notWith(bundlePath); err != nil {
		return 0, err
	}
	if err := of.check(); err != nil {
		return 0, err
	}
	started := time.Now()
	rules, ud, err := tf.rules()
	if err != nil {
		return 0, err
	}
	var res *profile.Result
	if bundlePath != "" {
		b, err := bundle.Open(e.ctx, bundlePath)
		if err != nil {
			return 0, usageErr(err)
		}
		res = b.Result
	} else if _, res, err = pf.load(e); err != nil {
		return 0, err
	}
	plan := targets.Build(res, rules)
	plan.Warnings = append(plan.Warnings, userDataWarnings(ud)...)
	rep := report.New("plan", Version, rules.Registry, plan, started)
	return finish(e, rep, of)
}

// finish prints warnings to stderr, the result to stdout, writes the report
// file and returns the exit code for the report.
func finish(e *env, rep *report.Report, of outputFlags) (int, error) {
	rep.Finish(time.Now())
	for _, w := range rep.Warnings {
		fmt.Fprintf(e.stderr, "warning: %s\n", w)
	}
	out := report.Text
	if of.output == "json" {
		out = report.JSON
	}
	if err := report.Write(e.stdout, rep, out); err != nil {
		return 0, opErr(fmt.Errorf("writing the result: %w", err))
	}
	if of.reportFile != "" {
		if err := writeReportFile(rep, of); err != nil {
			return 0, opErr(err)
		}
	}
	if rep.Failures() > 0 {
		return ExitIncomplete, nil
	}
	return ExitOK, nil
}

func writeReportFile(rep *report.Report, of outputFlags) error {
	f, _ := report.FormatFor(of.reportFile, of.reportFormat) // checked before the run
	file, err := os.Create(of.reportFile)
	if err != nil {
		return fmt.Errorf("report %s: %w", of.reportFile, err)
	}
	if err := report.Write(file, rep, f); err != nil {
		file.Close()
		return fmt.Errorf("report %s: %w", of.reportFile, err)
	}
	return file.Close()
}
