package profile

import (
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// tokenRE matches the stand-ins parseValues puts where macros were.
var tokenRE = regexp.MustCompile(`__EMMACRO(\d+)__`)

// parseValues parses a pack's values.yaml. Macros are often unquoted
// (`ns: {{ .spectro.var.ns }}`), which YAML reads as a flow mapping, so each
// {{ ... }} is swapped for a plain token before parsing and put back after.
func parseValues(values string) (map[string]any, error) {
	if strings.TrimSpace(values) == "" {
		return map[string]any{}, nil
	}
	protected, saved := protect(values)
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(protected), &doc); err != nil {
		return nil, fmt.Errorf("values: invalid YAML: %s", yamlErr(err))
	}
	if err := checkExpansion(&doc); err != nil {
		return nil, fmt.Errorf("values: %w", err)
	}
	var tree any
	if err := doc.Decode(&tree); err != nil {
		return nil, fmt.Errorf("values: invalid YAML: %s", yamlErr(err))
	}
	if tree == nil {
		return map[string]any{}, nil
	}
	m, ok := restore(tree, saved).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("values: expected a YAML mapping at the top level")
	}
	return m, nil
}

// parseDocs parses multi-document YAML (a manifest) the same way.
func parseDocs(content string) ([]any, error) {
	protected, saved := protect(content)
	dec := yaml.NewDecoder(strings.NewReader(protected))
	var docs []any
	for {
		var node yaml.Node
		err := dec.Decode(&node)
		if err == nil {
			err = checkExpansion(&node)
		}
		var doc any
		if err == nil {
			err = node.Decode(&doc)
		}
		if err != nil {
			if errors.Is(err, io.EOF) {
				return docs, nil
			}
			return docs, fmt.Errorf("invalid YAML: %s", yamlErr(err))
		}
		if doc != nil {
			docs = append(docs, restore(doc, saved))
		}
	}
}

// maxExpandedNodes bounds the size of a YAML document once its aliases are
// expanded. A few lines of anchors and aliases can stand for millions of
// nodes, which every later walk of the tree would visit; real values and
// manifests are far below this.
const maxExpandedNodes = 100_000

// checkExpansion refuses a document that its aliases blow up beyond
// maxExpandedNodes.
func checkExpansion(doc *yaml.Node) error {
	sizes := map[*yaml.Node]int{}
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil || depth > 1000 {
			return 1
		}
		if s, ok := sizes[n]; ok {
			return s
		}
		s := 1
		if n.Kind == yaml.AliasNode {
			s = size(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			if s += size(c, depth+1); s > maxExpandedNodes {
				break
			}
		}
		sizes[n] = min(s, maxExpandedNodes+1)
		return sizes[n]
	}
	if n := size(doc, 0); n > maxExpandedNodes {
		return fmt.Errorf("YAML too large once its aliases are expanded (over %d nodes)", maxExpandedNodes)
	}
	return nil
}

// protect swaps each {{ ... }} for a plain token and returns what it swapped.
func protect(s string) (string, []string) {
	var saved []string
	out := macroRE.ReplaceAllStringFunc(s, func(m string) string {
		saved = append(saved, m)
		return fmt.Sprintf("__EMMACRO%d__", len(saved)-1)
	})
	return out, saved
}

// restore puts the saved macros back into every string and map key, and
// turns non-string keys into strings.
func restore(node any, saved []string) any {
	put := func(s string) string {
		return tokenRE.ReplaceAllStringFunc(s, func(t string) string {
			i, _ := strconv.Atoi(tokenRE.FindStringSubmatch(t)[1])
			if i < len(saved) {
				return saved[i]
			}
			return t
		})
	}
	switch t := node.(type) {
	case string:
		return put(t)
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[put(k)] = restore(v, saved)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, v := range t {
			out[put(scalarString(k))] = restore(v, saved)
		}
		return out
	case []any:
		for i := range t {
			t[i] = restore(t[i], saved)
		}
		return t
	default:
		return t
	}
}

// scalarString renders a decoded YAML scalar as text.
func scalarString(v any) string {
	switch t := v.(type) {
	case nil:
		return ""
	case string:
		return t
	case float64:
		return strconv.FormatFloat(t, 'f', -1, 64)
	default:
		return fmt.Sprint(t)
	}
}

// get follows plain keys through nested maps.
func get(node any, keys ...string) any {
	for _, k := range keys {
		m, ok := node.(map[string]any)
		if !ok {
			return nil
		}
		node = m[k]
	}
	return node
}
