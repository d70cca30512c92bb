package registryclient

import (
	"context"
	"errors"
	"fmt"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"oras.land/oras-go/v2"
	"oras.land/oras-go/v2/content"
	"oras.land/oras-go/v2/errdef"
)

// MaxManifestBytes bounds a manifest read into memory (oras-go's default).
const MaxManifestBytes = 4 << 20

// FetchManifest reads a manifest of src whole (at most MaxManifestBytes)
// and checks its digest.
func FetchManifest(ctx context.Context, src oras.ReadOnlyTarget, desc ocispec.Descriptor) ([]byte, error) {
	if desc.Size > MaxManifestBytes {
		return nil, fmt.Errorf("manifest %s is %d bytes, over the %d-byte limit", desc.Digest, desc.Size, MaxManifestBytes)
	}
	rc, err := src.Fetch(ctx, desc)
	if err != nil {
		if errors.Is(err, errdef.ErrNotFound) {
			return nil, fmt.Errorf("manifest %s is referenced but missing at the source: %w", desc.Digest, err)
		}
		return nil, fmt.Errorf("fetching manifest %s: %w", desc.Digest, err)
	}
	defer rc.Close()
	raw, err := content.ReadAll(rc, desc)
	if err != nil {
		return nil, fmt.Errorf("reading manifest %s: %w", desc.Digest, err)
	}
	return raw, nil
}
