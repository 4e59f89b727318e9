package handoff

import (
	"bytes"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/santhosh-tekuri/jsonschema/v6"
)

// Limits of a schema.
const (
	MaxSchemaSize = 64 << 10
)

var schemaName = regexp.MustCompile(`^[a-z0-9][a-z0-9._/-]{0,127}$`)

// ValidSchemaName says whether name may name a schema: it appears in
// grants, URLs and audit records.
func ValidSchemaName(name string) error {
	if !schemaName.MatchString(name) {
		return fmt.Errorf("schema name %q: lowercase letters, digits and . _ / -, at most 128", name)
	}
	return nil
}

// Schema is a compiled JSON Schema (draft 2020-12 unless the document's
// $schema says otherwise) that a handoff's payload must match.
type Schema struct {
	Name string
	s    *jsonschema.Schema
}

// noLoader refuses every $ref outside the document: a schema names no
// network or file resource the control plane or a sidecar would fetch.
type noLoader struct{}

func (noLoader) Load(url string) (any, error) {
	return nil, fmt.Errorf("%s: a handoff schema refers only to itself", url)
}

// CompileSchema compiles the schema doc under name. Formats are asserted
// (an "email" must be one), and $ref may only point inside the document.
func CompileSchema(name string, doc []byte) (*Schema, error) {
	if err := ValidSchemaName(name); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSchema, err)
	}
	if len(doc) > MaxSchemaSize {
		return nil, fmt.Errorf("%w: schema %s is %d bytes, at most %d", ErrSchema, name, len(doc), MaxSchemaSize)
	}
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("%w: schema %s is not JSON: %v", ErrSchema, name, err)
	}
	c := jsonschema.NewCompiler()
	c.DefaultDraft(jsonschema.Draft2020)
	c.AssertFormat()
	c.UseLoader(noLoader{})
	loc := "urn:stack:handoff-schema:" + name
	if err := c.AddResource(loc, v); err != nil {
		return nil, fmt.Errorf("%w: schema %s: %v", ErrSchema, name, err)
	}
	s, err := c.Compile(loc)
	if err != nil {
		return nil, fmt.Errorf("%w: schema %s: %v", ErrSchema, name, err)
	}
	return &Schema{Name: name, s: s}, nil
}

// Validate checks a payload against the schema; the error says where the
// payload differs and which keyword it fails, never what the payload
// holds (the error may reach logs and audit records).
func (s *Schema) Validate(payload []byte) error {
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(payload))
	if err != nil {
		return fmt.Errorf("%w: the payload is not JSON: %v", ErrSchemaViolation, err)
	}
	err = s.s.Validate(v)
	var ve *jsonschema.ValidationError
	if errors.As(err, &ve) {
		return fmt.Errorf("%w: %s: %s", ErrSchemaViolation, s.Name, firstCause(ve))
	}
	if err != nil {
		return fmt.Errorf("%w: %s: %v", ErrSchemaViolation, s.Name, err)
	}
	return nil
}

// firstCause is where the first (deepest) failure is and the keyword it
// fails: the messages of the kinds quote the payload's values.
func firstCause(ve *jsonschema.ValidationError) string {
	for len(ve.Causes) > 0 {
		ve = ve.Causes[0]
	}
	loc := "/" + strings.Join(ve.InstanceLocation, "/")
	kw := strings.Join(ve.ErrorKind.KeywordPath(), "/")
	if kw == "" {
		kw = "the schema"
	}
	return fmt.Sprintf("%s fails %s", loc, kw)
}
