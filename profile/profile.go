// Package profile reads exported Spectro Cloud Palette cluster profiles and
// finds every container image and Helm chart they reference, with where each
// one came from. It resolves Palette macros and scans manifest layers; it never
// touches the network.
package profile

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Profile is one exported cluster profile, decoded leniently: every field may
// be empty and unknown keys are ignored.
type Profile struct {
	// File is the path the profile was read from ("-" for standard input).
	File string
	// Data is the whole file the profile was read from, as read (shared by
	// the profiles of one file): bundles keep it.
	Data []byte
	// Name is metadata.name.
	Name string
	// Version is spec.version.
	Version string
	// Type is spec.template.type (cluster, infra, add-on, system).
	Type string
	// CloudType is spec.template.cloudType (edge-native, aws, ...).
	CloudType string
	// Packs are the profile's layers in export order.
	Packs []Pack
	// Variables are the profile variables with their defaults.
	Variables []Variable
}

// Pack is one layer of a profile.
type Pack struct {
	Name      string
	Type      string // spectro, oci, helm, manifest
	Layer     string // os, k8s, cni, csi, addon, kernel
	Version   string // exact version
	Tag       string // may be a wildcard such as 1.25.x
	Values    string // the pack's whole values.yaml as one string
	Manifests []Manifest
}

// Manifest is one manifest attached to a pack.
type Manifest struct {
	Name    string
	Content string // multi-document Kubernetes YAML
}

// Variable is a profile variable.
type Variable struct {
	Name         string
	DefaultValue string
}

// wire types mirror the export format; pointers and any keep decoding lenient.
type wireProfile struct {
	Metadata struct {
		Name string `json:"name" yaml:"name"`
	} `json:"metadata" yaml:"metadata"`
	Spec *struct {
		Version  text `json:"version" yaml:"version"`
		Template struct {
			Type      string     `json:"type" yaml:"type"`
			CloudType string     `json:"cloudType" yaml:"cloudType"`
			Packs     []wirePack `json:"packs" yaml:"packs"`
		} `json:"template" yaml:"template"`
		Variables []struct {
			Name         string `json:"name" yaml:"name"`
			DefaultValue text   `json:"defaultValue" yaml:"defaultValue"`
		} `json:"variables" yaml:"variables"`
	} `json:"spec" yaml:"spec"`
}

type wirePack struct {
	Name      string `json:"name" yaml:"name"`
	Type      string `json:"type" yaml:"type"`
	Layer     string `json:"layer" yaml:"layer"`
	Version   text   `json:"version" yaml:"version"`
	Tag       text   `json:"tag" yaml:"tag"`
	Values    any    `json:"values" yaml:"values"`
	Manifests []struct {
		Name    string `json:"name" yaml:"name"`
		Content string `json:"content" yaml:"content"`
	} `json:"manifests" yaml:"manifests"`
}

// Read reads the profiles in each file; "-" reads stdin. The error names the
// file and is one line.
func Read(paths []string, stdin io.Reader) ([]*Profile, error) {
	var all []*Profile
	for _, p := range paths {
		var data []byte
		var err error
		if p == "-" {
			if stdin == nil {
				return nil, errors.New("-: no standard input")
			}
			data, err = io.ReadAll(stdin)
		} else {
			data, err = os.ReadFile(p)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: cannot read profile: %w", p, unwrapPath(err))
		}
		ps, err := Parse(p, data)
		if err != nil {
			return nil, err
		}
		all = append(all, ps...)
	}
	return all, nil
}

// unwrapPath drops the *PathError wrapper so the file name is not repeated.
func unwrapPath(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes one export (JSON or YAML, an object or an array of them).
// name labels errors, usually the file path.
func Parse(name string, data []byte) ([]*Profile, error) {
	trimmed := bytes.TrimSpace(data)
	if len(trimmed) == 0 {
		return nil, fmt.Errorf("%s: empty file, expected an exported cluster profile", name)
	}
	var wires []wireProfile
	var err error
	if trimmed[0] == '{' || trimmed[0] == '[' {
		err = decodeJSON(trimmed, &wires)
	} else {
		err = decodeYAML(trimmed, &wires)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if len(wires) == 0 {
		return nil, fmt.Errorf("%s: empty list, expected at least one exported cluster profile", name)
	}
	out := make([]*Profile, 0, len(wires))
	for i, w := range wires {
		label := name
		if len(wires) > 1 {
			label = fmt.Sprintf("%s[%d]", name, i)
		}
		if w.Spec == nil {
			return nil, fmt.Errorf("%s: not a cluster profile export: no spec (expected metadata.name and spec.template.packs)", label)
		}
		p := &Profile{
			File: name, Data: data, Name: w.Metadata.Name, Version: string(w.Spec.Version),
			Type: w.Spec.Template.Type, CloudType: w.Spec.Template.CloudType,
		}
		if p.Name == "" {
			p.Name = fmt.Sprintf("%s#%d", name, i+1)
		}
		for _, v := range w.Spec.Variables {
			p.Variables = append(p.Variables, Variable{Name: v.Name, DefaultValue: string(v.DefaultValue)})
		}
		for j, wp := range w.Spec.Template.Packs {
			values, ok := wp.Values.(string)
			if wp.Values != nil && !ok {
				return nil, fmt.Errorf("%s: profile %s: spec.template.packs[%d] (%s): values: expected one YAML string, got %s", label, p.Name, j, wp.Name, kind(wp.Values))
			}
			pk := Pack{Name: wp.Name, Type: wp.Type, Layer: wp.Layer, Version: string(wp.Version), Tag: string(wp.Tag), Values: values}
			for _, m := range wp.Manifests {
				pk.Manifests = append(pk.Manifests, Manifest{Name: m.Name, Content: m.Content})
			}
			p.Packs = append(p.Packs, pk)
		}
		if len(p.Packs) == 0 {
			return nil, fmt.Errorf("%s: profile %s: spec.template.packs: empty, the profile has no packs", label, p.Name)
		}
		out = append(out, p)
	}
	return out, nil
}

func decodeJSON(data []byte, out *[]wireProfile) error {
	if data[0] == '[' {
		if err := json.Unmarshal(data, out); err != nil {
			return fmt.Errorf("invalid JSON: %s", jsonErr(data, err))
		}
		return nil
	}
	var one wireProfile
	if err := json.Unmarshal(data, &one); err != nil {
		return fmt.Errorf("invalid JSON: %s", jsonErr(data, err))
	}
	*out = []wireProfile{one}
	return nil
}

// jsonErr adds the line number to a JSON syntax or type error.
func jsonErr(data []byte, err error) string {
	var off int64 = -1
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		off = se.Offset
	case errors.As(err, &te):
		off = te.Offset
		if te.Field != "" {
			msg := fmt.Sprintf("field %s: expected %s, got %s", te.Field, kindName(te.Type), article(te.Value))
			if off <= 0 { // errors of our own unmarshalers carry no offset
				return msg
			}
			return fmt.Sprintf("line %d: %s", lineOf(data, off), msg)
		}
	}
	msg := strings.TrimPrefix(err.Error(), "json: ")
	if off < 0 {
		return msg
	}
	return fmt.Sprintf("line %d: %s", lineOf(data, off), msg)
}

// kindName names a Go type as the export format knows it.
func kindName(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "a list"
	case reflect.Struct, reflect.Map:
		return "an object"
	case reflect.String:
		return "a string"
	case reflect.Bool:
		return "true or false"
	default:
		return "a number"
	}
}

// article puts "a"/"an" before a JSON value kind ("an object", "a string").
func article(v string) string {
	switch v {
	case "object", "array":
		return "an " + v
	case "":
		return "something else"
	}
	return "a " + v
}

func lineOf(data []byte, off int64) int {
	if off > int64(len(data)) {
		off = int64(len(data))
	}
	return bytes.Count(data[:off], []byte("\n")) + 1
}

func decodeYAML(data []byte, out *[]wireProfile) error {
	var node yaml.Node
	if err := yaml.Unmarshal(data, &node); err != nil {
		return fmt.Errorf("invalid YAML: %s", yamlErr(err))
	}
	if len(node.Content) == 0 {
		return errors.New("empty YAML document, expected an exported cluster profile")
	}
	doc := node.Content[0]
	var err error
	switch doc.Kind {
	case yaml.SequenceNode:
		err = doc.Decode(out)
	case yaml.MappingNode:
		var one wireProfile
		err = doc.Decode(&one)
		*out = []wireProfile{one}
	default:
		return fmt.Errorf("line %d: expected an exported cluster profile (a mapping or a list), got a scalar", doc.Line)
	}
	if err != nil {
		return fmt.Errorf("invalid profile: %s", yamlErr(err))
	}
	return nil
}

// yamlErr folds a YAML error, which lists type errors one per line, into one
// line.
func yamlErr(err error) string {
	var te *yaml.TypeError
	if errors.As(err, &te) {
		return strings.Join(te.Errors, "; ")
	}
	return strings.TrimPrefix(err.Error(), "yaml: ")
}

// text is a scalar kept as written: "1.10" stays "1.10" whether the export
// wrote it as a string or a number.
type text string

// UnmarshalJSON accepts a string, a number, a boolean or null.
func (t *text) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		var s string
		if err := json.Unmarshal(b, &s); err != nil {
			return err
		}
		*t = text(s)
		return nil
	}
	if len(b) > 0 && (b[0] == '{' || b[0] == '[') {
		// A type error, so encoding/json adds the field path to it.
		got := "object"
		if b[0] == '[' {
			got = "array"
		}
		return &json.UnmarshalTypeError{Value: got, Type: reflect.TypeFor[string]()}
	}
	if string(b) != "null" {
		*t = text(b)
	}
	return nil
}

// UnmarshalYAML accepts any scalar; null is empty.
func (t *text) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("line %d: expected a scalar", n.Line)
	}
	if n.Tag != "!!null" {
		*t = text(n.Value)
	}
	return nil
}

func kind(v any) string {
	switch v.(type) {
	case map[string]any:
		return "an object"
	case []any:
		return "a list"
	default:
		return fmt.Sprintf("%T", v)
	}
}
