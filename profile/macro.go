package profile

import (
	"fmt"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

// maxDepth bounds nested expansion: system.uri is itself made of macros, and
// a macro that refers back to itself must end as unresolved, not hang.
const maxDepth = 10

// maxLen bounds an expanded string: a macro that refers to itself several
// times would otherwise grow exponentially before maxDepth stops it.
const maxLen = 8 << 10

// macroRE matches one {{ ... }} expression, with Go template trim markers.
var macroRE = regexp.MustCompile(`\{\{-?\s*(.*?)\s*-?\}\}`)

// resolver expands Palette macros for the strings of one profile; lookups
// fall back to the other profiles of the run (an add-on profile may read the
// infrastructure profile's packs).
type resolver struct {
	profiles []*Profile
	cur      *Profile
	vars     map[string]string
	macros   map[string]string
	values   map[*Pack]map[string]any
}

// unresolvedError says why a string could not be expanded.
type unresolvedError struct{ reason string }

func (e *unresolvedError) Error() string { return e.reason }

func unresolved(format string, args ...any) error {
	return &unresolvedError{fmt.Sprintf(format, args...)}
}

// expand replaces every Palette macro in s, repeatedly, until none is left.
// Expressions that are not Palette macros (Helm's {{ .Values.x }}) are kept.
func (r *resolver) expand(s string) (string, error) {
	for depth := 0; ; depth++ {
		if !hasSpectroMacro(s) {
			return s, nil
		}
		if depth == maxDepth {
			return s, unresolved("macro nesting deeper than %d levels (a macro that refers to itself?) in %q", maxDepth, s)
		}
		var firstErr error
		next := macroRE.ReplaceAllStringFunc(s, func(m string) string {
			expr := macroRE.FindStringSubmatch(m)[1]
			if !isSpectro(expr) {
				return m
			}
			v, err := r.eval(expr)
			if err != nil {
				if firstErr == nil {
					firstErr = err
				}
				return m
			}
			return v
		})
		if firstErr != nil {
			// Keep what did resolve: the reason names the macro that did not.
			return next, firstErr
		}
		if len(next) > maxLen {
			return s, unresolved("macro expansion longer than %d bytes (a macro that refers to itself?) in %q", maxLen, s)
		}
		s = next
	}
}

func hasSpectroMacro(s string) bool {
	for _, m := range macroRE.FindAllStringSubmatch(s, -1) {
		if isSpectro(m[1]) {
			return true
		}
	}
	return false
}

func isSpectro(expr string) bool { return strings.HasPrefix(expr, ".spectro.") }

// eval evaluates "PATH | fn args | fn ...".
func (r *resolver) eval(expr string) (string, error) {
	// Values are parsed with macros swapped out (see protect), so a macro
	// inside a double-quoted YAML string keeps its \" escapes: undo them.
	expr = strings.ReplaceAll(expr, `\"`, `"`)
	stages := splitPipes(expr)
	val, missing := r.lookup(strings.TrimSpace(stages[0]))
	for _, st := range stages[1:] {
		args, err := splitArgs(st)
		if err != nil {
			return "", unresolved("{{ %s }}: %v", expr, err)
		}
		if len(args) == 0 {
			return "", unresolved("{{ %s }}: empty pipe stage", expr)
		}
		if args[0] == "default" {
			if len(args) != 2 {
				return "", unresolved("{{ %s }}: default takes one value", expr)
			}
			if val == "" {
				val, missing = args[1], ""
			}
			continue
		}
		if val, err = applyFunc(args, val); err != nil {
			return "", unresolved("{{ %s }}: %v", expr, err)
		}
	}
	if missing != "" {
		return "", unresolved("{{ %s }}: %s", expr, missing)
	}
	return val, nil
}

// lookup returns the value of a macro path, or why it has none.
func (r *resolver) lookup(path string) (val, missing string) {
	key := strings.TrimPrefix(path, ".spectro.")
	if v, ok := r.macros[key]; ok {
		return v, ""
	}
	switch {
	case strings.HasPrefix(key, "pack."):
		return r.packValue(strings.TrimPrefix(key, "pack."))
	case key == "system.kubernetes.version":
		if p := r.findPack(func(p *Pack) bool { return p.Layer == "k8s" }); p != nil && p.Version != "" {
			return p.Version, ""
		}
		return "", "no k8s layer with a version in the profiles; give --macro system.kubernetes.version=VERSION"
	case strings.HasPrefix(key, "var."):
		name := strings.TrimPrefix(key, "var.")
		if v, ok := r.vars[name]; ok {
			return v, ""
		}
		for _, p := range r.ordered() {
			for _, v := range p.Variables {
				if v.Name == name && v.DefaultValue != "" {
					return v.DefaultValue, ""
				}
			}
		}
		return "", fmt.Sprintf("profile variable %q has no default value; give --var %s=VALUE", name, name)
	case strings.HasPrefix(key, "macro."):
		name := strings.TrimPrefix(key, "macro.")
		return "", fmt.Sprintf("macro %q is not in the export; give --macro %s=VALUE", name, name)
	default:
		return "", fmt.Sprintf("%q is not in the export; give --macro %s=VALUE", path, key)
	}
}

// ordered lists the current profile first, then the others.
func (r *resolver) ordered() []*Profile {
	out := []*Profile{r.cur}
	for _, p := range r.profiles {
		if p != r.cur {
			out = append(out, p)
		}
	}
	return out
}

func (r *resolver) findPack(match func(*Pack) bool) *Pack {
	for _, p := range r.ordered() {
		for i := range p.Packs {
			if match(&p.Packs[i]) {
				return &p.Packs[i]
			}
		}
	}
	return nil
}

// packValue reads "NAME.PATH" from the values of the pack NAME. Pack names and
// value keys may contain dots, so the longest matching name or key wins.
func (r *resolver) packValue(rest string) (string, string) {
	var pack *Pack
	for _, p := range r.ordered() {
		for i := range p.Packs {
			n := p.Packs[i].Name
			if n != "" && strings.HasPrefix(rest, n+".") && (pack == nil || len(n) > len(pack.Name)) {
				pack = &p.Packs[i]
			}
		}
		if pack != nil {
			break
		}
	}
	if pack == nil {
		name, _, _ := strings.Cut(rest, ".")
		return "", fmt.Sprintf("no pack named %q in the profiles", name)
	}
	path := strings.TrimPrefix(rest, pack.Name+".")
	tree, err := r.packValues(pack)
	if err != nil {
		return "", err.Error()
	}
	node, ok := walk(tree, path)
	if !ok {
		return "", fmt.Sprintf("pack %s has no value %q", pack.Name, path)
	}
	switch node.(type) {
	case map[string]any, []any:
		return "", fmt.Sprintf("pack %s value %q is not a single value", pack.Name, path)
	}
	return scalarString(node), ""
}

func (r *resolver) packValues(p *Pack) (map[string]any, error) {
	if v, ok := r.values[p]; ok {
		return v, nil
	}
	v, err := parseValues(p.Values)
	if err != nil {
		return nil, err
	}
	r.values[p] = v
	return v, nil
}

// walk follows a dotted path through maps (longest key first) and lists
// (numeric index).
func walk(node any, path string) (any, bool) {
	if path == "" {
		return node, true
	}
	switch t := node.(type) {
	case map[string]any:
		keys := make([]string, 0, len(t))
		for k := range t {
			if path == k || strings.HasPrefix(path, k+".") {
				keys = append(keys, k)
			}
		}
		sort.Slice(keys, func(i, j int) bool { return len(keys[i]) > len(keys[j]) })
		for _, k := range keys {
			if v, ok := walk(t[k], strings.TrimPrefix(strings.TrimPrefix(path, k), ".")); ok {
				return v, true
			}
		}
	case []any:
		head, tail, _ := strings.Cut(path, ".")
		if i, err := strconv.Atoi(head); err == nil && i >= 0 && i < len(t) {
			return walk(t[i], tail)
		}
	}
	return nil, false
}

// splitPipes splits on | outside double quotes.
func splitPipes(expr string) []string {
	var out []string
	quoted, start := false, 0
	for i := 0; i < len(expr); i++ {
		switch expr[i] {
		case '"':
			quoted = !quoted
		case '\\':
			i++
		case '|':
			if !quoted {
				out = append(out, expr[start:i])
				start = i + 1
			}
		}
	}
	return append(out, expr[start:])
}

// splitArgs splits a pipe stage into words; "quoted strings" are unquoted.
func splitArgs(stage string) ([]string, error) {
	var out []string
	s := strings.TrimSpace(stage)
	for s != "" {
		if s[0] == '"' {
			q, err := strconv.QuotedPrefix(s)
			if err != nil {
				return nil, fmt.Errorf("unterminated string in %q", stage)
			}
			v, _ := strconv.Unquote(q)
			out = append(out, v)
			s = strings.TrimSpace(s[len(q):])
			continue
		}
		word, rest, _ := strings.Cut(s, " ")
		out = append(out, word)
		s = strings.TrimSpace(rest)
	}
	return out, nil
}

// applyFunc applies one Sprig-style function to the piped value.
func applyFunc(args []string, val string) (string, error) {
	switch args[0] {
	case "upper":
		return strings.ToUpper(val), nil
	case "lower":
		return strings.ToLower(val), nil
	case "trim":
		return strings.TrimSpace(val), nil
	case "substr":
		if len(args) != 3 {
			return "", fmt.Errorf("substr takes a start and an end")
		}
		start, err1 := strconv.Atoi(args[1])
		end, err2 := strconv.Atoi(args[2])
		if err1 != nil || err2 != nil {
			return "", fmt.Errorf("substr bounds must be numbers, got %q %q", args[1], args[2])
		}
		return substr(val, start, end), nil
	default:
		return "", fmt.Errorf("unsupported function %q (supported: substr, default, upper, lower, trim)", args[0])
	}
}

// substr behaves as Sprig's: a negative start means 0, an end past the
// string or negative means its end.
func substr(s string, start, end int) string {
	if start < 0 {
		start = 0
	}
	if end < 0 || end > len(s) {
		end = len(s)
	}
	if start > end {
		return ""
	}
	return s[start:end]
}
