package registryclient

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

// testEntry is a journal entry of a made-up upload.
func testEntry() journalEntry {
	return journalEntry{
		Repository: "reg.local:5000/edge/app",
		Digest:     digest.FromString("layer"),
		Location:   "http://reg.local:5000/v2/edge/app/blobs/uploads/u1?_state=abc",
		Offset:     4096,
	}
}

func TestJournalRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	j, err := OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	e := testEntry()
	if err := j.save(e); err != nil {
		t.Fatal(err)
	}
	got, ok := j.load(e.Repository, e.Digest)
	if !ok || got.Location != e.Location || got.Offset != e.Offset || got.Updated.IsZero() {
		t.Fatalf("loaded %+v %v", got, ok)
	}
	e.Offset = 8192 // a later chunk replaces the entry
	if err := j.save(e); err != nil {
		t.Fatal(err)
	}
	if got, _ := j.load(e.Repository, e.Digest); got.Offset != 8192 {
		t.Errorf("offset %d after the second save", got.Offset)
	}
	files, _ := os.ReadDir(dir)
	if len(files) != 1 {
		t.Fatalf("%d files in the journal, want 1", len(files))
	}
	for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, files[0].Name()): 0o600} {
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != want {
			t.Errorf("%s: mode %v (%v), want %v", path, fi.Mode().Perm(), err, want)
		}
	}
	j.Remove(e.Repository, e.Digest)
	if _, ok := j.load(e.Repository, e.Digest); ok {
		t.Error("entry still there after remove")
	}
	j.Remove(e.Repository, e.Digest) // removing twice is harmless
}

// misfile saves other in the journal at the place of entry e, as if the
// file held another upload than its name says.
func misfile(j *Journal, e, other journalEntry) error {
	if err := j.save(other); err != nil {
		return err
	}
	return os.Rename(j.path(other.Repository, other.Digest), j.path(e.Repository, e.Digest))
}

func TestJournalIgnoresBadEntries(t *testing.T) {
	e := testEntry()
	otherRepo, otherDigest, noLocation := e, e, e
	otherRepo.Repository = "reg.local:5000/edge/other"
	otherDigest.Digest = digest.FromString("other")
	noLocation.Location = ""
	cases := []struct {
		name  string
		write func(j *Journal) error
	}{
		{"corrupt", func(j *Journal) error {
			return os.WriteFile(j.path(e.Repository, e.Digest), []byte("{not json"), 0o600)
		}},
		{"another repository", func(j *Journal) error { return misfile(j, e, otherRepo) }},
		{"another digest", func(j *Journal) error { return misfile(j, e, otherDigest) }},
		{"no location", func(j *Journal) error { return misfile(j, e, noLocation) }},
		{"absent", func(*Journal) error { return nil }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := testJournal(t)
			if err := c.write(j); err != nil {
				t.Fatal(err)
			}
			if got, ok := j.load(e.Repository, e.Digest); ok {
				t.Errorf("loaded %+v", got)
			}
		})
	}
}

func TestJournalNil(t *testing.T) {
	var j *Journal
	e := testEntry()
	if err := j.save(e); err != nil {
		t.Fatal(err)
	}
	if _, ok := j.load(e.Repository, e.Digest); ok {
		t.Error("a nil journal loaded an entry")
	}
	j.Remove(e.Repository, e.Digest)
}

func TestJournalErrors(t *testing.T) {
	file := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenJournal(filepath.Join(file, "state")); err == nil || !strings.Contains(err.Error(), "state dir") {
		t.Errorf("OpenJournal under a file: %v", err)
	}
	j := testJournal(t)
	e := testEntry()
	// The entry's place is taken by a directory: the rename fails.
	if err := os.Mkdir(j.path(e.Repository, e.Digest), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(j.path(e.Repository, e.Digest), "x"), nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := j.save(e); err == nil || !strings.Contains(err.Error(), "journal") {
		t.Errorf("save over a directory: %v", err)
	}
	if left, _ := filepath.Glob(filepath.Join(j.dir, ".entry-*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestDefaultStateDir(t *testing.T) {
	if d := DefaultStateDir(); !strings.HasSuffix(d, filepath.Join("edgemirror", "uploads")) {
		t.Errorf("DefaultStateDir %s", d)
	}
}
