package registry

import "fmt"

// Kind says which implementation of the distribution registry serves a
// Registry.
type Kind int

const (
	// V3 is CNCF distribution v3, served in-process (the default).
	V3 Kind = iota
	// V28 is distribution 2.8, the registry Harbor embeds, run as a child
	// process of Debian's docker-registry binary.
	V28
)

// Kinds lists every kind, for test matrices:
//
//	for _, k := range registry.Kinds { t.Run(k.String(), ...) }
//
// It is read-only.
var Kinds = []Kind{V3, V28}

// String returns a short name usable as a subtest name:
// "distribution-v3" or "distribution-2.8".
func (k Kind) String() string {
	switch k {
	case V3:
		return "distribution-v3"
	case V28:
		return "distribution-2.8"
	}
	return fmt.Sprintf("Kind(%d)", int(k))
}
