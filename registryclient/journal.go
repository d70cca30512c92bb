package registryclient

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/opencontainers/go-digest"
)

// Journal records the chunked uploads in progress in a directory (the
// --state-dir), so that a run that died resumes each blob from the offset
// the registry holds. An entry holds the repository, the digest, the last
// acknowledged offset and the session's upload URL with its state token:
// distribution 2.8 and Harbor find a session only with that token, which
// the registry signs (repository, session id and offset; not a credential).
// Entries are files of mode 0600 in a directory of mode 0700, and never hold
// a credential. A nil Journal records nothing.
type Journal struct {
	dir string
}

// journalEntry is one upload in progress.
type journalEntry struct {
	Repository string        `json:"repository"`
	Digest     digest.Digest `json:"digest"`
	Location   string        `json:"location"`
	Offset     int64         `json:"offset"`
	Updated    time.Time     `json:"updated"`
}

// OpenJournal opens (creating it) the journal directory dir.
func OpenJournal(dir string) (*Journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state dir %s: %w", dir, err)
	}
	return &Journal{dir: dir}, nil
}

// DefaultStateDir is where uploads are journaled unless --state-dir says
// otherwise: edgemirror/uploads under the user cache directory.
func DefaultStateDir() string {
	base, err := os.UserCacheDir()
	if err != nil {
		base = os.TempDir()
	}
	return filepath.Join(base, "edgemirror", "uploads")
}

func (j *Journal) path(repo string, d digest.Digest) string {
	sum := sha256.Sum256([]byte(repo + "@" + d.String()))
	return filepath.Join(j.dir, hex.EncodeToString(sum[:16])+".json")
}

// load returns the journaled upload of d into repo, if any.
func (j *Journal) load(repo string, d digest.Digest) (journalEntry, bool) {
	if j == nil {
		return journalEntry{}, false
	}
	raw, err := os.ReadFile(j.path(repo, d))
	if err != nil {
		return journalEntry{}, false
	}
	var e journalEntry
	if json.Unmarshal(raw, &e) != nil || e.Repository != repo || e.Digest != d || e.Location == "" {
		return journalEntry{}, false
	}
	return e, true
}

// save records an upload's location and offset; it writes a temporary file
// and renames it, so a killed process leaves the old entry or the new one.
func (j *Journal) save(e journalEntry) error {
	if j == nil {
		return nil
	}
	e.Updated = time.Now().UTC()
	raw, err := json.Marshal(e)
	if err != nil {
		return err
	}
	p := j.path(e.Repository, e.Digest)
	tmp, err := os.CreateTemp(j.dir, ".entry-*")
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if _, err := tmp.Write(raw); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: %w", err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: %w", err)
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// Remove forgets the upload of d into repo (host/path): finished, abandoned,
// or no longer needed.
func (j *Journal) Remove(repo string, d digest.Digest) {
	if j == nil {
		return
	}
	// A stale entry that cannot be removed is harmless: the next run finds
	// the session gone or complete and starts over.
	_ = os.Remove(j.path(repo, d))
}
