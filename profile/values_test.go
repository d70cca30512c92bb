package profile

import (
	"strings"
	"testing"
)

// TestAliasBombRefused: a few lines of YAML anchors and aliases that
// expand to millions of nodes are refused with one line, at once, instead
// of being walked node by node.
func TestAliasBombRefused(t *testing.T) {
	bomb := "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
	prev := "a"
	for _, n := range []string{"b", "c", "d", "e", "f", "g", "h"} {
		bomb += n + ": &" + n + " [*" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + ", *" + prev + "]\n"
		prev = n
	}
	_, err := parseValues(bomb)
	if err == nil || !strings.Contains(err.Error(), "aliases are expanded") || strings.Contains(err.Error(), "\n") {
		t.Fatalf("got %v", err)
	}
	if _, err := parseDocs(bomb); err == nil {
		t.Fatal("a manifest with the same aliases was accepted")
	}
	if v, err := parseValues("base: &b {image: x}\nother: *b\n"); err != nil || v["other"] == nil {
		t.Errorf("ordinary aliases: %v %v", v, err)
	}
}
