package mirror

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
	// Mirrors read REGISTRY's repositories from LOCATION (--source-mirror
	// quay.io=127.0.0.1:5001/quay.io); the longest segment-aligned key wins.
	Mirrors map[string]string
}

// Repository opens the repository name (host/path), through a mirror when
// one matches.
func (ep Endpoint) Repository(name string) (*Repo, error) {
	if from, ok := longestPrefix(ep.Mirrors, name); ok {
		name = strings.TrimSuffix(ep.Mirrors[from], "/") + strings.TrimPrefix(name, strings.TrimSuffix(from, "/"))
	}
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
