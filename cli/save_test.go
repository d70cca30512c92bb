package cli

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestSaveStoppedWritesNoTar: a save stopped by an interrupt keeps its
// layout directory for the rerun and writes no tar of half a bundle.
func TestSaveStoppedWritesNoTar(t *testing.T) {
	out := filepath.Join(t.TempDir(), "edge.tar")
	stop := make(chan struct{})
	close(stop) // interrupted before the first image
	var stdout, stderr bytes.Buffer
	code := runWith(context.Background(), stop, []string{"save", "-p", filepath.Join(fixtures, "profiles", "edge-infra.json"),
		"-O", out, "--progress", "none", "--state-dir", t.TempDir()}, strings.NewReader(""), &stdout, newStderr(&stderr))
	if code != ExitOperation || !strings.Contains(stderr.String(), "interrupted") {
		t.Fatalf("exit %d, want %d saying it was interrupted\n%s", code, ExitOperation, stderr.String())
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Errorf("a tar was written for a stopped save: %v", err)
	}
	if _, err := os.Stat(out + ".partial"); err != nil {
		t.Errorf("the layout directory for the rerun is gone: %v", err)
	}
}
