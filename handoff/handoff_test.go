package handoff_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/handoff"
	"github.com/stackctl/stack/handoff/handofftest"
	"github.com/stackctl/stack/passport"
)

// world is an issuer, a verifier of its passports, and two agents.
type world struct {
	t        testing.TB
	issuer   *passport.Issuer
	verifier *passport.Verifier
	revs     map[string]bool
	checkAt  time.Time
}

func newWorld(t testing.TB) *world {
	t.Helper()
	ks, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, issuer: &passport.Issuer{Keys: ks}, revs: map[string]bool{}}
	w.verifier, err = passport.NewVerifier(passport.VerifierOptions{Keys: ks.JWKS(time.Now()), Now: func() time.Time { return w.checkAt }, CacheSize: -1})
	if err != nil {
		t.Fatal(err)
	}
	return w
}

// passportFor issues agent a passport bound to keys (cnf.jkt).
func (w *world) passportFor(agent string, keys *handoff.AgentKeys, ttl time.Duration) string {
	w.t.Helper()
	tok, _, err := w.issuer.Issue(context.Background(), passport.IssueRequest{
		Agent: agent, TTL: ttl,
		Scope:        passport.Scope{{Hosts: []string{"api.example.com"}, Methods: []string{"GET"}}},
		Confirmation: &passport.Confirmation{JKT: keys.JKT()},
	})
	if err != nil {
		w.t.Fatal(err)
	}
	return tok
}

// check verifies a sender's passport as it was at a time.
func (w *world) check(token string, at time.Time) (string, string, error) {
	w.checkAt = at
	c, err := w.verifier.Verify(token)
	if err != nil {
		return "", "", err
	}
	if w.revs[c.Subject] {
		return "", "", errors.New("agent revoked")
	}
	jkt := ""
	if c.Confirmation != nil {
		jkt = c.Confirmation.JKT
	}
	return c.Subject, jkt, nil
}

func mustKeys(t testing.TB) *handoff.AgentKeys {
	t.Helper()
	k, err := handoff.GenerateKeys()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

func TestSealAndOpen(t *testing.T) {
	w := newWorld(t)
	scraper, drafter, other := mustKeys(t), mustKeys(t), mustKeys(t)
	pp := w.passportFor("scraper", scraper, time.Hour)
	payload := json.RawMessage(`{"url":"https://example.com/a","summary":"three findings"}`)
	seal := func(req handoff.SealRequest) string {
		t.Helper()
		tok, _, err := handoff.Seal(req, scraper, drafter.Public().Enc)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	req := handoff.SealRequest{From: "scraper", To: "drafter", Schema: "findings/v1", Passport: pp, Payload: payload, TTL: 10 * time.Minute}
	tok := seal(req)
	if strings.Count(tok, ".") != 4 || strings.Contains(tok, "three findings") {
		t.Fatalf("not a compact JWE hiding its payload: %.80s", tok)
	}
	open := func(tok, recipient string, keys *handoff.AgentKeys, now time.Time) (handoff.Opened, error) {
		return handoff.Open(tok, handoff.OpenOptions{Recipient: recipient, Keys: keys, CheckPassport: w.check, Now: now})
	}
	got, err := open(tok, "drafter", drafter, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if got.From != "scraper" || got.Schema != "findings/v1" || string(got.Payload) != string(payload) || len(got.PayloadHash) != 64 {
		t.Fatalf("opened %+v", got)
	}

	cases := []struct {
		name string
		tok  func() string
		who  string
		keys *handoff.AgentKeys
		now  time.Time
		want error
	}{
		{"another agent's key", func() string { return tok }, "drafter", other, time.Now(), handoff.ErrDecrypt},
		{"another recipient with the right key", func() string { return tok }, "planner", drafter, time.Now(), handoff.ErrWrongRecipient},
		{"tampered ciphertext", func() string { return handofftest.FlipCiphertext(tok) }, "drafter", drafter, time.Now(), handoff.ErrDecrypt},
		{"expired", func() string { return tok }, "drafter", drafter, time.Now().Add(11 * time.Minute), handoff.ErrExpired},
		{"signed by a key the passport does not confirm", func() string {
			t, _, err := handoff.Seal(req, other, drafter.Public().Enc)
			if err != nil {
				panic(err)
			}
			return t
		}, "drafter", drafter, time.Now(), handoff.ErrSender},
		{"another agent's passport", func() string {
			r := req
			r.Passport = w.passportFor("planner", scraper, time.Hour)
			return seal(r)
		}, "drafter", drafter, time.Now(), handoff.ErrSender},
		{"a passport that was expired when sealed", func() string {
			r := req
			r.Passport = w.passportFor("scraper", scraper, time.Minute)
			r.Now = time.Now().Add(2 * time.Hour)
			r.TTL = time.Hour
			return seal(r)
		}, "drafter", drafter, time.Now().Add(2 * time.Hour), handoff.ErrSender},
		{"not a JWE", func() string { return "a.b.c" }, "drafter", drafter, time.Now(), handoff.ErrMalformed},
		{"oversized", func() string { return strings.Repeat("a", handoff.MaxSize+1) }, "drafter", drafter, time.Now(), handoff.ErrTooLarge},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := open(tc.tok(), tc.who, tc.keys, tc.now)
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
	// A sealing time the sender backdated is caught by the deposit time.
	if _, err := handoff.Open(tok, handoff.OpenOptions{Recipient: "drafter", Keys: drafter, CheckPassport: w.check, SentAt: time.Now().Add(-time.Hour)}); !errors.Is(err, handoff.ErrSender) {
		t.Fatalf("iat an hour off the deposit time: %v", err)
	}
	if _, err := handoff.Open(tok, handoff.OpenOptions{Recipient: "drafter", Keys: drafter, CheckPassport: w.check, SentAt: time.Now()}); err != nil {
		t.Fatalf("with the deposit time: %v", err)
	}
	w.revs["scraper"] = true
	if _, err := open(tok, "drafter", drafter, time.Now()); !errors.Is(err, handoff.ErrSender) {
		t.Fatalf("a revoked sender: %v", err)
	}
}

func TestSealRefuses(t *testing.T) {
	k := mustKeys(t)
	good := handoff.SealRequest{From: "a", To: "b", Schema: "s", Passport: "p", Payload: json.RawMessage(`{}`), TTL: time.Minute}
	for name, mut := range map[string]func(*handoff.SealRequest){
		"no recipient": func(r *handoff.SealRequest) { r.To = "" },
		"no ttl":       func(r *handoff.SealRequest) { r.TTL = 0 },
		"ttl too long": func(r *handoff.SealRequest) { r.TTL = handoff.MaxTTL + time.Second },
		"not JSON":     func(r *handoff.SealRequest) { r.Payload = json.RawMessage(`{`) },
		"long schema":  func(r *handoff.SealRequest) { r.Schema = strings.Repeat("s", 200) },
	} {
		r := good
		mut(&r)
		if _, _, err := handoff.Seal(r, k, k.Public().Enc); !errors.Is(err, handoff.ErrMalformed) {
			t.Errorf("%s: %v", name, err)
		}
	}
	big := good
	big.Payload = json.RawMessage(`"` + strings.Repeat("x", handoff.MaxSize) + `"`)
	if _, _, err := handoff.Seal(big, k, k.Public().Enc); !errors.Is(err, handoff.ErrTooLarge) {
		t.Errorf("sealed over the size limit: %v", err)
	}
	if _, _, err := handoff.Seal(good, k, k.Public().Sign); !errors.Is(err, handoff.ErrMalformed) {
		t.Errorf("sealed to a signing key: %v", err)
	}
}

func TestKeysRoundTrip(t *testing.T) {
	k := mustKeys(t)
	b, err := json.Marshal(k)
	if err != nil {
		t.Fatal(err)
	}
	var back handoff.AgentKeys
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.JKT() != k.JKT() || back.Public().Enc.KeyID != k.Public().Enc.KeyID {
		t.Fatal("keys changed in a round trip")
	}
	for _, bad := range []string{`{}`, `{"sign":` + string(mustJSON(t, k.Public().Sign)) + `,"enc":` + string(mustJSON(t, k.Public().Enc)) + `}`} {
		if err := json.Unmarshal([]byte(bad), &back); err == nil {
			t.Errorf("accepted %s", bad)
		}
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
