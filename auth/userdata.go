package auth

import (
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"go.yaml.in/yaml/v3"
)

// UserData is the registry part of a Palette Edge installer user data file
// (#cloud-config YAML, `stylus` block).
type UserData struct {
	// Path is the name the file was read from, used in messages.
	Path string
	// Registry is stylus.registryCredentials.domain, the external registry
	// that image references are prefixed with, trailing "/" trimmed; it may
	// carry a path. "" when the file has no registryCredentials.
	Registry string
	// Mappings are the registryMappingRules (FROM prefix to TO prefix) of
	// stylus.registryMappingRules and
	// stylus.externalRegistries.registryMappingRules merged; trailing "/"
	// trimmed on both sides.
	Mappings map[string]string
	// Registries are every registry entry: stylus.registryCredentials (first,
	// when present) then stylus.externalRegistries.registries[] in order.
	Registries []Registry
	// Warnings are non-fatal problems, each naming the file and the field.
	Warnings []string
}

// Registry is one registry entry of the user data: its credentials and TLS
// settings. Its String and GoString methods mask the password.
type Registry struct {
	// Domain is host[:port][/path], trailing "/" trimmed.
	Domain string
	// Username is the user name, "" for anonymous access.
	Username string
	// Password is the password, already base64-decoded when the entry has
	// `encodedPassword: true`. It never appears in messages.
	Password string `json:"-" yaml:"-"`
	// RepositoryName is the entry's repositoryName, "" when absent.
	RepositoryName string
	// Insecure skips TLS verification for this registry.
	Insecure bool
	// Certificates are PEM CA certificates to trust for this registry.
	Certificates []string
}

// String describes r with the password masked.
func (r Registry) String() string {
	return fmt.Sprintf("{Domain:%s Username:%s Password:%s RepositoryName:%s Insecure:%t Certificates:%d}",
		r.Domain, r.Username, mask(r.Password), r.RepositoryName, r.Insecure, len(r.Certificates))
}

// GoString is like String in Go syntax, with the password masked.
func (r Registry) GoString() string {
	return fmt.Sprintf("auth.Registry{Domain:%q, Username:%q, Password:%q, RepositoryName:%q, Insecure:%t, Certificates:[]string{/* %d */}}",
		r.Domain, r.Username, mask(r.Password), r.RepositoryName, r.Insecure, len(r.Certificates))
}

// mask stands in for a secret in descriptions.
func mask(secret string) string {
	if secret == "" {
		return ""
	}
	return "***"
}

// ReadUserData reads and parses the user data file at path. Standard input
// ("-") is not supported: it is reserved for profiles.
func ReadUserData(path string) (*UserData, error) {
	if path == "-" {
		return nil, errors.New("user data: reading from standard input (-) is not supported; give a file")
	}
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return ParseUserData(path, data)
}

// readFile reads a file with a one-line error naming it.
func readFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		var pathErr *fs.PathError
		if errors.As(err, &pathErr) {
			err = pathErr.Err // the path is already in our message
		}
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return data, nil
}

// ParseUserData parses user data; name is used in messages. Errors are one
// line naming the file and the field path; they never contain a password.
func ParseUserData(name string, data []byte) (*UserData, error) {
	p := &udParser{name: name}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		// yaml.v3 syntax errors carry a line number and no values.
		msg := strings.TrimPrefix(oneLine(err.Error()), "yaml: ")
		return nil, fmt.Errorf("%s: invalid YAML: %s", name, msg)
	}
	root := &doc
	if root.Kind == yaml.DocumentNode && len(root.Content) > 0 {
		root = root.Content[0]
	}
	top, err := p.mapping("top level", root)
	if err != nil {
		return nil, err
	}
	stylus, err := p.mapping("stylus", top["stylus"])
	if err != nil {
		return nil, err
	}
	credsNode := nonNull(stylus["registryCredentials"])
	extNode := nonNull(stylus["externalRegistries"])
	rulesNode := nonNull(stylus["registryMappingRules"])
	if credsNode == nil && extNode == nil && rulesNode == nil {
		return nil, fmt.Errorf("%s: no stylus registry settings found (expected stylus.registryCredentials, stylus.externalRegistries or stylus.registryMappingRules)", name)
	}

	ud := &UserData{Path: name, Mappings: map[string]string{}}
	if credsNode != nil {
		reg, err := p.registry("stylus.registryCredentials", credsNode)
		if err != nil {
			return nil, err
		}
		ud.Registry = reg.Domain
		ud.Registries = append(ud.Registries, reg)
	}
	if err := p.rules("stylus.registryMappingRules", rulesNode, ud.Mappings); err != nil {
		return nil, err
	}
	if extNode != nil {
		ext, err := p.mapping("stylus.externalRegistries", extNode)
		if err != nil {
			return nil, err
		}
		if regs := nonNull(ext["registries"]); regs != nil {
			regs = resolve(regs)
			if regs.Kind != yaml.SequenceNode {
				return nil, p.errf("stylus.externalRegistries.registries", "must be a list")
			}
			for i, n := range regs.Content {
				reg, err := p.registry(fmt.Sprintf("stylus.externalRegistries.registries[%d]", i), n)
				if err != nil {
					return nil, err
				}
				ud.Registries = append(ud.Registries, reg)
			}
		}
		own := map[string]string{}
		if err := p.rules("stylus.externalRegistries.registryMappingRules", ext["registryMappingRules"], own); err != nil {
			return nil, err
		}
		for from, to := range own {
			if prev, ok := ud.Mappings[from]; ok && prev != to {
				return nil, p.errf(fmt.Sprintf("stylus.externalRegistries.registryMappingRules[%q]", from),
					"conflicts with stylus.registryMappingRules[%q] (different targets)", from)
			}
			ud.Mappings[from] = to
		}
	}
	ud.Warnings = p.warnings
	return ud, nil
}

// udParser walks the YAML tree, producing one-line errors that name the
// file and the field path and never quote a value that could be secret.
type udParser struct {
	name     string
	warnings []string
}

func (p *udParser) errf(path, format string, args ...any) error {
	return fmt.Errorf("%s: %s: %s", p.name, path, fmt.Sprintf(format, args...))
}

func (p *udParser) warnf(path, format string, args ...any) {
	p.warnings = append(p.warnings, fmt.Sprintf("%s: %s: %s", p.name, path, fmt.Sprintf(format, args...)))
}

// resolve follows aliases.
func resolve(n *yaml.Node) *yaml.Node {
	for n != nil && n.Kind == yaml.AliasNode {
		n = n.Alias
	}
	return n
}

// isNull reports whether n is absent or an explicit null.
func isNull(n *yaml.Node) bool {
	n = resolve(n)
	return n == nil || n.Kind == 0 || (n.Kind == yaml.ScalarNode && n.Tag == "!!null")
}

// nonNull returns n, or nil when it is absent or null.
func nonNull(n *yaml.Node) *yaml.Node {
	if isNull(n) {
		return nil
	}
	return n
}

// mapping returns the keys of a mapping node (an absent or null node is an
// empty mapping). Merge keys (<<) are honoured; duplicate keys are errors.
func (p *udParser) mapping(path string, n *yaml.Node) (map[string]*yaml.Node, error) {
	out := map[string]*yaml.Node{}
	if isNull(n) {
		return out, nil
	}
	n = resolve(n)
	if n.Kind != yaml.MappingNode {
		return nil, p.errf(path, "must be a mapping")
	}
	var merged []*yaml.Node
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := resolve(n.Content[i]), n.Content[i+1]
		if k.Kind != yaml.ScalarNode {
			return nil, p.errf(path, "keys must be strings")
		}
		if k.Tag == "!!merge" || (k.Value == "<<" && k.Style == 0) {
			merged = append(merged, v)
			continue
		}
		if _, dup := out[k.Value]; dup {
			return nil, p.errf(path, "duplicate key %q", k.Value)
		}
		out[k.Value] = v
	}
	// Explicit keys win over merged ones, as in YAML.
	for _, m := range merged {
		m = resolve(m)
		sources := []*yaml.Node{m}
		if m.Kind == yaml.SequenceNode {
			sources = m.Content
		}
		for _, src := range sources {
			fields, err := p.mapping(path+".<<", src)
			if err != nil {
				return nil, err
			}
			for k, v := range fields {
				if _, ok := out[k]; !ok {
					out[k] = v
				}
			}
		}
	}
	return out, nil
}

// str returns a scalar as written (YAML resolution ignored, so 0123 or 1e3
// stay text), and whether it was absent or null.
func (p *udParser) str(path string, n *yaml.Node) (string, bool, error) {
	if isNull(n) {
		return "", true, nil
	}
	n = resolve(n)
	if n.Kind != yaml.ScalarNode {
		return "", false, p.errf(path, "must be a string")
	}
	return n.Value, false, nil
}

// boolean parses true/false (and the YAML 1.1 yes/no/on/off spellings that
// cloud-init accepts); absent or null is false.
func (p *udParser) boolean(path string, n *yaml.Node) (bool, error) {
	s, null, err := p.str(path, n)
	if err != nil || null {
		return false, err
	}
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "true", "yes", "on", "y":
		return true, nil
	case "false", "no", "off", "n", "":
		return false, nil
	}
	return false, p.errf(path, "must be true or false")
}

// registry parses one registry entry.
func (p *udParser) registry(path string, n *yaml.Node) (Registry, error) {
	if isNull(n) {
		return Registry{}, p.errf(path, "missing")
	}
	f, err := p.mapping(path, n)
	if err != nil {
		return Registry{}, err
	}
	var reg Registry
	domain, _, err := p.str(path+".domain", f["domain"])
	if err != nil {
		return Registry{}, err
	}
	if reg.Domain, err = p.domain(path+".domain", domain); err != nil {
		return Registry{}, err
	}
	if reg.Username, _, err = p.str(path+".username", f["username"]); err != nil {
		return Registry{}, err
	}
	reg.Username = strings.TrimSpace(reg.Username)
	if reg.Password, _, err = p.str(path+".password", f["password"]); err != nil {
		return Registry{}, err
	}
	encoded, err := p.boolean(path+".encodedPassword", f["encodedPassword"])
	if err != nil {
		return Registry{}, err
	}
	if encoded && reg.Password != "" {
		if reg.Password, err = decodeBase64(reg.Password); err != nil {
			return Registry{}, p.errf(path+".password", "encodedPassword is true but the value is not valid base64")
		}
	}
	if reg.Username != "" && reg.Password == "" {
		p.warnf(path+".password", `empty or null while a username is set; an unquoted value starting with "#" is a YAML comment (password: #### reads as null): quote it, e.g. password: "####"`)
	}
	if reg.RepositoryName, _, err = p.str(path+".repositoryName", f["repositoryName"]); err != nil {
		return Registry{}, err
	}
	if reg.Insecure, err = p.boolean(path+".insecure", f["insecure"]); err != nil {
		return Registry{}, err
	}
	if reg.Certificates, err = p.certificates(path+".certificates", f["certificates"]); err != nil {
		return Registry{}, err
	}
	return reg, nil
}

// domain validates a registry domain: host[:port][/path] without a scheme.
func (p *udParser) domain(path, s string) (string, error) {
	s = strings.TrimRight(strings.TrimSpace(s), "/")
	switch {
	case s == "":
		return "", p.errf(path, "missing")
	case strings.Contains(s, "://"):
		return "", p.errf(path, "must be host[:port][/path] without a scheme")
	case strings.ContainsAny(s, " \t\r\n@"):
		return "", p.errf(path, "must be host[:port][/path]")
	}
	return s, nil
}

// certificates accepts one PEM string (possibly holding several
// certificates) or a list of them.
func (p *udParser) certificates(path string, n *yaml.Node) ([]string, error) {
	if isNull(n) {
		return nil, nil
	}
	n = resolve(n)
	var items []*yaml.Node
	var paths []string
	switch n.Kind {
	case yaml.ScalarNode:
		items, paths = []*yaml.Node{n}, []string{path}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			items = append(items, c)
			paths = append(paths, fmt.Sprintf("%s[%d]", path, i))
		}
	default:
		return nil, p.errf(path, "must be a PEM string or a list of them")
	}
	var out []string
	for i, c := range items {
		s, null, err := p.str(paths[i], c)
		if err != nil {
			return nil, err
		}
		if null || strings.TrimSpace(s) == "" {
			continue
		}
		if !strings.Contains(s, "-----BEGIN CERTIFICATE-----") {
			return nil, p.errf(paths[i], "not a PEM certificate (no -----BEGIN CERTIFICATE----- line)")
		}
		out = append(out, s)
	}
	return out, nil
}

// rules adds the mapping rules of n to into.
func (p *udParser) rules(path string, n *yaml.Node, into map[string]string) error {
	f, err := p.mapping(path, n)
	if err != nil {
		return err
	}
	for from, v := range f {
		key := fmt.Sprintf("%s[%q]", path, from)
		to, _, err := p.str(key, v)
		if err != nil {
			return err
		}
		from = strings.TrimRight(strings.TrimSpace(from), "/")
		to = strings.TrimRight(strings.TrimSpace(to), "/")
		switch {
		case from == "":
			return p.errf(path, "empty rule key")
		case to == "":
			return p.errf(key, "empty target")
		}
		if prev, ok := into[from]; ok && prev != to {
			return p.errf(key, "conflicts with another rule for %q", from)
		}
		into[from] = to
	}
	return nil
}

// decodeBase64 decodes standard base64, padded or not, ignoring
// surrounding whitespace and line breaks.
func decodeBase64(s string) (string, error) {
	s = strings.Join(strings.Fields(s), "")
	if b, err := base64.StdEncoding.DecodeString(s); err == nil {
		return string(b), nil
	}
	b, err := base64.RawStdEncoding.DecodeString(s)
	if err != nil {
		return "", fmt.Errorf("invalid base64: %w", err)
	}
	return string(b), nil
}

// oneLine joins the lines of a message.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
