// Package held remembers, in the state directory, which repositories of
// each target registry hold which blobs, as earlier runs found or put them
// there. A later run mounts from those repositories instead of sending the
// blobs again: an edge site upgraded to the next profile version holds most
// base layers already, often in the repositories of images the new profile
// no longer names. What it remembers may be stale (a registry's garbage
// collection, a deleted repository): it names mount sources to try, never
// proof that a blob is in place.
package held

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"

	"github.com/opencontainers/go-digest"
)

// The file in the state directory: in a directory of its own, apart from
// the upload journal's entries.
const (
	subdir   = "held"
	fileName = "blobs.json"
)

// maxRepos bounds the repositories kept per blob, the most recent first:
// one that holds it is enough to mount from.
const maxRepos = 4

// Blobs maps a blob to the full names (host included) of the repositories
// that hold it.
type Blobs map[digest.Digest][]string

// Store is the file of what earlier runs found; nil remembers nothing.
type Store struct {
	path string
}

// Open opens the store in the state directory (creating what is missing).
func Open(stateDir string) (*Store, error) {
	dir := filepath.Join(stateDir, subdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", stateDir, err)
	}
	return &Store{path: filepath.Join(dir, fileName)}, nil
}

// Load returns what earlier runs found. A missing or unreadable file is an
// empty memory: it only costs mounts.
func (s *Store) Load() Blobs {
	b := Blobs{}
	if s == nil {
		return b
	}
	raw, err := os.ReadFile(s.path)
	if err != nil || json.Unmarshal(raw, &b) != nil {
		return Blobs{}
	}
	for d := range b {
		if d.Validate() != nil {
			delete(b, d)
		}
	}
	return b
}

// Add records what a run found, ahead of what the file holds, and writes
// the file atomically (another run writing at the same time loses nothing
// of its own file but what this one replaces).
func (s *Store) Add(found Blobs) error {
	if s == nil || len(found) == 0 {
		return nil
	}
	all := s.Load()
	for d, repos := range found {
		merged := slices.Clone(repos)
		for _, r := range all[d] {
			if !slices.Contains(merged, r) {
				merged = append(merged, r)
			}
		}
		all[d] = merged[:min(len(merged), maxRepos)]
	}
	raw, err := json.Marshal(all)
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(s.path), fileName+".*")
	if err != nil {
		return fmt.Errorf("remembering held blobs: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, nothing is there
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		return fmt.Errorf("remembering held blobs: %w", err)
	}
	if err := tmp.Sync(); err != nil { // a crash leaves the old file, not an empty one
		tmp.Close()
		return fmt.Errorf("remembering held blobs: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("remembering held blobs: %w", err)
	}
	if err := os.Rename(tmp.Name(), s.path); err != nil {
		return fmt.Errorf("remembering held blobs: %w", err)
	}
	return nil
}
