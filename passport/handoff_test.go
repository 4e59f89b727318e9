package passport_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/stackctl/stack/passport"
)

func TestHandoffGrant(t *testing.T) {
	s, err := passport.ParseScope([]byte(`
- hosts: [api.example.com]
- handoff:
    to: [drafter, deploy-*]
    schemas: [findings/*, deploy/v1]
`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		to, schema string
		ok         bool
		why        string
	}{
		{"drafter", "findings/v1", true, ""},
		{"deploy-prod", "deploy/v1", true, ""},
		{"drafter", "deploy/v2", false, "handoff of schema deploy/v2 to drafter not granted"},
		{"scraper", "findings/v1", false, "handoff to scraper not granted"},
	} {
		d := s.AllowsHandoff(tc.to, tc.schema)
		if d.Allowed != tc.ok || d.Reason != tc.why {
			t.Errorf("AllowsHandoff(%s, %s) = %+v, want allowed %v, reason %q", tc.to, tc.schema, d, tc.ok, tc.why)
		}
		if d.Allowed && d.Grant != 1 {
			t.Errorf("AllowsHandoff(%s, %s): grant %d, want 1", tc.to, tc.schema, d.Grant)
		}
	}
	// A handoff grant allows no request, whatever the host.
	if d := s.Allows(passport.Request{Host: "drafter", Method: "GET", Path: "/"}); d.Allowed {
		t.Errorf("a handoff grant allowed a request: %+v", d)
	}
	// A scope without handoff grants allows no handoff.
	only := passport.Scope{{Hosts: []string{"api.example.com"}}}
	if d := only.AllowsHandoff("drafter", "findings/v1"); d.Allowed || d.Reason != "no handoff grant" {
		t.Errorf("no handoff grant: %+v", d)
	}
}

func TestHandoffGrantValidation(t *testing.T) {
	_, err := passport.ParseScope([]byte(`
- hosts: [api.example.com]
  handoff: {to: [drafter], schemas: [findings/v1]}
- handoff: {to: [], schemas: []}
- handoff: {to: ["a b"], schemas: ["x?y"]}
`))
	if !errors.Is(err, passport.ErrInvalidScope) {
		t.Fatalf("want ErrInvalidScope, got %v", err)
	}
	for _, want := range []string{
		"grant[0].handoff: a handoff grant names no hosts",
		"grant[1].handoff.to: at least one recipient",
		"grant[1].handoff.schemas: at least one schema",
		`grant[2].handoff.to[0] "a b": character ' ' not allowed`,
		`grant[2].handoff.schemas[0] "x?y": character '?' not allowed`,
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}
}

func TestHandoffGrantCovers(t *testing.T) {
	parent := passport.Scope{
		{Hosts: []string{"api.example.com"}},
		{Handoff: &passport.HandoffGrant{To: []string{"deploy-*"}, Schemas: []string{"deploy/*"}}},
	}
	for _, tc := range []struct {
		name  string
		child passport.Grant
		ok    bool
	}{
		{"narrower", passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"deploy-prod"}, Schemas: []string{"deploy/v1"}}}, true},
		{"same", passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"deploy-*"}, Schemas: []string{"deploy/*"}}}, true},
		{"other recipient", passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"drafter"}, Schemas: []string{"deploy/v1"}}}, false},
		{"wider recipient", passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"*"}, Schemas: []string{"deploy/v1"}}}, false},
		{"other schema", passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"deploy-prod"}, Schemas: []string{"findings/v1"}}}, false},
		{"request grant", passport.Grant{Hosts: []string{"api.example.com"}}, true},
	} {
		err := parent.Covers(passport.Scope{tc.child})
		if (err == nil) != tc.ok {
			t.Errorf("%s: Covers = %v, want ok %v", tc.name, err, tc.ok)
		}
	}
	// A handoff grant in the parent covers no request grant.
	handoffOnly := passport.Scope{{Handoff: &passport.HandoffGrant{To: []string{"*"}, Schemas: []string{"*"}}}}
	if err := handoffOnly.Covers(passport.Scope{{Hosts: []string{"api.example.com"}}}); err == nil {
		t.Error("a handoff grant covered a request grant")
	}
}
