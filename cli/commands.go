package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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

// groups are the flag groups of a command that moves or checks images; a
// command adds the groups it takes, and the others keep their zero values.
type groups struct {
	pf profileFlags
	tf targetFlags
	sf sourceFlags
	rf runFlags
	of outputFlags
}

// job is what the commands that move or check images share once their
// flags are read: the plan, the clients and the progress.
type job struct {
	name     string
	started  time.Time
	in       input
	plan     *targets.Plan
	clients  *clients
	g        *groups
	progress *report.Progress
}

// start reads the input (the profiles, or the bundle at bundlePath), plans
// it under rules, connects, checks the targets (push rights too when the
// command writes to them) and starts the progress.
func start(e *env, name string, g *groups, bundlePath string, rules targets.Rules, ud *auth.UserData, pushes bool) (*job, error) {
	r := &job{name: name, started: time.Now(), g: g}
	var err error
	if r.in, err = loadInput(e, &g.pf, bundlePath); err != nil {
		return nil, err
	}
	if r.clients, err = connect(e, &g.tf, &g.sf, g.rf.debug, rules, ud); err != nil {
		return nil, err
	}
	r.plan = targets.Build(r.in.result, rules)
	r.plan.Warnings = append(r.plan.Warnings, userDataWarnings(ud)...)
	if !rules.Bundle {
		if err := r.clients.ping(e, r.plan); err != nil {
			return nil, err
		}
		if pushes {
			if err := r.clients.checkPush(e, r.plan, g.rf.jobs); err != nil {
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
	if r.progress, err = report.NewProgress(e.errw.w, report.ProgressMode(g.rf.progress), e.tty, n, 0); err != nil {
		return nil, usageErr(err)
	}
	if e.width != nil {
		r.progress.SetWidth(e.width)
	}
	// The progress writes to stderr itself; retry notices and --debug
	// traces go through it, above the frame on a terminal, not into it.
	e.errw.route(r.progress.Log())
	return r, nil
}

// options are the engine options of the job.
func (r *job) options(e *env) mirror.Options {
	rf := &r.g.rf
	o := mirror.Options{
		Jobs:             rf.jobs,
		Platforms:        rf.parsed.platforms,
		Source:           r.clients.sourceRepository,
		Target:           func(name string) (oras.Target, error) { return r.clients.target.Repository(name) },
		Hooks:            r.progress.Hooks(),
		ChunkThreshold:   rf.parsed.threshold,
		ChunkSize:        rf.parsed.chunk,
		Journal:          rf.parsed.journal,
		Remembered:       rf.parsed.held.Load(),
		IncludeReferrers: rf.referrers,
		Retry:            transport.Retry{Stalls: rf.retries, For: rf.retryFor},
		ConvertDocker:    rf.convert,
		Stop:             e.stop,
	}
	if r.in.bundle != nil {
		o.Source = func(name string) (oras.ReadOnlyTarget, error) { return r.in.bundle.Repository(name), nil }
	} else {
		o.Charts = func(im *targets.Image) (oras.ReadOnlyTarget, error) {
			c, err := r.clients.charts.Chart(e.ctx, im.Chart.Repo, im.Chart.Name, im.Chart.Version, im.Tag)
			if err != nil {
				return nil, err // not a nil *OCIChart in an interface
			}
			return c, nil
		}
	}
	return o
}

// interrupted reports whether the run was stopped or aborted.
func interrupted(e *env) bool { return e.ctx.Err() != nil || e.stopping() }

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
	code, err := finish(e, rep, r.g.of)
	if err == nil && interrupted(e) {
		fmt.Fprintf(e.stderr, "edgemirror %s: interrupted; run the same command again to continue\n", r.name)
		return ExitOperation, nil
	}
	return code, err
}

func runMirror(e *env, args []string) (int, error) {
	var g groups
	fs := newFlagSet(e, "mirror", "-p PROFILE... -r REGISTRY [flags]")
	g.pf.add(fs)
	g.tf.add(fs)
	g.sf.add(fs)
	g.rf.add(fs)
	g.of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	return copyTo(e, "mirror", &g, "")
}

func runPush(e *env, args []string) (int, error) {
	var g groups
	var bundlePath string
	fs := newFlagSet(e, "push", "--bundle BUNDLE -r REGISTRY [flags]")
	fs.StringVar(&bundlePath, "bundle", "", "push the images of a bundle written by edgemirror save (a layout directory or a .tar)")
	g.tf.add(fs)
	g.rf.add(fs)
	g.of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if bundlePath == "" {
		return 0, usageErr(errors.New("give the bundle to push with --bundle BUNDLE"))
	}
	return copyTo(e, "push", &g, bundlePath)
}

// copyTo copies the images of the profiles or the bundle to their targets:
// mirror and push.
func copyTo(e *env, name string, g *groups, bundlePath string) (int, error) {
	if err := checkRun(g, true); err != nil {
		return 0, err
	}
	rules, ud, err := g.tf.rules()
	if err != nil {
		return 0, err
	}
	r, err := start(e, name, g, bundlePath, rules, ud, true)
	if err != nil {
		return 0, err
	}
	stats := mirror.Copy(e.ctx, r.plan, r.options(e))
	if err := g.rf.parsed.held.Add(stats.Held); err != nil {
		// Only later runs' mounts depend on it.
		r.plan.Warnings = append(r.plan.Warnings, err.Error())
	}
	return r.finish(e, rules.Registry, &stats)
}

func runAudit(e *env, args []string) (int, error) {
	var g groups
	var bundlePath string
	var verify bool
	fs := newFlagSet(e, "audit", "-p PROFILE... -r REGISTRY [flags]")
	g.pf.add(fs)
	fs.StringVar(&bundlePath, "bundle", "", "audit the images of a bundle written by edgemirror save instead of profiles")
	g.tf.add(fs)
	g.sf.add(fs)
	g.rf.add(fs)
	g.of.add(fs)
	fs.BoolVar(&verify, "verify-source", false, "also resolve each source (or the bundle) and report a target that points at another digest as mismatch")
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if err := g.pf.notWith(bundlePath); err != nil {
		return 0, err
	}
	if err := checkRun(&g, false); err != nil {
		return 0, err
	}
	rules, ud, err := g.tf.rules()
	if err != nil {
		return 0, err
	}
	r, err := start(e, "audit", &g, bundlePath, rules, ud, false)
	if err != nil {
		return 0, err
	}
	mirror.Audit(e.ctx, r.plan, r.options(e), verify)
	return r.finish(e, rules.Registry, nil)
}

func runSave(e *env, args []string) (int, error) {
	var g groups
	var output string
	fs := newFlagSet(e, "save", "-p PROFILE... -O BUNDLE [flags]")
	g.pf.add(fs)
	fs.StringVarP(&output, "output-bundle", "O", "", "the bundle to write: an OCI image layout directory, or a .tar file")
	g.sf.add(fs)
	g.rf.add(fs)
	g.of.add(fs)
	if err := parse(fs, args); err != nil {
		return 0, err
	}
	if output == "" {
		return 0, usageErr(errors.New("give the bundle to write with -O BUNDLE (a directory, or a file ending in .tar)"))
	}
	if err := checkRun(&g, true); err != nil {
		return 0, err
	}
	r, err := start(e, "save", &g, "", targets.Rules{Bundle: true}, nil, false)
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
	// A stopped run keeps its directory for the rerun: no tar of half a
	// bundle.
	if tarball && !interrupted(e) {
		if err := bundle.WriteTar(dir, output); err != nil {
			return 0, opErr(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return 0, opErr(fmt.Errorf("removing %s: %w", filepath.Base(dir), err))
		}
	}
	return r.finish(e, output, &stats)
}

// checkRun validates the flags of a run before the first request: bad usage
// is exit 2 at once, not a network error after the retries. writes says
// the command writes blobs (chunking and its journal).
func checkRun(g *groups, writes bool) error {
	if err := g.of.check(); err != nil {
		return err
	}
	if g.tf.passwordStdin && containsStdin(g.pf.files) {
		return usageErr(errors.New("--password-stdin and -p - both read standard input; give the profile as a file"))
	}
	return g.rf.check(writes)
}
