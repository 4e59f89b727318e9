package passport

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func TestVerifierFetchesKeysForAnUnknownKid(t *testing.T) {
	now := time.Now()
	clk := func() time.Time { return now }
	keys, err := GenerateKeySet(now)
	if err != nil {
		t.Fatal(err)
	}
	iss := &Issuer{Keys: keys, Now: clk}
	scope := Scope{{Hosts: []string{"api.example.com"}}}
	old, _, err := iss.Issue(context.Background(), IssueRequest{Agent: "a", Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	calls := 0
	var fail error
	v, err := NewVerifier(VerifierOptions{Keys: keys.JWKS(now), Now: clk, KeyRefresh: func() (jose.JSONWebKeySet, error) {
		calls++
		return keys.JWKS(now), fail
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(old); err != nil || calls != 0 {
		t.Fatalf("known kid: %v, %d fetches", err, calls)
	}
	// The issuer rotates: the new kid is fetched once, then known.
	if _, err := keys.Rotate(now, time.Hour); err != nil {
		t.Fatal(err)
	}
	fresh, _, err := iss.Issue(context.Background(), IssueRequest{Agent: "a", Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(fresh); err != nil || calls != 1 {
		t.Fatalf("rotated kid: %v, %d fetches", err, calls)
	}
	if _, err := v.Verify(old); err != nil {
		t.Fatalf("old key kept through its overlap: %v", err)
	}
	// Made-up kids do not make it fetch again within the interval.
	if _, err := keys.Rotate(now, time.Hour); err != nil {
		t.Fatal(err)
	}
	third, _, err := iss.Issue(context.Background(), IssueRequest{Agent: "a", Scope: scope})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := v.Verify(third); !errors.Is(err, ErrUnknownKey) || calls != 1 {
		t.Fatalf("within the interval: %v, %d fetches", err, calls)
	}
	now = now.Add(11 * time.Second)
	fail = errors.New("issuer away")
	if _, err := v.Verify(third); !errors.Is(err, ErrUnknownKey) || calls != 2 {
		t.Fatalf("fetch failing: %v, %d fetches", err, calls)
	}
	now = now.Add(11 * time.Second)
	fail = nil
	if _, err := v.Verify(third); err != nil || calls != 3 {
		t.Fatalf("after the interval: %v, %d fetches", err, calls)
	}
}
