package tokenserver

import "testing"

// StartT starts a token server for a test or benchmark: it fails tb at
// once when the server cannot start and closes it in tb's cleanup.
func StartT(tb testing.TB, opts Options) *Server {
	tb.Helper()
	s, err := Start(opts)
	if err != nil {
		tb.Fatalf("start token server: %v", err)
	}
	tb.Cleanup(func() {
		if err := s.Close(); err != nil {
			tb.Errorf("close token server %s: %v", s.Addr, err)
		}
	})
	return s
}
