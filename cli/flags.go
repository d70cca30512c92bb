package cli

import (
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/edgemirror/edgemirror/auth"
	"github.com/edgemirror/edgemirror/held"
	"github.com/edgemirror/edgemirror/mirror"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/registryclient"
	"github.com/edgemirror/edgemirror/report"
	"github.com/edgemirror/edgemirror/targets"
	"github.com/edgemirror/edgemirror/transport"
)

// newFlagSet makes a command's flag set; errors are returned, not printed.
func newFlagSet(e *env, name, args string) *pflag.FlagSet {
	fs := pflag.NewFlagSet(name, pflag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.SortFlags = false
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: edgemirror %s %s\n\nFlags:\n%s", name, args, fs.FlagUsages())
	}
	return fs
}

// parse parses args and rejects stray positional arguments.
func parse(fs *pflag.FlagSet, args []string) error {
	fs.SetOutput(io.Discard) // errors are reported once, as one line, by Run
	if err := fs.Parse(args); err != nil {
		if err == pflag.ErrHelp {
			fs.Usage()
			return err
		}
		return usageErr(fmt.Errorf("%w (see 'edgemirror %s --help')", err, fs.Name()))
	}
	if fs.NArg() > 0 {
		return usageErr(fmt.Errorf("unexpected argument %q (see 'edgemirror %s --help')", fs.Arg(0), fs.Name()))
	}
	return nil
}

// profileFlags select and expand the profiles: files, and profiles
// fetched from the Palette API by their IDs.
type profileFlags struct {
	files         []string
	vars          []string
	macros        []string
	includeValues bool
	palette       paletteFlags

	fs *pflag.FlagSet // the command's flags, read by load
}

func (f *profileFlags) add(fs *pflag.FlagSet) {
	f.fs = fs
	fs.StringArrayVarP(&f.files, "profile", "p", nil, "exported cluster profile, JSON or YAML (repeatable; - reads stdin)")
	f.palette.add(fs)
	fs.StringArrayVar(&f.vars, "var", nil, "profile variable NAME=VALUE, overrides its default (repeatable)")
	fs.StringArrayVar(&f.macros, "macro", nil, "macro value NAME=VALUE for {{ .spectro.macro.NAME }} or a system path such as system.cluster.name (repeatable)")
	fs.BoolVar(&f.includeValues, "include-values", false, "also mirror image strings in values that are not content-tagged")
}

// notWith refuses profiles given together with a bundle (bundlePath).
func (f *profileFlags) notWith(bundlePath string) error {
	if bundlePath != "" && (len(f.files) > 0 || len(f.palette.ids) > 0) {
		return usageErr(errors.New("give either --bundle or profiles (-p, --cluster-profile-ids), not both"))
	}
	return nil
}

// load reads the profile files, then fetches the profiles of the IDs (as
// if they were more files, after them), expands them and lists their
// images. Every flag is checked before the first request.
func (f *profileFlags) load(e *env) ([]*profile.Profile, *profile.Result, error) {
	api, err := f.palette.client(e, f.fs)
	if err != nil {
		return nil, nil, err
	}
	if len(f.files) == 0 && api == nil {
		return nil, nil, usageErr(fmt.Errorf("no profile given: use -p FILE (repeatable, - for stdin), or --cluster-profile-ids ID[,ID...] with --palette-endpoint"))
	}
	vars, err := keyValues("--var", f.vars)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	macros, err := keyValues("--macro", f.macros)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	profiles, err := profile.Read(f.files, e.stdin)
	if err != nil {
		return nil, nil, usageErr(err)
	}
	if api != nil {
		fetched, err := f.palette.fetch(e, api)
		if err != nil {
			return nil, nil, err
		}
		profiles = append(profiles, fetched...)
	}
	res, err := profile.Extract(profiles, profile.Options{Vars: vars, Macros: macros, IncludeValues: f.includeValues})
	if err != nil {
		return nil, nil, usageErr(err)
	}
	return profiles, res, nil
}

// targetFlags say where images go and how to reach the target.
type targetFlags struct {
	registry      string
	userData      string
	mappings      []string
	username      string
	passwordStdin bool
	password      string
	plainHTTP     bool
	insecure      bool
	caFile        string
	shortNames    string
}

func (f *targetFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.registry, "registry", "r", "", "external registry HOST[:PORT][/PATH] (default: the user data's stylus.registryCredentials.domain)")
	fs.StringVar(&f.userData, "user-data", "", "edge installer user data (stylus registry settings and registryMappingRules)")
	fs.StringArrayVar(&f.mappings, "mapping", nil, "mapping rule FROM=TO on the canonical name, longest FROM wins (repeatable)")
	fs.StringVarP(&f.username, "username", "u", "", "user name for the target registry")
	fs.BoolVar(&f.passwordStdin, "password-stdin", false, "read the target registry password from stdin")
	fs.StringVar(&f.password, "password", "", "target registry password (visible to other users; prefer --password-stdin)")
	fs.BoolVar(&f.plainHTTP, "plain-http", false, "talk plain HTTP to the target registry")
	fs.BoolVar(&f.insecure, "insecure", false, "skip TLS certificate verification of the target registry")
	fs.StringVar(&f.caFile, "ca-file", "", "PEM file of CA certificates to trust for the target registry")
	fs.StringVar(&f.shortNames, "short-names", string(targets.Canonical), "how short names such as busybox:1.37 are prefixed: canonical, literal or both")
}

// rules computes the target rules from the flags and the user data.
func (f *targetFlags) rules() (targets.Rules, *auth.UserData, error) {
	var ud *auth.UserData
	if f.userData != "" {
		var err error
		if ud, err = auth.ReadUserData(f.userData); err != nil {
			return targets.Rules{}, nil, usageErr(err)
		}
	}
	r := targets.Rules{Registry: f.registry, Mappings: map[string]string{}, ShortNames: targets.ShortNames(f.shortNames)}
	if ud != nil {
		if r.Registry == "" {
			r.Registry = ud.Registry
		}
		for k, v := range ud.Mappings {
			r.Mappings[k] = v
		}
	}
	flagRules, err := keyValues("--mapping", f.mappings)
	if err != nil {
		return r, nil, usageErr(err)
	}
	for k, v := range flagRules {
		r.Mappings[k] = v
	}
	if r.Registry == "" && len(r.Mappings) == 0 {
		return r, nil, usageErr(fmt.Errorf("no target: give --registry HOST[:PORT][/PATH], --mapping FROM=TO, or --user-data with a registry or registryMappingRules"))
	}
	if err := r.Validate(); err != nil {
		return r, nil, usageErr(err)
	}
	return r, ud, nil
}

// outputFlags choose what is printed and written.
type outputFlags struct {
	output       string
	reportFile   string
	reportFormat string
}

func (f *outputFlags) add(fs *pflag.FlagSet) {
	fs.StringVarP(&f.output, "output", "o", "text", "stdout format: text or json")
	fs.StringVar(&f.reportFile, "report", "", "write the report to FILE; format from the extension (.json .csv .md .txt)")
	fs.StringVar(&f.reportFormat, "report-format", "", "report format when the extension does not say: json, csv, md or txt")
}

// check validates the flags before any work is done.
func (f *outputFlags) check() error {
	if f.output != "text" && f.output != "json" {
		return usageErr(fmt.Errorf("--output %q: use text or json", f.output))
	}
	if f.reportFile != "" {
		if _, err := report.FormatFor(f.reportFile, f.reportFormat); err != nil {
			return usageErr(err)
		}
	}
	return nil
}

// keyValues parses NAME=VALUE flag values.
func keyValues(flag string, list []string) (map[string]string, error) {
	out := map[string]string{}
	for _, kv := range list {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || strings.TrimSpace(k) == "" {
			return nil, fmt.Errorf("%s %q: expected NAME=VALUE", flag, kv)
		}
		out[strings.TrimSpace(k)] = v
	}
	return out, nil
}

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

	parsed struct { // by check
		platforms []string
		threshold int64
		chunk     int64
		journal   *registryclient.Journal
		held      *held.Store
	}
}

func (f *runFlags) add(fs *pflag.FlagSet) {
	fs.IntVarP(&f.jobs, "jobs", "j", 8, "concurrent blob transfers in total, across all images")
	fs.StringArrayVar(&f.platforms, "platform", nil, "copy only these platforms of multi-arch images, os/arch[/variant][,...]; tags get a filtered index with a new digest, digest-pinned images keep every platform")
	fs.StringVar(&f.progress, "progress", "auto", "progress on stderr: auto (a bar on a terminal, plain lines otherwise), bar, plain or none")
	fs.BoolVar(&f.debug, "debug", false, "trace every HTTP request on stderr (URLs redacted, no headers)")
	fs.StringVar(&f.stateDir, "state-dir", registryclient.DefaultStateDir(), "where chunked uploads are journaled, so an interrupted run resumes them, and where the blobs placed at each registry are remembered, so a later run mounts them")
	fs.StringVar(&f.threshold, "chunk-threshold", "16MiB", "blobs larger than this are uploaded in resumable chunks")
	fs.StringVar(&f.chunk, "chunk-size", "16MiB", "size of each chunk of a resumable upload")
	fs.BoolVar(&f.referrers, "include-referrers", false, "also copy each image's referrers (signatures, SBOMs, attestations)")
	fs.IntVar(&f.retries, "retries", transport.DefaultStalls, "a blob fails after this many attempts in a row that make no progress; attempts that move bytes go on")
	fs.BoolVar(&f.convert, "convert-docker", false, "for a target that refuses Docker manifests (zot without docker2s2), convert Docker-format images to OCI: same blobs, new digests (digest-pinned images still fail)")
	fs.DurationVar(&f.retryFor, "retry-for", 0, "stop retrying a blob once it has been in transfer this long, e.g. 30m (0: no limit but --retries)")
}

// check validates the run flags and parses them into f.parsed; writes
// says the command writes blobs (chunked uploads and their journal).
func (f *runFlags) check(writes bool) error {
	var err error
	if f.parsed.platforms, err = mirror.ParsePlatforms(f.platforms); err != nil {
		return usageErr(err)
	}
	if _, err := report.ParseProgressMode(f.progress); err != nil {
		return usageErr(err)
	}
	switch {
	case f.jobs < 1:
		return usageErr(fmt.Errorf("--jobs %d: at least 1", f.jobs))
	case f.retries < 1:
		return usageErr(fmt.Errorf("--retries %d: at least 1", f.retries))
	case f.retryFor < 0:
		return usageErr(fmt.Errorf("--retry-for %s: not negative", f.retryFor))
	case !writes:
		return nil
	}
	if f.parsed.threshold, err = parseSize("--chunk-threshold", f.threshold); err != nil {
		return usageErr(err)
	}
	if f.parsed.chunk, err = parseSize("--chunk-size", f.chunk); err != nil {
		return usageErr(err)
	}
	if f.parsed.chunk < 1<<10 {
		return usageErr(fmt.Errorf("--chunk-size %s: at least 1KiB", f.chunk))
	}
	if f.parsed.journal, err = registryclient.OpenJournal(f.stateDir); err != nil {
		return usageErr(err)
	}
	if f.parsed.held, err = held.Open(f.stateDir); err != nil {
		return usageErr(err)
	}
	return nil
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
