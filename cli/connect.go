package cli

import (
	orasauth "oras.land/oras-go/v2/registry/remote/auth"

	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/edgemirror/edgemirror/auth"
	"github.com/edgemirror/edgemirror/helmrepo"
	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/targets"
	"github.com/edgemirror/edgemirror/transport"
	"golang.org/x/sync/errgroup"
	"golang.org/x/term"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/registry/remote/errcode"
)

// clients reach the registries of a run: the target, the sources (through
// the --source-mirror rules) and HTTP(S) Helm repositories.
type clients struct {
	target  registryclient.Endpoint
	source  registryclient.Endpoint
	mirrors map[string]string // --source-mirror REGISTRY=LOCATION
	charts  *helmrepo.Repos   // with the source TLS settings
}

// sourceRepository opens the source repository of name, through a
// --source-mirror rule when one matches.
func (c *clients) sourceRepository(name string) (oras.ReadOnlyTarget, error) {
	return c.source.Repository(targets.Relocate(c.mirrors, name))
}

// connect builds the HTTP clients and credential store of a run.
func connect(e *env, tf *targetFlags, sf *sourceFlags, debugFlag bool, rules targets.Rules, ud *auth.UserData) (*clients, error) {
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
	if debugFlag {
		debug = e.stderr
	}
	onRetry := retryNotice(e, "")
	ua := userAgent()
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
	return &clients{
		target:  registryclient.Endpoint{Client: newClient(tc), PlainHTTP: tf.plainHTTP},
		source:  registryclient.Endpoint{Client: newClient(sc), PlainHTTP: sf.plainHTTP},
		mirrors: mirrors,
		charts:  helmrepo.NewRepos(sc),
	}, nil
}

// planned lists, sorted, what f maps the target of each planned image and
// chart to (its host, or its repository).
func planned(plan *targets.Plan, f func(name string) string) []string {
	seen := map[string]bool{}
	for _, im := range plan.All() {
		if im.Status == targets.Planned {
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
func (c *clients) ping(e *env, plan *targets.Plan) error {
	for _, h := range planned(plan, func(name string) string { h, _, _ := strings.Cut(name, "/"); return h }) {
		if err := c.target.Ping(e.ctx, h); err != nil {
			msg := "target registry " + h + ": " + transport.Describe(err)
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
// registry and the repository already). Other errors are as transport.Describe says.
func refusal(err error) string {
	var er *errcode.ErrorResponse
	if !errors.As(err, &er) {
		return transport.Describe(err)
	}
	s := fmt.Sprintf("%d %s", er.StatusCode, http.StatusText(er.StatusCode))
	if len(er.Errors) > 0 {
		s += ": " + er.Errors[0].Code
		if m := er.Errors[0].Message; m != "" {
			s += " " + transport.Redact(m)
		}
	}
	if r := transport.Reason(err); r != "" {
		s = r + " (" + s + ")"
	}
	return s
}

// checkPush proves, before any blob moves, that every target repository of
// the plan accepts a push: it opens an upload session in each and cancels
// it. A Harbor project that does not exist, a read-only account or a
// pull-only token scope is then one line and exit 1, with nothing sent.
func (c *clients) checkPush(e *env, plan *targets.Plan, jobs int) error {
	repos := planned(plan, func(name string) string { return name })
	errs := make([]error, len(repos))
	var g errgroup.Group
	g.SetLimit(jobs)
	for i, name := range repos {
		g.Go(func() error {
			repo, err := c.target.Repository(name)
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
		if registryclient.StatusOf(errs[first]) == http.StatusMethodNotAllowed {
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

// retryNotice says on stderr, in one line, that a request is retried; what
// names the service when it is not a registry ("palette ").
func retryNotice(e *env, what string) func(transport.RetryEvent) {
	return func(ev transport.RetryEvent) {
		fmt.Fprintf(e.stderr, "retry: %s%s %s: %s; attempt %d, waiting %s\n", what, ev.Method, ev.URL, ev.Reason, ev.Attempt+1, ev.Wait.Round(time.Millisecond))
	}
}

// userAgent is the User-Agent of every request.
func userAgent() string { return "edgemirror/" + Version }

// isTerminal reports whether w is a terminal.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	return ok && term.IsTerminal(int(f.Fd()))
}

// terminalWidth returns how to ask the width of the terminal w, or nil
// when w is not one; 0 when the terminal does not say.
func terminalWidth(w io.Writer) func() int {
	f, ok := w.(*os.File)
	if !ok || !isTerminal(w) {
		return nil
	}
	return func() int {
		cols, _, err := term.GetSize(int(f.Fd()))
		if err != nil {
			return 0
		}
		return cols
	}
}
