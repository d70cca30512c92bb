package cli

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"
	orasauth "oras.land/oras-go/v2/registry/remote/auth"
	"oras.land/oras-go/v2/registry/remote/errcode"

	"github.com/edgemirror/edgemirror/auth"
	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/transport"
)

// sourceFlags say how to read the source registries.
type sourceFlags struct {
	mirrors   []string
	plainHTTP bool
	insecure  bool
	caFile    string
	credFile  string
}

func (f *sourceFlags) add(fs *pflag.FlagSet) {
	fs.StringArrayVar(&f.mirrors, "source-mirror", nil, "read REGISTRY's images from LOCATION, REGISTRY=LOCATION such as quay.io=127.0.0.1:5001/quay.io (repeatable)")
	fs.BoolVar(&f.plainHTTP, "source-plain-http", false, "talk plain HTTP to the source registries")
	fs.BoolVar(&f.insecure, "source-insecure", false, "skip TLS certificate verification of the source registries")
	fs.StringVar(&f.caFile, "source-ca-file", "", "PEM file of CA certificates to trust for the source registries")
	fs.StringVar(&f.credFile, "cred-file", "", `palette-edge credentials file {"image":[{"endpoint","username","password"}]}`)
}

// runFlags tune a copying run.
type runFlags struct {
	jobs      int
	platforms []string
	progress  string
	debug     bool
	stateDir  string
	threshold string
	chunk     string
	referrers bool
	retries   int
	retryFor  time.Duration
	convert   bool
}

func (f *runFlags) add(fs *pflag.FlagSet) {
	fs.IntVarP(&f.jobs, "jobs", "j", 8, "concurrent blob transfers in total, across all images")
	fs.StringArrayVar(&f.platforms, "platform", nil, "copy only these platforms of multi-arch images, os/arch[/variant][,...]; tags get a filtered index with a new digest, digest-pinned images keep every platform")
	fs.StringVar(&f.progress, "progress", "auto", "progress on stderr: auto (a bar on a terminal, plain lines otherwise), bar, plain or none")
	fs.BoolVar(&f.debug, "debug", false, "trace every HTTP request on stderr (URLs redacted, no headers)")
	fs.StringVar(&f.stateDir, "state-dir", mirror.DefaultStateDir(), "where chunked uploads are journaled, so an interrupted run resumes them")
	fs.StringVar(&f.threshold, "chunk-threshold", "16MiB", "blobs larger than this are uploaded in resumable chunks")
	fs.StringVar(&f.chunk, "chunk-size", "16MiB", "size of each chunk of a resumable upload")
	fs.BoolVar(&f.referrers, "include-referrers", false, "also copy each image's referrers (signatures, SBOMs, attestations)")
	fs.IntVar(&f.retries, "retries", mirror.DefaultStalls, "a blob fails after this many attempts in a row that make no progress; attempts that move bytes go on")
	fs.BoolVar(&f.convert, "convert-docker", false, "for a target that refuses Docker manifests (zot without docker2s2), convert Docker-format images to OCI: same blobs, new digests (digest-pinned images still fail)")
	fs.DurationVar(&f.retryFor, "retry-for", 0, "stop retrying a blob once it has been in transfer this long, e.g. 30m (0: no limit but --retries)")
}

// chunking parses the chunk flags and opens the journal.
func (f *runFlags) chunking() (threshold, size int64, j *mirror.Journal, err error) {
	if threshold, err = parseSize("--chunk-threshold", f.threshold); err != nil {
		return 0, 0, nil, usageErr(err)
	}
	if size, err = parseSize("--chunk-size", f.chunk); err != nil {
		return 0, 0, nil, usageErr(err)
	}
	if size < 1<<10 {
		return 0, 0, nil, usageErr(fmt.Errorf("--chunk-size %s: at least 1KiB", f.chunk))
	}
	if j, err = mirror.OpenJournal(f.stateDir); err != nil {
		return 0, 0, nil, usageErr(err)
	}
	return threshold, size, j, nil
}

// parseSize reads a byte size such as 16MiB, 512KiB, 1GiB, 8M or 4096.
func parseSize(flag, s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}, {"B", 1}}
	num, mult := strings.TrimSpace(s), int64(1)
	for _, u := range units {
		if strings.HasSuffix(num, u.suffix) {
			num, mult = strings.TrimSpace(strings.TrimSuffix(num, u.suffix)), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%s %q: expected a size such as 16MiB, 512KiB or 4096", flag, s)
	}
	return n * mult, nil
}

// session is what a command that talks to registries needs.
type session struct {
	rules    mirror.Rules
	userData *auth.UserData
	source   mirror.Endpoint
	target   mirror.Endpoint
	// charts reaches HTTP(S) Helm repositories (the source TLS settings).
	charts *http.Client
}

// connect builds the HTTP clients and credential store of a run.
func connect(e *env, tf *targetFlags, sf *sourceFlags, rf *runFlags, rules mirror.Rules, ud *auth.UserData) (*session, error) {
	password := tf.password
	if tf.passwordStdin && tf.password != "" {
		return nil, usageErr(errors.New("--password and --password-stdin are exclusive"))
	}
	if tf.password != "" {
		fmt.Fprintln(e.stderr, "warning: --password is visible to other users of this machine; prefer --password-stdin")
	}
	if tf.passwordStdin {
		b, err := io.ReadAll(io.LimitReader(e.stdin, 1<<16))
		if err != nil {
			return nil, usageErr(fmt.Errorf("--password-stdin: %w", err))
		}
		password = strings.TrimRight(string(b), "\r\n")
		if password == "" {
			return nil, usageErr(errors.New("--password-stdin: standard input is empty"))
		}
	}
	if (password != "") != (tf.username != "") {
		return nil, usageErr(errors.New("give both --username and a password (--password-stdin), or neither"))
	}
	store, err := auth.NewStore(auth.Options{
		Registry: rules.Registry, Username: tf.username, Password: password, UserData: ud, CredFile: sf.credFile,
	})
	if err != nil {
		return nil, usageErr(err)
	}
	mirrors, err := keyValues("--source-mirror", sf.mirrors)
	if err != nil {
		return nil, usageErr(err)
	}
	var debug io.Writer
	if rf.debug {
		debug = e.stderr
	}
	onRetry := func(ev transport.RetryEvent) {
		fmt.Fprintf(e.stderr, "retry: %s %s: %s; attempt %d, waiting %s\n", ev.Method, ev.URL, ev.Reason, ev.Attempt+1, ev.Wait.Round(time.Millisecond))
	}
	ua := "edgemirror/" + Version
	targetTLS := transport.Options{Insecure: tf.insecure, UserAgent: ua, Debug: debug, OnRetry: onRetry}
	if tf.caFile != "" {
		targetTLS.CAFiles = []string{tf.caFile}
	}
	if ud != nil {
		// Each user-data registry brings its CAs, and its insecure flag
		// for its own host only.
		for _, r := range ud.Registries {
			for _, c := range r.Certificates {
				targetTLS.CAPEMs = append(targetTLS.CAPEMs, []byte(c))
			}
			if r.Insecure {
				h, _, _ := strings.Cut(r.Domain, "/")
				targetTLS.InsecureHosts = append(targetTLS.InsecureHosts, h)
			}
		}
	}
	sourceTLS := transport.Options{Insecure: sf.insecure, UserAgent: ua, Debug: debug, OnRetry: onRetry}
	if sf.caFile != "" {
		sourceTLS.CAFiles = []string{sf.caFile}
	}
	tc, err := transport.New(targetTLS)
	if err != nil {
		return nil, usageErr(err)
	}
	sc, err := transport.New(sourceTLS)
	if err != nil {
		return nil, usageErr(err)
	}
	newClient := func(c *http.Client) *orasauth.Client {
		return &orasauth.Client{Client: c, Credential: store.Credential, Cache: orasauth.NewCache(), Header: http.Header{"User-Agent": {ua}}}
	}
	return &session{
		rules: rules, userData: ud, charts: sc,
		target: mirror.Endpoint{Client: newClient(tc), PlainHTTP: tf.plainHTTP},
		source: mirror.Endpoint{Client: newClient(sc), PlainHTTP: sf.plainHTTP, Mirrors: mirrors},
	}, nil
}

// targets lists, sorted, what f maps the target of each planned image and
// chart to (its host, or its repository).
func targets(plan *mirror.Plan, f func(name string) string) []string {
	seen := map[string]bool{}
	for _, im := range plan.All() {
		if im.Status == mirror.Planned {
			seen[f(im.TargetName)] = true
		}
	}
	sorted := make([]string, 0, len(seen))
	for k := range seen {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	return sorted
}

// ping checks every target registry host of the plan before copying, so a
// wrong password or an unreachable site is one clear line, not N failures.
func (s *session) ping(e *env, plan *mirror.Plan) error {
	for _, h := range targets(plan, func(name string) string { h, _, _ := strings.Cut(name, "/"); return h }) {
		if err := s.target.Ping(e.ctx, h); err != nil {
			msg := "target registry " + h + ": " + reasonOf(err)
			if transport.Reason(err) == transport.ReasonUnauthorized {
				msg += " (give -u and --password-stdin, --user-data, --cred-file, or docker login)"
			}
			return opErr(errors.New(msg))
		}
	}
	return nil
}

// refusal is a registry's answer in short: the reason, the status and the
// registry's first error, without the request URL (the message names the
// registry and the repository already). Other errors are as reasonOf says.
func refusal(err error) string {
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) {
		return reasonOf(err)
	}
	s := fmt.Sprintf("%d %s", er.StatusCode, http.StatusText(er.StatusCode))
	if len(er.Errors) > 0 {
		s += ": " + er.Errors[0].Code
		if m := er.Errors[0].Message; m != "" {
			s += " " + m
		}
	}
	if r := transport.Reason(err); r != "" {
		s = r + " (" + s + ")"
	}
	return s
}

// statusOf is the HTTP status of a registry's refusal, or 0.
func statusOf(err error) int {
	var er *errcode.ErrorResponse
	if errors.As(err, &er) {
		return er.StatusCode
	}
	return 0
}

// reasonOf is an error for a one-line message: its reason, then its
// redacted text.
func reasonOf(err error) string {
	msg := transport.Redact(err.Error())
	if r := transport.Reason(err); r != "" {
		msg = r + ": " + msg
	}
	return msg
}

// checkPush proves, before any blob moves, that every target repository of
// the plan accepts a push: it opens an upload session in each and cancels
// it. A Harbor project that does not exist, a read-only account or a
// pull-only token scope is then one line and exit 1, with nothing sent.
func (s *session) checkPush(e *env, plan *mirror.Plan, jobs int) error {
	repos := targets(plan, func(name string) string { return name })
	errs := make([]error, len(repos))
	var g errgroup.Group
	g.SetLimit(jobs)
	for i, name := range repos {
		g.Go(func() error {
			repo, err := s.target.Repository(name)
			if err == nil {
				err = repo.CheckPush(e.ctx)
			}
			errs[i] = err
			return nil
		})
	}
	_ = g.Wait()
	failed := 0
	first := -1
	for i, err := range errs {
		if err != nil {
			if first < 0 {
				first = i
			}
			failed++
		}
	}
	if first < 0 {
		return nil
	}
	host, path, _ := strings.Cut(repos[first], "/")
	msg := fmt.Sprintf("target registry %s: cannot push to %s", host, path)
	if failed > 1 {
		msg += fmt.Sprintf(" (nor to %d more of the %d target repositories)", failed-1, len(repos))
	}
	msg += ": " + refusal(errs[first])
	switch transport.Reason(errs[first]) {
	case transport.ReasonUnauthorized, transport.ReasonForbidden, transport.ReasonNotFound:
		project, _, _ := strings.Cut(path, "/")
		msg += fmt.Sprintf("; the account or token may be read-only or pull-only there, or the project %q may not exist (Harbor: create it first)", project)
	case "":
		if statusOf(errs[first]) == http.StatusMethodNotAllowed {
			msg += "; the registry is read-only"
		}
	}
	return opErr(errors.New(msg))
}

func containsStdin(files []string) bool {
	for _, f := range files {
		if f == "-" {
			return true
		}
	}
	return false
}

func userDataWarnings(ud *auth.UserData) []string {
	if ud == nil {
		return nil
	}
	return ud.Warnings
}

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}
