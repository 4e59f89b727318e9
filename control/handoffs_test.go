package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/control/dropoff"
	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

func TestHandoffDropOff(t *testing.T) {
	var box *dropoff.Box
	f := newFixture(t, func(o *control.Options) {
		box = &dropoff.Box{Store: o.Store, KMS: kmstest.Local(t)}
		o.Handoffs = box
	})
	for _, a := range []string{"scraper", "drafter", "planner"} {
		f.register(a)
	}
	scraper, drafter, planner := f.join("scraper"), f.join("drafter"), f.join("planner")
	// The control plane never opens a handoff: any opaque token does here
	// (package handoff's tests seal real ones).
	const secret = "PLAINTEXT-NEVER-STORED"
	token := "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.key.iv.c2VhbGVk.tag"
	deposit := control.HandoffDeposit{To: "drafter", Schema: "findings/v1", Token: token, TTL: control.Duration(time.Hour), PayloadHash: strings.Repeat("ab", 32)}
	var m control.HandoffMeta
	f.must(scraper.Token, http.MethodPost, control.PathHandoffs, deposit, &m)
	if m.From != "scraper" || m.To != "drafter" || m.ID == "" {
		t.Fatalf("deposited %+v", m)
	}
	var inbox []control.HandoffMeta
	f.must(drafter.Token, http.MethodGet, control.PathHandoffs, nil, &inbox)
	if len(inbox) != 1 || inbox[0].ID != m.ID {
		t.Fatalf("drafter's inbox: %+v", inbox)
	}
	f.must(planner.Token, http.MethodGet, control.PathHandoffs, nil, &inbox)
	if len(inbox) != 0 {
		t.Fatalf("planner sees another's handoffs: %+v", inbox)
	}
	fetch := "/v1/sidecar/handoffs/" + m.ID + "/fetch"
	if st, why := f.call(planner.Token, http.MethodPost, fetch, nil, nil); st != http.StatusNotFound {
		t.Fatalf("another agent's fetch: %d %s", st, why)
	}
	var got control.HandoffFetched
	f.must(drafter.Token, http.MethodPost, fetch, nil, &got)
	if got.Token != token || got.From != "scraper" {
		t.Fatalf("fetched %+v", got)
	}
	if st, why := f.call(drafter.Token, http.MethodPost, fetch, nil, nil); st != http.StatusGone || why != control.ReasonHandoffGone {
		t.Fatalf("a second fetch: %d %s", st, why)
	}

	// Refusals, each with a reason and a record.
	for name, tc := range map[string]struct {
		d      control.HandoffDeposit
		status int
	}{
		"unknown recipient": {control.HandoffDeposit{To: "nobody", Schema: "s", Token: token, TTL: control.Duration(time.Hour)}, http.StatusNotFound},
		"oversized":         {control.HandoffDeposit{To: "drafter", Schema: "s", Token: strings.Repeat("a", handoff.MaxSize+1), TTL: control.Duration(time.Hour)}, http.StatusRequestEntityTooLarge},
		"no ttl":            {control.HandoffDeposit{To: "drafter", Schema: "s", Token: token}, http.StatusBadRequest},
		"bad schema name":   {control.HandoffDeposit{To: "drafter", Schema: "Findings V1", Token: token, TTL: control.Duration(time.Hour)}, http.StatusBadRequest},
		"ttl too long":      {control.HandoffDeposit{To: "drafter", Schema: "s", Token: token, TTL: control.Duration(handoff.MaxTTL + time.Hour)}, http.StatusBadRequest},
	} {
		if st, _ := f.call(scraper.Token, http.MethodPost, control.PathHandoffs, tc.d, nil); st != tc.status {
			t.Errorf("%s: %d, want %d", name, st, tc.status)
		}
	}
	if n := len(f.audit.actions(control.ActionHandoffRefused)); n != 6 {
		t.Errorf("%d refusal records, want 6 (second fetch and five deposits)", n)
	}

	// A revoked sender's undelivered handoffs are withdrawn; a revoked
	// recipient gets none.
	f.must(planner.Token, http.MethodPost, control.PathHandoffs, control.HandoffDeposit{To: "drafter", Schema: "s", Token: token, TTL: control.Duration(time.Hour)}, &m)
	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{Agent: "planner", Reason: "compromised"}, nil)
	f.must(drafter.Token, http.MethodGet, control.PathHandoffs, nil, &inbox)
	if len(inbox) != 0 {
		t.Fatalf("a revoked sender's handoff still waits: %+v", inbox)
	}
	if w := f.audit.actions(control.ActionHandoffWithdrawn); len(w) != 1 || !strings.Contains(w[0].Detail, m.ID) {
		t.Fatalf("withdrawal records: %+v", w)
	}
	f.must(scraper.Token, http.MethodPost, control.PathHandoffs, deposit, &m)
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/drafter/disable", control.DisableRequest{Reason: "test"}, nil)
	if st, _ := f.call(drafter.Token, http.MethodPost, "/v1/sidecar/handoffs/"+m.ID+"/fetch", nil, nil); st/100 == 2 {
		t.Fatal("a disabled recipient fetched a handoff")
	}

	// Operators see metadata; records hold the hash; nothing holds a payload.
	var all []control.HandoffMeta
	f.must(operatorToken, http.MethodGet, control.PathHandoffsAll, nil, &all)
	if len(all) != 1 {
		t.Fatalf("operator list: %+v", all)
	}
	for _, r := range f.audit.actions(control.ActionHandoffDeposited) {
		if r.AgentID == "scraper" && !strings.Contains(r.Detail, deposit.PayloadHash) {
			t.Errorf("a deposit record without the payload's hash: %s", r.Detail)
		}
	}
	// The test's temporary directories: the store, the vault, the KMS key.
	checked := false
	filepath.Walk(filepath.Dir(t.TempDir()), func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			checked = checked || fi.Name() == "control.db"
			if b, _ := os.ReadFile(p); bytes.Contains(b, []byte(secret)) || bytes.Contains(b, []byte("c2VhbGVk")) {
				t.Errorf("%s holds a handoff's token or content", p)
			}
		}
		return nil
	})
	if !checked {
		t.Fatal("the store's file was not among those searched")
	}
}

func TestHandoffSchemas(t *testing.T) {
	f := newFixture(t, nil)
	f.register("drafter")
	drafter := f.join("drafter")
	good := control.HandoffSchema{Name: "findings/v1", Schema: []byte(`{"type":"object","required":["url"]}`)}
	var put control.HandoffSchema
	f.must(operatorToken, http.MethodPost, control.PathHandoffSchemas, good, &put)
	if put.Updated.IsZero() {
		t.Fatalf("put %+v", put)
	}
	for name, hs := range map[string]control.HandoffSchema{
		"remote $ref": {Name: "r", Schema: []byte(`{"$ref":"https://example.com/s.json"}`)},
		"bad keyword": {Name: "k", Schema: []byte(`{"type":12}`)},
		"bad name":    {Name: "Bad Name", Schema: []byte(`{}`)},
	} {
		if st, why := f.call(operatorToken, http.MethodPost, control.PathHandoffSchemas, hs, nil); st != http.StatusBadRequest {
			t.Errorf("%s: %d %s", name, st, why)
		}
	}
	if st, _ := f.call(drafter.Token, http.MethodPost, control.PathHandoffSchemas, good, nil); st != http.StatusForbidden {
		t.Errorf("a sidecar put a schema: %d", st)
	}
	var list []control.HandoffSchema
	f.must(drafter.Token, http.MethodGet, control.PathHandoffSchemas, nil, &list)
	if len(list) != 1 || list[0].Name != "findings/v1" || string(list[0].Schema) != string(good.Schema) {
		t.Fatalf("schemas a sidecar reads: %+v", list)
	}
	if n := len(f.audit.actions(control.ActionHandoffSchemaPut)); n != 1 {
		t.Fatalf("%d schema records", n)
	}
}

// TestHandoffThroughTheControlPlane seals with the keys the control plane
// hands the sender's sidecar, deposits, fetches and opens with the keys
// the recipient's sidecar got: the passports confirm the signing keys.
func TestHandoffThroughTheControlPlane(t *testing.T) {
	f := newFixture(t, func(o *control.Options) {
		o.Handoffs = &dropoff.Box{Store: o.Store, KMS: kmstest.Local(t)}
	})
	f.register("scraper")
	f.register("drafter")
	scraper, drafter := f.join("scraper"), f.join("drafter")
	passportOf := func(cred control.Credential) (control.PassportResponse, *handoff.AgentKeys) {
		t.Helper()
		var pr control.PassportResponse
		f.must(cred.Token, http.MethodPost, control.PathIssue, nil, &pr)
		var keys handoff.AgentKeys
		if err := json.Unmarshal(pr.HandoffKeys, &keys); err != nil {
			t.Fatalf("handoff keys in the passport response: %v", err)
		}
		return pr, &keys
	}
	sp, skeys := passportOf(scraper)
	_, dkeys := passportOf(drafter)
	v := f.verifier()
	claims, err := v.Verify(sp.Passport)
	if err != nil || claims.Confirmation == nil || claims.Confirmation.JKT != skeys.JKT() {
		t.Fatalf("the sender's passport does not confirm its handoff key: %+v %v", claims, err)
	}
	if _, again := passportOf(scraper); again.JKT() != skeys.JKT() {
		t.Fatal("an agent's handoff keys changed between two passports")
	}
	var pub handoff.PublicKeys
	f.must(scraper.Token, http.MethodGet, control.PathHandoffKeys+"/drafter", nil, &pub)
	if pub.Enc.KeyID != dkeys.Public().Enc.KeyID {
		t.Fatal("the public keys served are not the recipient's")
	}
	payload := json.RawMessage(`{"url":"https://example.com/a"}`)
	tok, _, err := handoff.Seal(handoff.SealRequest{From: "scraper", To: "drafter", Schema: "findings/v1", Passport: sp.Passport, Payload: payload, TTL: time.Hour}, skeys, pub.Enc)
	if err != nil {
		t.Fatal(err)
	}
	var m control.HandoffMeta
	f.must(scraper.Token, http.MethodPost, control.PathHandoffs, control.HandoffDeposit{To: "drafter", Schema: "findings/v1", Token: tok, TTL: control.Duration(time.Hour)}, &m)
	var got control.HandoffFetched
	f.must(drafter.Token, http.MethodPost, "/v1/sidecar/handoffs/"+m.ID+"/fetch", nil, &got)
	opened, err := handoff.Open(got.Token, handoff.OpenOptions{Recipient: "drafter", Keys: dkeys, SentAt: got.Deposited,
		CheckPassport: func(p string, _ time.Time) (string, string, error) {
			c, err := v.Verify(p)
			if err != nil {
				return "", "", err
			}
			return c.Subject, c.Confirmation.JKT, nil
		}})
	if err != nil || string(opened.Payload) != string(payload) || opened.From != "scraper" {
		t.Fatalf("opened %+v: %v", opened.Claims, err)
	}
	// The private keys are wrapped in the store.
	kvs, _, _ := f.store.List(context.Background(), "agent-keys/")
	for _, kv := range kvs {
		if bytes.Contains(kv.Value, []byte(`"d"`)) {
			t.Fatalf("%s holds a private key in the clear", kv.Key)
		}
	}
	if len(kvs) != 2 {
		t.Fatalf("%d agents' keys stored", len(kvs))
	}
}

// TestHandoffBetweenSidecars goes through the sidecars' control clients:
// each holds its agent's keys from its passport.
func TestHandoffBetweenSidecars(t *testing.T) {
	f := newFixture(t, func(o *control.Options) {
		o.Handoffs = &dropoff.Box{Store: o.Store, KMS: kmstest.Local(t)}
	})
	f.register("scraper")
	f.register("drafter")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "scraper", "", nil)
	d := f.startSidecar(ctx, f.ts.URL, "drafter", "", nil)
	skeys, pp, err := s.HandoffKeys()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := s.PublicHandoffKeys(ctx, "drafter")
	if err != nil {
		t.Fatal(err)
	}
	tok, _, err := handoff.Seal(handoff.SealRequest{From: "scraper", To: "drafter", Schema: "s", Passport: pp, Payload: json.RawMessage(`{"n":1}`), TTL: time.Minute}, skeys, pub.Enc)
	if err != nil {
		t.Fatal(err)
	}
	m, err := s.DepositHandoff(ctx, control.HandoffDeposit{To: "drafter", Schema: "s", Token: tok, TTL: control.Duration(time.Minute)})
	if err != nil {
		t.Fatal(err)
	}
	inbox, err := d.Inbox(ctx)
	if err != nil || len(inbox) != 1 {
		t.Fatalf("inbox %+v, %v", inbox, err)
	}
	got, err := d.FetchHandoff(ctx, m.ID)
	if err != nil {
		t.Fatal(err)
	}
	dkeys, _, err := d.HandoffKeys()
	if err != nil {
		t.Fatal(err)
	}
	opened, err := handoff.Open(got.Token, handoff.OpenOptions{Recipient: "drafter", Keys: dkeys, SentAt: got.Deposited,
		CheckPassport: func(p string, _ time.Time) (string, string, error) {
			c, err := d.verifier.Verify(p)
			if err != nil {
				return "", "", err
			}
			return c.Subject, c.Confirmation.JKT, nil
		}})
	if err != nil || opened.From != "scraper" {
		t.Fatalf("opened %+v: %v", opened.Claims, err)
	}
	var ae *client.APIError
	if _, err := d.FetchHandoff(ctx, m.ID); !errors.As(err, &ae) || ae.Status != http.StatusGone {
		t.Fatalf("a second fetch: %v", err)
	}
}

func TestHandoffExpiry(t *testing.T) {
	f := newFixture(t, func(o *control.Options) {
		o.Handoffs = &dropoff.Box{Store: o.Store, KMS: kmstest.Local(t), Now: o.Now}
	})
	f.register("scraper")
	f.register("drafter")
	scraper, drafter := f.join("scraper"), f.join("drafter")
	token := "eyJhbGciOiJFQ0RILUVTK0EyNTZLVyJ9.key.iv.c2VhbGVk.tag"
	var fetched, swept control.HandoffMeta
	f.must(scraper.Token, http.MethodPost, control.PathHandoffs, control.HandoffDeposit{To: "drafter", Schema: "s", Token: token, TTL: control.Duration(time.Minute)}, &fetched)
	f.must(scraper.Token, http.MethodPost, control.PathHandoffs, control.HandoffDeposit{To: "drafter", Schema: "s", Token: token, TTL: control.Duration(time.Minute)}, &swept)
	f.clock.Advance(2 * time.Minute)

	// A fetch past the expiry is refused 410 with its reason and a record.
	if st, why := f.call(drafter.Token, http.MethodPost, "/v1/sidecar/handoffs/"+fetched.ID+"/fetch", nil, nil); st != http.StatusGone || why != control.ReasonHandoffExpired {
		t.Fatalf("fetch of an expired handoff: %d %s", st, why)
	}
	if r := f.audit.actions(control.ActionHandoffRefused); len(r) != 1 || r[0].Reason != control.ReasonHandoffExpired {
		t.Fatalf("refusal records: %+v", r)
	}
	// The collector removes both, each with an expiry record, once.
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- f.srv.Run(ctx, time.Hour) }()
	deadline := time.Now().Add(10 * time.Second)
	for len(f.audit.actions(control.ActionHandoffExpired)) < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("expiry records: %+v", f.audit.actions(control.ActionHandoffExpired))
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	<-done
	if n := len(f.audit.actions(control.ActionHandoffExpired)); n != 2 {
		t.Fatalf("%d expiry records, want 2", n)
	}
	for _, r := range f.audit.actions(control.ActionHandoffExpired) {
		if r.AgentID != "scraper" || !strings.Contains(r.Detail, "unfetched") {
			t.Errorf("expiry record %+v", r)
		}
	}
	var all []control.HandoffMeta
	f.must(operatorToken, http.MethodGet, control.PathHandoffsAll, nil, &all)
	if len(all) != 0 {
		t.Fatalf("expired handoffs still listed: %+v", all)
	}
}
