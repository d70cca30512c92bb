package mirror

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/edgemirror/edgemirror/registryclient"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// dockerRefusal is the failure of a Docker-format image at a target that
// refuses Docker manifests (zot unless its config has
// http.compat ["docker2s2"]). Its message is short, names the cause and
// the fix, and is the same for every image it fails.
type dockerRefusal struct {
	host  string
	cause error
}

func (d *dockerRefusal) Error() string {
	return fmt.Sprintf(`%s refuses Docker-format manifests (415 Unsupported Media Type): `+
		`allow them in the registry (zot: "compat": ["docker2s2"] under "http" in its config), or push the image in OCI format`, d.host)
}

func (d *dockerRefusal) Unwrap() error { return d.cause }

func isDocker(mediaType string) bool { return mediaType == dockerManifest || mediaType == dockerList }

// dockerRefused fails a Docker-format image at once when its target already
// refused a Docker manifest, before any of its blobs is sent.
func (e *engine) dockerRefused(target string, root ocispec.Descriptor) error {
	if !isDocker(root.MediaType) {
		return nil
	}
	if refusal, ok := e.noDocker.Load(hostOf(target)); ok {
		return refusal.(*dockerRefusal)
	}
	return nil
}

// noteDockerRefusal turns the refusal of a Docker manifest into a
// dockerRefusal and remembers it for the target's host; other errors pass.
func (e *engine) noteDockerRefusal(repo string, desc ocispec.Descriptor, err error) error {
	if !isDocker(desc.MediaType) || registryclient.StatusOf(err) != http.StatusUnsupportedMediaType {
		return err
	}
	refusal, known := e.noDocker.LoadOrStore(hostOf(repo), &dockerRefusal{host: hostOf(repo), cause: err})
	if !known {
		// The other Docker images under way will be refused too: stop
		// their transfers now rather than send their blobs for nothing.
		e.mu.Lock()
		for cancel := range e.dockerCopies[hostOf(repo)] {
			(*cancel)(refusal.(*dockerRefusal))
		}
		e.mu.Unlock()
	}
	return refusal.(*dockerRefusal)
}

// stopOnDockerRefusal returns a context for the copy of a Docker-format
// image to target that ends, with the refusal as its cause, when the
// target refuses a Docker manifest; stop releases it.
func (e *engine) stopOnDockerRefusal(ctx context.Context, target string) (context.Context, func()) {
	ctx, cancel := context.WithCancelCause(ctx)
	host := hostOf(target)
	e.mu.Lock()
	if e.dockerCopies == nil {
		e.dockerCopies = map[string]map[*context.CancelCauseFunc]bool{}
	}
	if e.dockerCopies[host] == nil {
		e.dockerCopies[host] = map[*context.CancelCauseFunc]bool{}
	}
	e.dockerCopies[host][&cancel] = true
	e.mu.Unlock()
	return ctx, func() {
		e.mu.Lock()
		delete(e.dockerCopies[host], &cancel)
		e.mu.Unlock()
		cancel(nil)
	}
}

// refusedDocker reports whether err is a dockerRefusal, and its message.
func refusedDocker(err error) (string, bool) {
	var d *dockerRefusal
	if errors.As(err, &d) {
		return d.Error(), true
	}
	return "", false
}

func hostOf(name string) string {
	h, _, _ := strings.Cut(name, "/")
	return h
}
