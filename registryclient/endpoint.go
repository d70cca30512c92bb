package registryclient

import (
	"context"
	"fmt"
	"strings"

	"oras.land/oras-go/v2/registry/remote"
)

// Endpoint reaches the repositories of registries over HTTP.
type Endpoint struct {
	// Client sends the requests, usually an oras-go auth.Client over a
	// transport.New client.
	Client remote.Client
	// PlainHTTP talks HTTP instead of HTTPS.
	PlainHTTP bool
}

// Repository opens the repository name (host/path).
func (ep Endpoint) Repository(name string) (*Repo, error) {
	repo, err := remote.NewRepository(name)
	if err != nil {
		return nil, fmt.Errorf("repository %s: %w", name, err)
	}
	repo.Client = ep.Client
	repo.PlainHTTP = ep.PlainHTTP
	return &Repo{Repository: repo}, nil
}

// Ping checks that the registry of host/path answers and accepts the
// credentials, before any copying starts.
func (ep Endpoint) Ping(ctx context.Context, registry string) error {
	host, _, _ := strings.Cut(registry, "/")
	reg, err := remote.NewRegistry(host)
	if err != nil {
		return fmt.Errorf("registry %s: %w", host, err)
	}
	reg.Client = ep.Client
	reg.PlainHTTP = ep.PlainHTTP
	return reg.Ping(ctx)
}
