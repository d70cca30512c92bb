package registry_test

import (
	"errors"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/distribution/distribution/v3/configuration"

	"github.com/edgemirror/edgemirror/e2e/imagebuild"
	"github.com/edgemirror/edgemirror/e2e/registry"
)

// processExists reports whether a process with this id exists.
func processExists(pid int) bool {
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	return p.Signal(syscall.Signal(0)) == nil
}

func TestV28NotInstalled(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	r, err := registry.Start(registry.Options{Kind: registry.V28})
	if err == nil {
		r.Close()
		t.Fatal("Start without docker-registry on PATH succeeded")
	}
	const hint = "distribution 2.8 (Debian package docker-registry) is not installed: apt-get install docker-registry, or run .ci/run"
	if !errors.Is(err, registry.ErrV28NotInstalled) || !strings.Contains(err.Error(), hint) || strings.Contains(err.Error(), "\n") {
		t.Fatalf("error %q: want one line with %q", err, hint)
	}
}

// TestConfigure checks that a Configure hook reaches both kinds: the v3
// configuration rendered for 2.8 is read by it.
func TestConfigure(t *testing.T) {
	forKinds(t, func(t *testing.T, kind registry.Kind) {
		r := registry.StartT(t, registry.Options{Kind: kind, Configure: func(cfg *configuration.Configuration) {
			cfg.HTTP.Headers = http.Header{"X-Edgemirror-Test": {"configured"}}
		}})
		resp, _ := do(t, &http.Client{}, http.MethodGet, r.URL()+"/v2/", nil, nil)
		if got := resp.Header.Get("X-Edgemirror-Test"); got != "configured" {
			t.Fatalf("header from Configure: %q", got)
		}
	})
}

// TestV28StartError checks that a child that cannot start is reported in
// one line, with its reason.
func TestV28StartError(t *testing.T) {
	_, err := registry.Start(registry.Options{Kind: registry.V28, Configure: func(cfg *configuration.Configuration) {
		cfg.Log.Level = "bogus"
	}})
	if err == nil || !strings.Contains(err.Error(), "invalid loglevel bogus") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("Start with a bad log level: %v", err)
	}
}

// TestV28CrashedChild kills the child behind the registry's back: the
// registry notices, and Restart brings it back with its content.
func TestV28CrashedChild(t *testing.T) {
	r := registry.StartT(t, registry.Options{Kind: registry.V28})
	ctx := ctxT(t)
	tgt := imagebuild.Target{PlainHTTP: true}
	b, err := imagebuild.PushImage(ctx, tgt, r.Host()+"/crash/a:1", imagebuild.SingleArch(imagebuild.OCI, 7, 100))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(r.PID(), syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for r.Running() {
		if ctx.Err() != nil {
			t.Fatal("registry still running after its child was killed")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := r.Restart(); err != nil {
		t.Fatal(err)
	}
	got, err := imagebuild.ManifestDigests(ctx, tgt, r.Host(), "crash/a:1")
	if err != nil || got["crash/a:1"] != b.Descriptor.Digest {
		t.Fatalf("after restart: %v %v", got, err)
	}
}
