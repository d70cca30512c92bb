package cli

import (
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/pflag"

	"github.com/edgemirror/edgemirror/palette"
	"github.com/edgemirror/edgemirror/profile"
	"github.com/edgemirror/edgemirror/transport"
)

// apiKeyEnv is where the Palette API key comes from, as for palette-edge.
const apiKeyEnv = "PALETTE_API_KEY"

// paletteFlags fetch profiles from the Palette API by their IDs, with
// palette-edge's flag names; they are part of the profile flags.
type paletteFlags struct {
	endpoint  string
	projectID string
	ids       []string
	apiKey    string
	caFile    string
	insecure  bool
}

// paletteNeedIDs are the flags that mean nothing without --cluster-profile-ids.
var paletteNeedIDs = []string{"palette-endpoint", "project-id", "api-key", "palette-ca-file", "palette-insecure"}

func (f *paletteFlags) add(fs *pflag.FlagSet) {
	fs.StringSliceVar(&f.ids, "cluster-profile-ids", nil, "fetch these cluster profiles from the Palette API, ID[,ID...] (repeatable; the API key comes from $"+apiKeyEnv+")")
	fs.StringVar(&f.endpoint, "palette-endpoint", "", "Palette API host such as api.spectrocloud.com (HTTPS implied), or its URL")
	fs.StringVar(&f.projectID, "project-id", "", "Palette project of the profiles (default: tenant scope)")
	fs.StringVar(&f.apiKey, "api-key", "", "Palette API key (visible to other users; prefer $"+apiKeyEnv+")")
	fs.StringVar(&f.caFile, "palette-ca-file", "", "PEM file of CA certificates to trust for the Palette API")
	fs.BoolVar(&f.insecure, "palette-insecure", false, "skip TLS certificate verification of the Palette API")
}

// client checks the flags of fs (the command's, after parsing) and returns
// the API client, or nil when no profile ID was given; --debug traces its
// requests on stderr. Bad usage is exit 2, before any request.
func (f *paletteFlags) client(e *env, fs *pflag.FlagSet) (*palette.Client, error) {
	if len(f.ids) == 0 {
		for _, name := range paletteNeedIDs {
			if fs.Changed(name) {
				return nil, usageErr(fmt.Errorf("--%s needs --cluster-profile-ids ID[,ID...], the profiles to fetch", name))
			}
		}
		return nil, nil
	}
	for _, id := range f.ids {
		if !palette.ValidID(id) {
			return nil, usageErr(fmt.Errorf("--cluster-profile-ids: %q is not a profile ID (letters, digits, '-' and '_')", id))
		}
	}
	if f.endpoint == "" {
		return nil, usageErr(errors.New("--cluster-profile-ids needs --palette-endpoint HOST, such as api.spectrocloud.com"))
	}
	endpoint, err := palette.ParseEndpoint(f.endpoint)
	if err != nil {
		return nil, usageErr(err)
	}
	key := os.Getenv(apiKeyEnv)
	if f.apiKey != "" {
		fmt.Fprintf(e.stderr, "warning: --api-key is visible to other users of this machine; prefer the %s environment variable\n", apiKeyEnv)
		key = f.apiKey
	}
	key = strings.TrimSpace(key) // a key pasted with its newline is still the key
	if key == "" {
		return nil, usageErr(fmt.Errorf("--cluster-profile-ids needs a Palette API key: set the %s environment variable", apiKeyEnv))
	}
	opts := transport.Options{Insecure: f.insecure, UserAgent: userAgent(), OnRetry: retryNotice(e, "palette ")}
	if f.caFile != "" {
		opts.CAFiles = []string{f.caFile}
	}
	if debugFlag(fs) {
		opts.Debug = e.stderr
	}
	hc, err := transport.New(opts)
	if err != nil {
		return nil, usageErr(err)
	}
	return &palette.Client{HTTP: hc, Endpoint: endpoint, APIKey: key, ProjectID: f.projectID}, nil
}

// fetch fetches the profiles of the IDs; the error is one line with its
// exit code: 2 for an ID the API does not have or an answer that is not a
// profile, 1 for the rest (a rejected key, a project out of reach, the
// network).
func (f *paletteFlags) fetch(e *env, c *palette.Client) ([]*profile.Profile, error) {
	profiles, err := c.Profiles(e.ctx, f.ids)
	switch {
	case err == nil:
		return profiles, nil
	case errors.Is(err, palette.ErrNotFound) && f.projectID == "":
		return nil, usageErr(fmt.Errorf("%w; a project's profile needs --project-id", err))
	case errors.Is(err, palette.ErrNotFound), errors.Is(err, palette.ErrNotProfile):
		return nil, usageErr(err)
	case errors.Is(err, palette.ErrUnauthorized):
		return nil, opErr(fmt.Errorf("%w; check %s", err, apiKeyEnv))
	case transport.Reason(err) == transport.ReasonTLS:
		return nil, opErr(fmt.Errorf("%w (trust its CA with --palette-ca-file)", err))
	}
	return nil, opErr(err)
}

// debugFlag reports whether fs has --debug set: the run flags have it, and
// it traces the API requests too; plan has no run flags.
func debugFlag(fs *pflag.FlagSet) bool {
	on, err := fs.GetBool("debug")
	return err == nil && on
}
