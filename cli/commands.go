package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"oras.land/oras-go/v2"

	"github.com/edgemirror/edgemirror/auth"
	"github.com/edgemirror/edgemirror/bundle"
	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/report"
	"github.com/edgemirror/edgemirror/targets"
	"github.com/edgemirror/edgemirror/transport"
)

// input is what a command copies or checks: the profiles of -p, or the
// images of a bundle.
type input struct {
	profiles []*profile.Profile
	result   *profile.Result
	bundle   *bundle.Reader // nil when reading profiles
}

// loadInput reads the profiles, or the bundle when path is set.
func loadInput(e *env, pf *profileFlags, path string) (input, error) {
	if path == "" {
		profiles, res, err := pf.load(e)
		return input{profiles: profiles, result: res}, err
	}
	b, err := bundle.Open(e.ctx, path)
	if err != nil {
		return input{}, usageErr(err)
	}
	return input{result: b.Result, bundle: b}, nil
}

// job is what the commands that move or check images share once their
// flags are read: the plan, the clients and the progress.
type job struct {
	name     string
	started  time.Time
	in       input
	plan     *targets.Plan
	clients  *clients
	rf       *runFlags
	of       *outputFlags
	progress *report.Progress
}

// start reads the input, plans it under rules, connects, checks the targets
// (push rights too when the command writes to them) and starts the
// progress.
func start(e *env, name string, pf *profileFlags, bundlePath string, tf *targetFlags, sf *sourceFlags, rf *runFlags, of *outputFlags, rules targets.Rules, ud *auth.UserData, pushes bool) (*job, error) {
	r := &job{name: name, started: time.Now(), rf: rf, of: of}
	var err error
	if r.in, err = loadInput(e, pf, bundlePath); err != nil {
		return nil, err
	}
	if r.clients, err = connect(e, tf, sf, rf.debug, rules, ud); err != nil {
		return nil, err
	}
	r.plan = targets.Build(r.in.result, rules)
	r.plan.Warnings = append(r.plan.Warnings, userDataWarnings(ud)...)
	if !rules.Bundle {
		if err := r.clients.ping(e, r.plan); err != nil {
			return nil, err
		}
		if pushes {
			if err := r.clients.checkPush(e, r.plan, rf.jobs); err != nil {
				return nil, err
			}
		}
	}
	n := 0
	for _, im := range r.plan.All() {
		if im.Status == targets.Planned {
			n++
		}
	}
	if r.progress, err = report.NewProgress(e.stderr, report.ProgressMode(rf.progress), e.tty, n, 0); err != nil {
		return nil, usageErr(err)
	}
	return r, nil
}

// options are the engine options of the run.
func (r *job) options(e *env) mirror.Options {
	o := mirror.Options{
		Jobs:             r.rf.jobs,
		Platforms:        r.rf.parsed.platforms,
		Source:           r.clients.sourceRepository,
		Target:           func(name string) (oras.Target, error) { return r.clients.target.Repository(name) },
		Hooks:            r.progress.Hooks(),
		ChunkThreshold:   r.rf.parsed.threshold,
		ChunkSize:        r.rf.parsed.chunk,
		Journal:          r.rf.parsed.journal,
		IncludeReferrers: r.rf.referrers,
		Retry:            transport.Retry{Stalls: r.rf.retries, For: r.rf.retryFor},
		ConvertDocker:    r.rf.convert,
		Stop:             e.stop,
	}
	if r.in.bundle != nil {
		o.Source = func(name string) (oras.ReadOnlyTarget, error) { return r.in.bundle.Repository(name), nil }
	} else {
		o.Charts = func(im *targets.Image) (oras.ReadOnlyTarget, error) {
			c, err := r.clients.charts.Chart(e.ctx, im.Chart.Repo, im.Chart.Name, im.Chart.Version, im.Tag)
			if err != nil {
				return nil, err
			}
			return c, nil
		}
	}
	return o
}

// finish stops the progress and writes the result; stats may be nil (audit).
func (r *job) finish(e *env, where string, stats *mirror.Stats) (int, error) {
	r.progress.Stop()
	rep := report.New(r.name, Version, where, r.plan, r.started)
	if stats != nil {
		s := &rep.Summary
		s.BytesUploaded, s.BytesMounted = stats.BytesUploaded, stats.BytesMounted
		s.BlobsUploaded, s.BlobsMounted, s.BlobsSkipped = stats.BlobsUploaded, stats.BlobsMounted, stats.BlobsSkipped
		s.BlobsRestarted, s.BytesResent = stats.BlobsRestarted, stats.BytesResent
		if stats.DockerRefused > 0 {
			fmt.Fprintf(e.stderr, "edgemirror %s: %d Docker-format image(s) not copied: %s\n", r.name, stats.DockerRefused, stats.DockerRefusal)
		}
	}
	code, err := finish(e, rep, *r.of)
	if err == nil && (e.ctx.Err() != nil || e.stopping()) {
		fmt.Fprintf(e.stderr, "edgemirror %s: interrupted; run the same command again to continue\n", r.name)
		return ExitOperation, nil
	}
	return code, err
}

func runMirror(e *env, args []string) (int, error) {
	var pf profileFlags
	var tf targetFlags
	var sf sourceFlags
	var rf runFlags
	var of outputFlags
	fs := newFlagSet(e, "mirror", "-p PROFILE... -r REGISTRY [flags]")
	pf.add(fs)
	tf.add(fs)
	sf.add(fs)
	rf.add(fs)
	of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	return copyTo(e, "mirror", &pf, "", &tf, &sf, &rf, &of)
}

func runPush(e *env, args []string) (int, error) {
	var tf targetFlags
	var rf runFlags
	var of outputFlags
	var bundlePath string
	fs := newFlagSet(e, "push", "--bundle BUNDLE -r REGISTRY [flags]")
	bundleFlag(fs, &bundlePath, "push the images of a bundle written by edgemirror save (a layout directory or a .tar)")
	tf.add(fs)
	rf.add(fs)
	of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if bundlePath == "" {
		return 0, usageErr(errors.New("give the bundle to push with --bundle BUNDLE"))
	}
	return copyTo(e, "push", &profileFlags{}, bundlePath, &tf, &sourceFlags{}, &rf, &of)
}

// copyTo copies the images of the profiles or the bundle to their targets:
// mirror and push.
func copyTo(e *env, name string, pf *profileFlags, bundlePath string, tf *targetFlags, sf *sourceFlags, rf *runFlags, of *outputFlags) (int, error) {
	if err := checkRun(rf, of, tf, pf, true); err != nil {
		return 0, err
	}
	rules, ud, err := tf.rules()
	if err != nil {
		return 0, err
	}
	r, err := start(e, name, pf, bundlePath, tf, sf, rf, of, rules, ud, true)
	if err != nil {
		return 0, err
	}
	stats := mirror.Copy(e.ctx, r.plan, r.options(e))
	return r.finish(e, rules.Registry, &stats)
}

func runAudit(e *env, args []string) (int, error) {
	var pf profileFlags
	var tf targetFlags
	var sf sourceFlags
	var rf runFlags
	var of outputFlags
	var bundlePath string
	var verify bool
	fs := newFlagSet(e, "audit", "-p PROFILE... -r REGISTRY [flags]")
	pf.add(fs)
	bundleFlag(fs, &bundlePath, "audit the images of a bundle written by edgemirror save instead of profiles")
	tf.add(fs)
	sf.add(fs)
	rf.add(fs)
	of.add(fs)
	fs.BoolVar(&verify, "verify-source", false, "also resolve each source (or the bundle) and report a target that points at another digest as mismatch")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if bundlePath != "" && len(pf.files) > 0 {
		return 0, usageErr(errors.New("give either --bundle or -p, not both"))
	}
	if err := checkRun(&rf, &of, &tf, &pf, false); err != nil {
		return 0, err
	}
	rules, ud, err := tf.rules()
	if err != nil {
		return 0, err
	}
	r, err := start(e, "audit", &pf, bundlePath, &tf, &sf, &rf, &of, rules, ud, false)
	if err != nil {
		return 0, err
	}
	mirror.Audit(e.ctx, r.plan, r.options(e), verify)
	return r.finish(e, rules.Registry, nil)
}

func runSave(e *env, args []string) (int, error) {
	var pf profileFlags
	var sf sourceFlags
	var rf runFlags
	var of outputFlags
	var output string
	fs := newFlagSet(e, "save", "-p PROFILE... -O BUNDLE [flags]")
	pf.add(fs)
	fs.StringVarP(&output, "output-bundle", "O", "", "the bundle to write: an OCI image layout directory, or a .tar file")
	sf.add(fs)
	rf.add(fs)
	of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if output == "" {
		return 0, usageErr(errors.New("give the bundle to write with -O BUNDLE (a directory, or a file ending in .tar)"))
	}
	tf := &targetFlags{}
	if err := checkRun(&rf, &of, tf, &pf, true); err != nil {
		return 0, err
	}
	r, err := start(e, "save", &pf, "", tf, &sf, &rf, &of, targets.Rules{Bundle: true}, nil, false)
	if err != nil {
		return 0, err
	}
	defer r.progress.Stop() // on the error paths; finish stops it first otherwise
	// A .tar is written from a layout directory beside it, kept until the
	// tar is complete so that a rerun resumes.
	dir := output
	tarball := strings.HasSuffix(strings.ToLower(output), ".tar")
	if tarball {
		dir = output + ".partial"
	}
	layout, err := bundle.Create(e.ctx, dir)
	if err != nil {
		return 0, opErr(err)
	}
	opts := r.options(e)
	opts.Target = func(name string) (oras.Target, error) { return layout.Repository(name), nil }
	stats := mirror.Copy(e.ctx, r.plan, opts)
	// Interrupted or not, record what is in the layout, so a rerun finds it.
	if err := layout.Finish(context.WithoutCancel(e.ctx), r.plan, r.in.profiles); err != nil {
		return 0, opErr(err)
	}
	if tarball && e.ctx.Err() == nil {
		if err := bundle.WriteTar(dir, output); err != nil {
			return 0, opErr(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return 0, opErr(fmt.Errorf("removing %s: %w", filepath.Base(dir), err))
		}
	}
	return r.finish(e, output, &stats)
}

// bundleFlag adds --bundle.
func bundleFlag(fs *pflag.FlagSet, path *string, usage string) {
	fs.StringVar(path, "bundle", "", usage)
}

// checkRun validates the flags of a run before the first request: bad usage
// is exit 2 at once, not a network error after the retries. writes says
// the command writes blobs (chunking and its journal).
func checkRun(rf *runFlags, of *outputFlags, tf *targetFlags, pf *profileFlags, writes bool) error {
	if err := of.check(); err != nil {
		return err
	}
	if tf.passwordStdin && containsStdin(pf.files) {
		return usageErr(errors.New("--password-stdin and -p - both read standard input; give the profile as a file"))
	}
	return rf.check(writes)
}
