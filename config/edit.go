package config

import (
	"errors"
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// EnvVar names the environment variable that overrides key:
// proxy.admin_listen is STACK_PROXY_ADMIN_LISTEN.
func EnvVar(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

// SetFileKey returns the YAML file data with the scalar at key (dotted,
// e.g. "kms.uri") set to value, and every other byte kept: comments,
// order, quoting and the other keys stay as the user wrote them. A key the
// file does not set is added (under its section when the section exists,
// else at the end). It fails, rather than guess, when the key's place in
// the file is not one it can edit in place (a multi-line scalar, a flow
// mapping without the key); the result is checked to decode exactly as
// data does but for key.
func SetFileKey(data []byte, key, value string) ([]byte, error) {
	path := strings.Split(key, ".")
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("config: set %s: %w", key, err)
	}
	out, err := setKey(data, &doc, path, value)
	if err == nil {
		err = differsOnlyAt(data, out, path, value)
	}
	if err != nil {
		return nil, fmt.Errorf("config: set %s: %w", key, err)
	}
	return out, nil
}

func setKey(data []byte, doc *yaml.Node, path []string, value string) ([]byte, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		// Empty, or only comments: add the key at the end.
		return appendBlock(data, 0, path, value), nil
	}
	m := doc.Content[0]
	if m.Kind != yaml.MappingNode {
		return nil, errors.New("the file is not a mapping of sections")
	}
	var parent *yaml.Node // the key node whose value is m; nil for the top
	for i, name := range path {
		k, v := lookup(m, name)
		if k == nil {
			return insertUnder(data, parent, m, path[i:], value)
		}
		if i == len(path)-1 {
			if v.Kind != yaml.ScalarNode {
				return nil, fmt.Errorf("%s is not a single value", name)
			}
			return replaceScalar(data, v, m.Style&yaml.FlowStyle != 0, value)
		}
		if v.Kind == yaml.ScalarNode && v.Tag == "!!null" && v.Value == "" {
			// "section:" with nothing under it yet.
			return insertUnder(data, k, nil, path[i+1:], value)
		}
		if v.Kind != yaml.MappingNode {
			return nil, fmt.Errorf("%s is not a section", name)
		}
		parent, m = k, v
	}
	return nil, errors.New("empty key")
}

// lookup returns the key and value nodes of name in mapping m.
func lookup(m *yaml.Node, name string) (k, v *yaml.Node) {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == name {
			return m.Content[i], m.Content[i+1]
		}
	}
	return nil, nil
}

// insertUnder adds the keys rest (a path ending in value) to mapping m,
// whose key node is parent (nil for the top-level mapping; m nil when the
// section is empty).
func insertUnder(data []byte, parent, m *yaml.Node, rest []string, value string) ([]byte, error) {
	if parent == nil {
		return appendBlock(data, 0, rest, value), nil
	}
	if m != nil && m.Style&yaml.FlowStyle != 0 {
		return nil, errors.New("the section is written in flow style {...}")
	}
	indent := parent.Column - 1 + 2
	if m != nil && len(m.Content) > 0 {
		indent = m.Content[0].Column - 1
	}
	// Right under the section's own line, so comments stay with the keys
	// they describe.
	at, ok := lineEnd(data, parent.Line)
	if !ok {
		return nil, errors.New("cannot find the section's line")
	}
	block := blockText(indent, rest, value)
	out := make([]byte, 0, len(data)+len(block)+1)
	out = append(out, data[:at]...)
	if at == len(data) {
		out = append(out, '\n')
	}
	out = append(out, block...)
	return append(out, data[at:]...), nil
}

// appendBlock adds the keys path with value at the end of data.
func appendBlock(data []byte, indent int, path []string, value string) []byte {
	out := append([]byte(nil), data...)
	if len(out) > 0 && out[len(out)-1] != '\n' {
		out = append(out, '\n')
	}
	return append(out, blockText(indent, path, value)...)
}

// blockText writes path as nested block mappings ending in value, each
// level indented two more spaces.
func blockText(indent int, path []string, value string) string {
	var b strings.Builder
	for i, name := range path {
		b.WriteString(strings.Repeat(" ", indent+2*i))
		b.WriteString(name)
		b.WriteString(":")
		if i == len(path)-1 {
			b.WriteString(" " + quote(value))
		}
		b.WriteString("\n")
	}
	return b.String()
}

// quote writes value as a double-quoted scalar, as the file stack init
// writes does.
func quote(value string) string { return fmt.Sprintf("%q", value) }

// lineEnd returns the offset just past the newline ending line (1-based),
// or len(data) when it is the last line without one.
func lineEnd(data []byte, line int) (int, bool) {
	start, ok := lineStart(data, line)
	if !ok {
		return 0, false
	}
	if i := strings.IndexByte(string(data[start:]), '\n'); i >= 0 {
		return start + i + 1, true
	}
	return len(data), true
}

func lineStart(data []byte, line int) (int, bool) {
	off := 0
	for l := 1; l < line; l++ {
		i := strings.IndexByte(string(data[off:]), '\n')
		if i < 0 {
			return 0, false
		}
		off += i + 1
	}
	return off, true
}

// replaceScalar replaces the source text of the one-line scalar n.
func replaceScalar(data []byte, n *yaml.Node, inFlow bool, value string) ([]byte, error) {
	start, ok := lineStart(data, n.Line)
	if !ok {
		return nil, errors.New("cannot find the value's line")
	}
	// Columns count characters, not bytes.
	for c := 1; c < n.Column; c++ {
		if start >= len(data) || data[start] == '\n' {
			return nil, errors.New("cannot find the value's column")
		}
		_, size := utf8.DecodeRune(data[start:])
		start += size
	}
	end, err := scalarEnd(data, start, n.Style, inFlow)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(data)+len(value)+2)
	out = append(out, data[:start]...)
	out = append(out, quote(value)...)
	return append(out, data[end:]...), nil
}

// scalarEnd finds where the scalar starting at data[start] ends.
func scalarEnd(data []byte, start int, style yaml.Style, inFlow bool) (int, error) {
	switch {
	case style&yaml.DoubleQuotedStyle != 0:
		return doubleQuotedEnd(data, start)
	case style&yaml.SingleQuotedStyle != 0:
		return singleQuotedEnd(data, start)
	case style&(yaml.LiteralStyle|yaml.FoldedStyle) != 0:
		return 0, errMultiline
	default:
		return plainEnd(data, start, inFlow), nil
	}
}

var (
	errMultiline    = errors.New("the value spans several lines")
	errUnterminated = errors.New("unterminated quoted value")
)

// doubleQuotedEnd finds the closing quote of "...", where \ escapes the
// next byte.
func doubleQuotedEnd(data []byte, start int) (int, error) {
	for i := start + 1; i < len(data); i++ {
		switch data[i] {
		case '\\':
			i++
		case '"':
			return i + 1, nil
		case '\n':
			return 0, errMultiline
		}
	}
	return 0, errUnterminated
}

// singleQuotedEnd finds the closing quote of '...', where a doubled
// quote stands for one.
func singleQuotedEnd(data []byte, start int) (int, error) {
	for i := start + 1; i < len(data); i++ {
		switch {
		case data[i] == '\'' && i+1 < len(data) && data[i+1] == '\'':
			i++
		case data[i] == '\'':
			return i + 1, nil
		case data[i] == '\n':
			return 0, errMultiline
		}
	}
	return 0, errUnterminated
}

// plainEnd finds the end of an unquoted scalar: the line's end, a comment,
// or in a flow collection the next separator, less trailing blanks.
func plainEnd(data []byte, start int, inFlow bool) int {
	end := start
	for i := start; i < len(data); i++ {
		c := data[i]
		if c == '\n' || c == '\r' || c == '#' && i > start && (data[i-1] == ' ' || data[i-1] == '\t') {
			break
		}
		if inFlow && (c == ',' || c == '}' || c == ']') {
			break
		}
		if c != ' ' && c != '\t' {
			end = i + 1
		}
	}
	return end
}

// differsOnlyAt checks that after decodes like before with path set to
// value, and like nothing else.
func differsOnlyAt(before, after []byte, path []string, value string) error {
	var want, got any
	if err := yaml.Unmarshal(before, &want); err != nil {
		return err
	}
	if err := yaml.Unmarshal(after, &got); err != nil {
		return fmt.Errorf("the edited file does not parse: %w", err)
	}
	if want == nil {
		want = map[string]any{}
	}
	m, ok := want.(map[string]any)
	if !ok {
		return errors.New("the file is not a mapping of sections")
	}
	for _, name := range path[:len(path)-1] {
		next, ok := m[name].(map[string]any)
		if !ok {
			next = map[string]any{}
			m[name] = next
		}
		m = next
	}
	m[path[len(path)-1]] = value
	if !reflect.DeepEqual(want, got) {
		return errors.New("the file cannot be edited in place")
	}
	return nil
}
