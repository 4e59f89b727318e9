package main

import (
	"context"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stackctl/stack/audit"
)

// match reads a real audit log: an answered request needs both of its
// records, a 200 request record counts and another status does not, and
// a credential access with no answer is a request under way at the kill.
func TestCrashMatch(t *testing.T) {
	path := filepath.Join(t.TempDir(), "audit.db")
	l, err := audit.Open(path, audit.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	add := func(action, p string, status int) {
		t.Helper()
		if _, err := l.Append(ctx, audit.Record{Action: action, AgentID: benchAgent, Host: benchHost, Method: "GET", Path: p, Status: status}); err != nil {
			t.Fatal(err)
		}
	}
	access, request := audit.ActionCredentialAccess, audit.ActionRequest
	add(access, "/v1/balance/0/0", 0)
	add(request, "/v1/balance/0/0", 200) // complete
	add(access, "/v1/balance/0/1", 0)    // its request record lost
	add(request, "/v1/balance/1/0", 200) // its credential access lost
	add(access, "/v1/balance/1/1", 0)
	add(request, "/v1/balance/1/1", 502) // not the answer the client read
	add(access, "/v1/balance/2/0", 0)    // under way at the kill
	add(audit.ActionDetectorFired, "/v1/balance/0/0", 0)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	var r crashRound
	answered := []string{"/v1/balance/0/0", "/v1/balance/0/1", "/v1/balance/1/0", "/v1/balance/1/1"}
	if err := r.match(ctx, path, answered); err != nil {
		t.Fatal(err)
	}
	r.Answered, r.VerifyBefore, r.Verify = len(answered), "ok", "ok"
	if r.WithAccess != 3 || r.MissingAccess != 1 || r.WithRequest != 2 || r.MissingRequest != 2 || r.InFlight != 1 {
		t.Fatalf("got %+v", r)
	}
	want := []string{
		"/v1/balance/0/1: no request",
		"/v1/balance/1/0: no credential_access",
		"/v1/balance/1/1: no request",
	}
	if !slices.Equal(r.Missing, want) {
		t.Fatalf("missing %q, want %q", r.Missing, want)
	}
	if r.pass() {
		t.Fatal("a round with missing records passed")
	}

	var whole crashRound
	if err := whole.match(ctx, path, answered[:1]); err != nil {
		t.Fatal(err)
	}
	whole.Answered, whole.VerifyBefore, whole.Verify = 1, "ok", "ok"
	if !whole.pass() || whole.InFlight != 3 {
		t.Fatalf("every answered request recorded: %+v", whole)
	}
	whole.Verify = "FAIL seq 3: modified: hash mismatch"
	if whole.pass() {
		t.Fatal("a round whose chain does not verify passed")
	}
	if (crashRound{VerifyBefore: "ok", Verify: "ok"}).pass() {
		t.Fatal("a round with no answer to check passed")
	}
}

// More missing requests than the report lists are still all counted.
func TestCrashTallyBoundsExamples(t *testing.T) {
	var r crashRound
	var answered []string
	for i := range 3 * crashExamples {
		answered = append(answered, "/v1/balance/0/"+strings.Repeat("1", i+1))
	}
	r.tally(map[string]int{answered[0]: hasAccess | hasRequest}, answered)
	if r.MissingAccess != len(answered)-1 || r.MissingRequest != len(answered)-1 || len(r.Missing) != crashExamples {
		t.Fatalf("got %+v", r)
	}
}
