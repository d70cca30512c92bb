package helmrepo

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// unmarshalYAML decodes YAML into v the way sigs.k8s.io/yaml (which
// Helm uses) does: YAML 1.1 scalars, turned into JSON, decoded with
// encoding/json (so keys match JSON names case-insensitively and a number
// or boolean given for a string field becomes its text).
func unmarshalYAML(data []byte, v any) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return oneLine(err)
	}
	budget := 1 << 20
	obj, err := jsonValue(&doc, &budget)
	if err != nil {
		return err
	}
	raw, err := json.Marshal(obj)
	if err != nil {
		return oneLine(err)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return jsonError(err)
	}
	return nil
}

func jsonError(err error) error {
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		want := te.Type.Kind().String()
		switch te.Type.Kind() {
		case reflect.Slice:
			want = "list"
		case reflect.Map, reflect.Struct, reflect.Pointer:
			want = "mapping"
		}
		field := te.Field
		if field == "" {
			field = "the document"
		}
		return fmt.Errorf("%s: a %s where a %s is expected", field, te.Value, want)
	}
	return oneLine(err)
}

func oneLine(err error) error {
	return errors.New(strings.Join(strings.Fields(err.Error()), " "))
}

// jsonValue turns a YAML node into values encoding/json can write,
// spending budget on every node (aliases included) so that an alias bomb
// stops early.
func jsonValue(n *yaml.Node, budget *int) (any, error) {
	if *budget--; *budget < 0 {
		return nil, errors.New("too many YAML nodes")
	}
	switch n.Kind {
	case yaml.DocumentNode:
		if len(n.Content) == 0 {
			return nil, nil
		}
		return jsonValue(n.Content[0], budget)
	case yaml.AliasNode:
		return jsonValue(n.Alias, budget)
	case yaml.ScalarNode:
		return scalarValue(n), nil
	case yaml.SequenceNode:
		list := make([]any, 0, len(n.Content))
		for _, c := range n.Content {
			v, err := jsonValue(c, budget)
			if err != nil {
				return nil, err
			}
			list = append(list, v)
		}
		return list, nil
	case yaml.MappingNode:
		m := make(map[string]any, len(n.Content)/2)
		var merges []*yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Kind == yaml.ScalarNode && k.ShortTag() == "!!merge" {
				merges = append(merges, v)
				continue
			}
			key, err := mappingKey(k)
			if err != nil {
				return nil, err
			}
			if m[key], err = jsonValue(v, budget); err != nil {
				return nil, err
			}
		}
		// "<<: *anchor" adds the keys the mapping does not set itself.
		for _, mv := range merges {
			src := []*yaml.Node{mv}
			if mv.Kind == yaml.SequenceNode {
				src = mv.Content
			}
			for _, s := range src {
				v, err := jsonValue(s, budget)
				if err != nil {
					return nil, err
				}
				mm, ok := v.(map[string]any)
				if !ok {
					return nil, errors.New("a merge key (<<) must refer to a mapping")
				}
				for k, x := range mm {
					if _, set := m[k]; !set {
						m[k] = x
					}
				}
			}
		}
		return m, nil
	}
	return nil, fmt.Errorf("unsupported YAML node at line %d", n.Line)
}

// mappingKey turns a mapping key into the string sigs.k8s.io/yaml makes of it.
func mappingKey(k *yaml.Node) (string, error) {
	if k.Kind == yaml.AliasNode && k.Alias != nil {
		k = k.Alias
	}
	if k.Kind != yaml.ScalarNode {
		return "", fmt.Errorf("line %d: a mapping key must be a scalar", k.Line)
	}
	if k.ShortTag() == "!!null" {
		return "", fmt.Errorf("line %d: a mapping key must not be null", k.Line)
	}
	return scalarText(scalarValue(k)), nil
}

// yaml11Bools are the words YAML 1.1 (go-yaml v2, under
// sigs.k8s.io/yaml) reads as booleans where YAML 1.2 sees strings.
var yaml11Bools = map[string]bool{
	"y": true, "Y": true, "yes": true, "Yes": true, "YES": true, "on": true, "On": true, "ON": true,
	"n": false, "N": false, "no": false, "No": false, "NO": false, "off": false, "Off": false, "OFF": false,
}

// scalarValue resolves a scalar: nil, bool, int64, uint64, float64 or string
// (a timestamp stays text, as go-yaml v2 keeps it for an interface{}).
func scalarValue(n *yaml.Node) any {
	switch n.ShortTag() {
	case "!!null":
		return nil
	case "!!bool":
		var b bool
		if n.Decode(&b) == nil {
			return b
		}
	case "!!int":
		var i int64
		if n.Decode(&i) == nil {
			return i
		}
		var u uint64
		if n.Decode(&u) == nil {
			return u
		}
	case "!!float":
		var f float64
		if n.Decode(&f) == nil {
			if math.IsInf(f, 0) || math.IsNaN(f) {
				return scalarText(f)
			}
			return f
		}
	case "!!str":
		// Only a plain scalar: quoted or tagged "yes" stays a string.
		if b, ok := yaml11Bools[n.Value]; ok && n.Style == 0 {
			return b
		}
	}
	return n.Value
}

// scalarText is the text sigs.k8s.io/yaml gives a scalar decoded into a string
// field (floats as float32, so 1.10 becomes "1.1", as Helm does).
func scalarText(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case bool:
		return strconv.FormatBool(v)
	case int64:
		return strconv.FormatInt(v, 10)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 32)
	}
	return fmt.Sprint(v)
}

// looseString is a string field that, like Helm's through sigs.k8s.io/yaml,
// also takes a number or a boolean, as its text.
type looseString string

// UnmarshalJSON takes a JSON string, number or boolean.
func (h *looseString) UnmarshalJSON(b []byte) error {
	s := string(b)
	switch {
	case s == "null":
		return nil
	case strings.HasPrefix(s, `"`):
		var str string
		if err := json.Unmarshal(b, &str); err != nil {
			return err
		}
		*h = looseString(str)
	case s == "true" || s == "false":
		*h = looseString(s)
	case strings.HasPrefix(s, "{"):
		return &json.UnmarshalTypeError{Value: "mapping", Type: reflect.TypeFor[string]()}
	case strings.HasPrefix(s, "["):
		return &json.UnmarshalTypeError{Value: "list", Type: reflect.TypeFor[string]()}
	default:
		if i, err := strconv.ParseInt(s, 10, 64); err == nil {
			*h = looseString(scalarText(i))
		} else if u, err := strconv.ParseUint(s, 10, 64); err == nil {
			*h = looseString(scalarText(u))
		} else if f, err := strconv.ParseFloat(s, 64); err == nil {
			*h = looseString(scalarText(f))
		} else {
			return &json.UnmarshalTypeError{Value: "number " + s, Type: reflect.TypeFor[string]()}
		}
	}
	return nil
}

// UnmarshalYAML takes any scalar, as its text.
func (h *looseString) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: a string is expected", n.Line)
	}
	*h = looseString(scalarText(scalarValue(n)))
	return nil
}
