package mirror

import (
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
	refusal, _ := e.noDocker.LoadOrStore(hostOf(repo), &dockerRefusal{host: hostOf(repo), cause: err})
	return refusal.(*dockerRefusal)
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
