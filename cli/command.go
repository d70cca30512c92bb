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
	"github.com/edgemirror/edgemirror/helmrepo"
	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/report"
)

// registryCmd is a command that moves or checks images: mirror, audit,
// save and push. They share flags, planning, connecting, progress and the
// report; their differences are the fields below.
type registryCmd struct {
	name    string
	target  bool // has a target registry: target flags, pinged first
	sources bool // reads source registries: source flags
	bundle  int  // 0 no --bundle flag, 1 --bundle instead of -p, 2 --bundle only
	copies  bool // writes: chunked uploads and their journal
	save    bool // the target is a bundle (-O), every target the canonical reference

	pf profileFlags
	tf targetFlags
	sf sourceFlags
	rf runFlags
	of outputFlags

	bundlePath string // --bundle
	output     string // -O

	started   time.Time
	platforms []string
	threshold int64
	chunk     int64
	journal   *mirror.Journal
	profiles  []*profile.Profile
	input     *mirror.Bundle
	plan      *mirror.Plan
	session   *session
	progress  *report.Progress
}

const (
	noBundle     = iota
	bundleOrP    // --bundle BUNDLE instead of -p
	bundleNeeded // --bundle only
)

func (c *registryCmd) usage() string {
	switch {
	case c.save:
		return "-p PROFILE... -O BUNDLE [flags]"
	case c.bundle == bundleNeeded:
		return "--bundle BUNDLE -r REGISTRY [flags]"
	}
	return "-p PROFILE... -r REGISTRY [flags]"
}

// prepare parses the flags, plans, connects, pings the targets and starts
// the progress output; extra adds command-specific flags.
func (c *registryCmd) prepare(e *env, args []string, extra func(*pflag.FlagSet)) error {
	fs := newFlagSet(e, c.name, c.usage())
	if c.bundle != bundleNeeded {
		c.pf.add(fs)
	}
	if c.bundle != noBundle {
		fs.StringVar(&c.bundlePath, "bundle", "", "read the images from a bundle written by edgemirror save (a layout directory or a .tar)")
	}
	if c.save {
		fs.StringVarP(&c.output, "output-bundle", "O", "", "the bundle to write: an OCI image layout directory, or a .tar file")
	}
	if c.target {
		c.tf.add(fs)
	}
	if c.sources {
		c.sf.add(fs)
	}
	c.rf.add(fs)
	c.of.add(fs)
	if extra != nil {
		extra(fs)
	}
	if err := parse(fs, args); err != nil {
		return err
	}
	if err := c.check(); err != nil {
		return err
	}
	c.started = time.Now()
	rules := mirror.Rules{Bundle: true}
	var err error
	var ud *auth.UserData
	if c.target {
		if rules, ud, err = c.tf.rules(); err != nil {
			return err
		}
	}
	res, err := c.load(e)
	if err != nil {
		return err
	}
	if c.session, err = connect(e, &c.tf, &c.sf, &c.rf, rules, ud); err != nil {
		return err
	}
	c.plan = mirror.Build(res, rules)
	c.plan.Warnings = append(c.plan.Warnings, userDataWarnings(ud)...)
	if c.target {
		if err := c.session.ping(e, c.plan); err != nil {
			return err
		}
	}
	if c.target && c.copies {
		if err := c.session.checkPush(e, c.plan, c.rf.jobs); err != nil {
			return err
		}
	}
	planned := 0
	for _, im := range c.plan.All() {
		if im.Status == mirror.Planned {
			planned++
		}
	}
	c.progress, err = report.NewProgress(e.stderr, report.ProgressMode(c.rf.progress), e.tty, planned, 0)
	if err != nil {
		return usageErr(err)
	}
	return nil
}

// check validates every flag before the first request: bad usage is exit 2
// at once, not a network error after the retries.
func (c *registryCmd) check() error {
	if err := c.of.check(); err != nil {
		return err
	}
	switch {
	case c.bundle == bundleNeeded && c.bundlePath == "":
		return usageErr(errors.New("give the bundle to push with --bundle BUNDLE"))
	case c.bundlePath != "" && len(c.pf.files) > 0:
		return usageErr(errors.New("give either --bundle or -p, not both"))
	case c.save && c.output == "":
		return usageErr(errors.New("give the bundle to write with -O BUNDLE (a directory, or a file ending in .tar)"))
	}
	if c.tf.passwordStdin && containsStdin(c.pf.files) {
		return usageErr(errors.New("--password-stdin and -p - both read standard input; give the profile as a file"))
	}
	var err error
	if c.platforms, err = mirror.ParsePlatforms(c.rf.platforms); err != nil {
		return usageErr(err)
	}
	if _, err := report.ParseProgressMode(c.rf.progress); err != nil {
		return usageErr(err)
	}
	if c.rf.jobs < 1 {
		return usageErr(fmt.Errorf("--jobs %d: at least 1", c.rf.jobs))
	}
	if c.rf.retries < 1 {
		return usageErr(fmt.Errorf("--retries %d: at least 1", c.rf.retries))
	}
	if c.rf.retryFor < 0 {
		return usageErr(fmt.Errorf("--retry-for %s: not negative", c.rf.retryFor))
	}
	if c.copies {
		if c.threshold, c.chunk, c.journal, err = c.rf.chunking(); err != nil {
			return err
		}
	}
	return nil
}

// load reads the profiles, or the bundle.
func (c *registryCmd) load(e *env) (*profile.Result, error) {
	if c.bundlePath == "" {
		profiles, res, err := c.pf.load(e)
		c.profiles = profiles
		return res, err
	}
	b, err := mirror.OpenBundle(e.ctx, c.bundlePath)
	if err != nil {
		return nil, usageErr(err)
	}
	c.input = b
	return b.Result, nil
}

// options are the engine options of the run; its context bounds the chart reads.
func (c *registryCmd) options(e *env) mirror.Options {
	o := mirror.Options{
		Jobs:      c.rf.jobs,
		Platforms: c.platforms,
		Source:    func(name string) (oras.ReadOnlyTarget, error) { return c.session.source.Repository(name) },
		Target:    func(name string) (oras.Target, error) { return c.session.target.Repository(name) },
		Hooks:     c.progress.Hooks(),

		ChunkThreshold: c.threshold,
		ChunkSize:      c.chunk,
		Journal:        c.journal,

		IncludeReferrers: c.rf.referrers,
		Retry:            mirror.Retry{Stalls: c.rf.retries, For: c.rf.retryFor},
		ConvertDocker:    c.rf.convert,
		Stop:             e.stop,
	}
	if c.input != nil {
		o.Source = func(name string) (oras.ReadOnlyTarget, error) { return c.input.Repository(name), nil }
	} else {
		o.Charts = func(im *mirror.Image) (oras.ReadOnlyTarget, error) {
			return helmrepo.Chart(e.ctx, c.session.charts, im.Chart.Repo, im.Chart.Name, im.Chart.Version, im.Tag)
		}
	}
	return o
}

// report stops the progress and writes the result; stats may be nil.
func (c *registryCmd) report(e *env, stats *mirror.Stats) (int, error) {
	c.progress.Stop()
	where := c.session.rules.Registry
	if c.save {
		where = c.output
	}
	rep := report.New(c.name, Version, where, c.plan, c.started)
	if stats != nil {
		rep.Summary.BytesUploaded, rep.Summary.BytesMounted = stats.BytesUploaded, stats.BytesMounted
		rep.Summary.BlobsUploaded, rep.Summary.BlobsMounted, rep.Summary.BlobsSkipped = stats.BlobsUploaded, stats.BlobsMounted, stats.BlobsSkipped
		rep.Summary.BlobsRestarted, rep.Summary.BytesResent = stats.BlobsRestarted, stats.BytesResent
		if stats.DockerRefused > 0 {
			fmt.Fprintf(e.stderr, "edgemirror %s: %d Docker-format image(s) not copied: %s\n", c.name, stats.DockerRefused, stats.DockerRefusal)
		}
	}
	code, err := finish(e, rep, c.of)
	if err == nil && (e.ctx.Err() != nil || e.stopping()) {
		fmt.Fprintf(e.stderr, "edgemirror %s: interrupted; run the same command again to continue\n", c.name)
		return ExitOperation, nil
	}
	return code, err
}

func runMirror(e *env, args []string) (int, error) {
	return runCopy(e, args, &registryCmd{name: "mirror", target: true, sources: true, copies: true})
}

func runPush(e *env, args []string) (int, error) {
	return runCopy(e, args, &registryCmd{name: "push", target: true, bundle: bundleNeeded, copies: true})
}

// runCopy copies the plan's images to their targets: mirror and push.
func runCopy(e *env, args []string, c *registryCmd) (int, error) {
	if err := c.prepare(e, args, nil); err != nil {
		return 0, err
	}
	stats := mirror.Copy(e.ctx, c.plan, c.options(e))
	return c.report(e, &stats)
}

func runAudit(e *env, args []string) (int, error) {
	c := &registryCmd{name: "audit", target: true, sources: true, bundle: bundleOrP}
	var verify bool
	if err := c.prepare(e, args, func(fs *pflag.FlagSet) {
		fs.BoolVar(&verify, "verify-source", false, "also resolve each source (or the bundle) and report a target that points at another digest as mismatch")
	}); err != nil {
		return 0, err
	}
	mirror.Audit(e.ctx, c.plan, c.options(e), verify)
	return c.report(e, nil)
}

func runSave(e *env, args []string) (int, error) {
	c := &registryCmd{name: "save", sources: true, copies: true, save: true}
	if err := c.prepare(e, args, nil); err != nil {
		return 0, err
	}
	defer c.progress.Stop() // on the error paths; report stops it first otherwise
	// A .tar is written from a layout directory beside it, kept until the
	// tar is complete so that a rerun resumes.
	dir := c.output
	tarball := strings.HasSuffix(strings.ToLower(c.output), ".tar")
	if tarball {
		dir = c.output + ".partial"
	}
	layout, err := mirror.CreateLayout(e.ctx, dir)
	if err != nil {
		return 0, opErr(err)
	}
	opts := c.options(e)
	opts.Target = func(name string) (oras.Target, error) { return layout.Repository(name), nil }
	stats := mirror.Copy(e.ctx, c.plan, opts)
	// Interrupted or not, record what is in the layout, so a rerun finds it.
	if err := layout.Finish(context.WithoutCancel(e.ctx), c.plan, c.profiles); err != nil {
		return 0, opErr(err)
	}
	if tarball && e.ctx.Err() == nil {
		if err := mirror.WriteTar(dir, c.output); err != nil {
			return 0, opErr(err)
		}
		if err := os.RemoveAll(dir); err != nil {
			return 0, opErr(fmt.Errorf("removing %s: %w", filepath.Base(dir), err))
		}
	}
	return c.report(e, &stats)
}
