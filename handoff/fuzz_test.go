package handoff_test

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stackctl/stack/handoff"
)

// FuzzOpen: whatever a sender deposits, Open refuses it with an error or
// returns a handoff whose sender's passport checked out; it never panics.
func FuzzOpen(f *testing.F) {
	w := newWorld(f)
	sender, recipient := mustKeys(f), mustKeys(f)
	pp := w.passportFor("scraper", sender, time.Hour)
	tok, _, err := handoff.Seal(handoff.SealRequest{From: "scraper", To: "drafter", Schema: "s", Passport: pp, Payload: json.RawMessage(`{"a":1}`), TTL: time.Hour}, sender, recipient.Public().Enc)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(tok)
	f.Add("a.b.c.d.e")
	f.Fuzz(func(t *testing.T, tok string) {
		got, err := handoff.Open(tok, handoff.OpenOptions{Recipient: "drafter", Keys: recipient, CheckPassport: w.check})
		if err == nil && (got.From != "scraper" || got.To != "drafter") {
			t.Fatalf("opened %+v", got.Claims)
		}
	})
}
