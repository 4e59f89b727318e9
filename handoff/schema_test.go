package handoff_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stackctl/stack/handoff"
)

const findingsSchema = `{
  "$schema": "https://json-schema.org/draft/2020-12/schema",
  "type": "object",
  "required": ["url", "findings"],
  "additionalProperties": false,
  "properties": {
    "url": {"type": "string", "format": "uri"},
    "contact": {"type": "string", "format": "email"},
    "findings": {"type": "array", "prefixItems": [{"type": "string"}], "items": {"type": "string"}, "maxItems": 3}
  }
}`

func TestSchema(t *testing.T) {
	s, err := handoff.CompileSchema("findings/v1", []byte(findingsSchema))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Validate([]byte(`{"url":"https://example.com/a","findings":["x","y"]}`)); err != nil {
		t.Fatalf("a good payload: %v", err)
	}
	for name, tc := range map[string]struct{ payload, where string }{
		"missing field": {`{"url":"https://example.com/a"}`, "/ fails required"},
		"wrong type":    {`{"url":"https://example.com/a","findings":[1]}`, "/findings/0 fails"},
		"extra field":   {`{"url":"https://example.com/a","findings":[],"ssn":"078-05-1120"}`, "/ fails additionalProperties"},
		"format":        {`{"url":"https://example.com/a","findings":[],"contact":"secret-not-an-email"}`, "/contact fails format"},
		"too many":      {`{"url":"https://example.com/a","findings":["a","b","c","d"]}`, "/findings fails maxItems"},
		"not JSON":      {`{"url":`, "not JSON"},
	} {
		err := s.Validate([]byte(tc.payload))
		if !errors.Is(err, handoff.ErrSchemaViolation) || !strings.Contains(err.Error(), tc.where) {
			t.Errorf("%s: %v, want a violation at %q", name, err, tc.where)
		}
		if err != nil && (strings.Contains(err.Error(), "078-05-1120") || strings.Contains(err.Error(), "secret-not-an-email")) {
			t.Errorf("%s: the error quotes the payload: %v", name, err)
		}
	}
	for name, tc := range map[string]struct{ name, doc string }{
		"remote $ref": {"r", `{"$ref": "https://example.com/schema.json"}`},
		"file $ref":   {"f", `{"$ref": "file:///etc/passwd"}`},
		"not JSON":    {"n", `{`},
		"bad keyword": {"k", `{"type": 12}`},
		"bad name":    {"Findings V1", `{}`},
		"too large":   {"big", `{"description":"` + strings.Repeat("x", handoff.MaxSchemaSize) + `"}`},
	} {
		if _, err := handoff.CompileSchema(tc.name, []byte(tc.doc)); !errors.Is(err, handoff.ErrSchema) {
			t.Errorf("%s: %v, want ErrSchema", name, err)
		}
	}
	// A $ref inside the document is fine.
	if _, err := handoff.CompileSchema("local", []byte(`{"$defs":{"s":{"type":"string"}},"$ref":"#/$defs/s"}`)); err != nil {
		t.Errorf("a local $ref: %v", err)
	}
}
