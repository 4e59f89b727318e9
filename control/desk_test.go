package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/handoff/desk"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

// The sidecar's handoff desk against a real control plane and real
// control clients: sending, receiving once, the passport's grant and
// key, schema changes, and a control plane that goes away.
func TestHandoffDesk(t *testing.T) {
	f := newFixture(t, func(o *control.Options) {
		o.Handoffs = &dropoff.Box{Store: o.Store, KMS: kmstest.Local(t)}
	})
	reader := passport.Grant{Hosts: []string{"api.example.com"}}
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "scraper",
		Scope: passport.Scope{reader, {Handoff: &passport.HandoffGrant{To: []string{"drafter"}, Schemas: []string{"notes/*"}}}}}}, nil)
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "drafter", Scope: passport.Scope{reader}}}, nil)
	putSchema := func(doc string) {
		f.must(operatorToken, http.MethodPost, control.PathHandoffSchemas, control.HandoffSchema{Name: "notes/v1", Schema: json.RawMessage(doc)}, nil)
	}
	putSchema(`{"type":"object","required":["a"]}`)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	scraper := f.startSidecar(ctx, f.ts.URL, "scraper", "", nil)
	drafter := f.startSidecar(ctx, f.ts.URL, "drafter", "", nil)
	claimsOf := func(s *sidecar) (*passport.Claims, string) {
		t.Helper()
		tok, err := s.Passport()
		if err != nil {
			t.Fatal(err)
		}
		c, err := s.verifier.Verify(tok)
		if err != nil {
			t.Fatal(err)
		}
		return c, tok
	}
	sc, stok := claimsOf(scraper)
	dc, dtok := claimsOf(drafter)
	out, in := &desk.Desk{Control: scraper.Client, Verifier: scraper.verifier, SchemaTTL: time.Millisecond}, &desk.Desk{Control: drafter.Client, Verifier: drafter.verifier}

	sent, err := out.Send(ctx, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{ "a": 1 }`)})
	if err != nil {
		t.Fatal(err)
	}
	if time.Until(sent.Expires) < desk.DefaultTTL-time.Minute {
		t.Errorf("expires %s: want the default ttl", sent.Expires)
	}
	waiting, err := in.Inbox(ctx, dc)
	if err != nil || len(waiting) != 1 || waiting[0].ID != sent.ID || waiting[0].From != "scraper" {
		t.Fatalf("inbox %+v, %v", waiting, err)
	}
	got, err := in.Fetch(ctx, dc, sent.ID)
	if err != nil {
		t.Fatal(err)
	}
	if got.From != "scraper" || string(got.Payload) != `{"a":1}` || got.PayloadSHA256 != sent.PayloadSHA256 {
		t.Fatalf("received %+v; sent %+v", got, sent)
	}
	if _, err := in.Fetch(ctx, dc, sent.ID); !errors.Is(err, desk.ErrGone) {
		t.Fatalf("a second fetch: %v", err)
	}

	for name, tc := range map[string]struct {
		d      *desk.Desk
		claims *passport.Claims
		token  string
		out    desk.Outgoing
		want   error
	}{
		"no grant to that agent":   {out, sc, stok, desk.Outgoing{To: "planner", Schema: "notes/v1", Payload: json.RawMessage(`{"a":1}`)}, desk.ErrNotGranted},
		"no grant for that schema": {out, sc, stok, desk.Outgoing{To: "drafter", Schema: "deploy/v1", Payload: json.RawMessage(`{"a":1}`)}, desk.ErrNotGranted},
		"no handoff grant at all":  {in, dc, dtok, desk.Outgoing{To: "scraper", Schema: "notes/v1", Payload: json.RawMessage(`{"a":1}`)}, desk.ErrNotGranted},
		"another agent's passport": {out, dc, dtok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{"a":1}`)}, desk.ErrNotGranted},
		"an unknown schema":        {out, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v2", Payload: json.RawMessage(`{"a":1}`)}, desk.ErrUnknownSchema},
		"a payload not JSON":       {out, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{a}`)}, desk.ErrInvalid},
		"a ttl too long":           {out, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{"a":1}`), TTL: desk.TTL(handoff.MaxTTL + time.Hour)}, desk.ErrInvalid},
		"a schema violation":       {out, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{"b":1}`)}, handoff.ErrSchemaViolation},
	} {
		if _, err := tc.d.Send(ctx, tc.claims, tc.token, tc.out); !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
	}
	if _, err := in.Inbox(ctx, sc); !errors.Is(err, desk.ErrNotGranted) {
		t.Errorf("another agent's inbox: %v", err)
	}

	// A changed schema applies once the desk's copy is older than
	// SchemaTTL.
	putSchema(`{"type":"object","required":["b"]}`)
	time.Sleep(5 * time.Millisecond)
	if _, err := out.Send(ctx, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{"a":1}`)}); !errors.Is(err, handoff.ErrSchemaViolation) {
		t.Errorf("after the schema changed: %v", err)
	}

	// With the control plane gone, the desk says so; nothing is sent.
	// (Server.Close would wait for the clients' feeds to end.)
	f.ts.Listener.Close()
	f.ts.CloseClientConnections()
	if _, err := out.Send(ctx, sc, stok, desk.Outgoing{To: "drafter", Schema: "notes/v1", Payload: json.RawMessage(`{"b":1}`)}); !errors.Is(err, desk.ErrUnavailable) {
		t.Errorf("control plane down: %v", err)
	}
}
