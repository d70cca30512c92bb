package registry

import "testing"

// StartT starts a registry for a test or benchmark: it fails tb at once when
// the registry cannot start and closes the registry in tb's cleanup.
func StartT(tb testing.TB, opts Options) *Registry {
	tb.Helper()
	r, err := Start(opts)
	if err != nil {
		tb.Fatalf("start registry: %v", err)
	}
	tb.Cleanup(func() {
		if err := r.Close(); err != nil {
			tb.Errorf("close registry %s: %v", r.Addr, err)
		}
	})
	return r
}
