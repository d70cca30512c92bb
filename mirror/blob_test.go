package mirror

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/edgemirror/edgemirror/registryclient"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// TestSlotClosedIsNeverTakenAgain: a wait that ends after its upload is
// over (net/http still reading the body on its own goroutine) does not take
// a transfer slot that nobody would give back.
func TestSlotClosedIsNeverTakenAgain(t *testing.T) {
	e := &engine{slots: make(chan struct{}, 1)}
	s := &slot{e: e}
	if err := s.take(context.Background()); err != nil {
		t.Fatal(err)
	}
	s.give()  // the body goroutine gives it up to wait...
	s.close() // ...and the upload ends meanwhile
	if err := s.take(context.Background()); !errors.Is(err, errSlotClosed) {
		t.Fatalf("take after close: %v, want errSlotClosed", err)
	}
	if n := len(e.slots); n != 0 {
		t.Errorf("%d slot(s) still held after the upload ended", n)
	}
}

// TestJournalEntryOfPlacedBlobRemoved: an upload an earlier run journaled
// is forgotten when the blob turns out to be in place already, so the state
// dir does not keep its entry (and its upload URL) for ever.
func TestJournalEntryOfPlacedBlobRemoved(t *testing.T) {
	h := newHarness()
	pushImage(t, h.src.repo("quay.io/a/one"), "1", nil, "layer")
	layer := pushBlob(t, h.dst.repo("reg.local/edge/quay.io/a/one"), ocispec.MediaTypeImageLayerGzip, []byte("layer"))
	dir := t.TempDir()
	j, err := registryclient.OpenJournal(dir)
	if err != nil {
		t.Fatal(err)
	}
	repo := "reg.local/edge/quay.io/a/one"
	sum := sha256.Sum256([]byte(repo + "@" + layer.Digest.String()))
	entry := filepath.Join(dir, hex.EncodeToString(sum[:16])+".json")
	raw := fmt.Sprintf(`{"repository":%q,"digest":%q,"location":"https://reg.local/v2/edge/quay.io/a/one/blobs/uploads/x?_state=y","offset":1}`, repo, layer.Digest)
	if err := os.WriteFile(entry, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	h.opts.Journal = j
	p := h.plan("quay.io/a/one:1")
	Copy(context.Background(), p, h.opts)
	if got := statuses(p); got != "copied" {
		t.Fatalf("status %s: %s", got, p.Images[0].Reason)
	}
	if _, err := os.Stat(entry); !os.IsNotExist(err) {
		t.Errorf("the journal entry of a blob found in place is still there: %v", err)
	}
}
