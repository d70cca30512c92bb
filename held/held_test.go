package held

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestStoreRemembers(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	if got := s.Load(); len(got) != 0 {
		t.Fatalf("a new store holds %v", got)
	}
	base, app := digest.FromString("base"), digest.FromString("app")
	if err := s.Add(Blobs{base: {"reg/edge/a", "reg/edge/b"}, app: {"reg/edge/a"}}); err != nil {
		t.Fatal(err)
	}
	// A later run's places come first; at most maxRepos are kept.
	if err := s.Add(Blobs{base: {"reg/edge/c", "reg/edge/d", "reg/edge/e"}}); err != nil {
		t.Fatal(err)
	}
	want := Blobs{base: {"reg/edge/c", "reg/edge/d", "reg/edge/e", "reg/edge/a"}, app: {"reg/edge/a"}}
	if got := s.Load(); !reflect.DeepEqual(got, want) {
		t.Errorf("loaded %v, want %v", got, want)
	}
	fi, err := os.Stat(filepath.Join(dir, subdir, fileName))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("file mode %v, %v; want 0600", fi.Mode().Perm(), err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, subdir, fileName+".*")); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestStoreIgnoresWhatItCannotRead(t *testing.T) {
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{"{not json", `{"not-a-digest":["reg/edge/a"]}`} {
		if err := os.WriteFile(filepath.Join(dir, subdir, fileName), []byte(raw), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := s.Load(); len(got) != 0 {
			t.Errorf("%s: loaded %v", raw, got)
		}
	}
	var none *Store
	if none.Load() == nil || none.Add(Blobs{digest.FromString("x"): {"r"}}) != nil {
		t.Error("a nil store is not an empty one")
	}
}
