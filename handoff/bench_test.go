package handoff_test

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/handoff"
)

// What sealing and opening cost, for a 1 KiB payload: the part of a
// handoff's latency that is cryptography (P-256 ECDH, Ed25519, AES-GCM)
// rather than the round trips to the control plane.
func BenchmarkSealOpen(b *testing.B) {
	w := newWorld(b)
	scraper, _ := handoff.GenerateKeys()
	drafter, _ := handoff.GenerateKeys()
	pass := w.passportFor("scraper", scraper, time.Hour)
	payload, _ := json.Marshal(map[string]string{"pad": strings.Repeat("x", 1000)})
	req := handoff.SealRequest{From: "scraper", To: "drafter", Schema: "notes/v1", Passport: pass, Payload: payload, TTL: time.Hour}
	tok, _, err := handoff.Seal(req, scraper, drafter.Public().Enc)
	if err != nil {
		b.Fatal(err)
	}
	b.Run("seal", func(b *testing.B) {
		for b.Loop() {
			if _, _, err := handoff.Seal(req, scraper, drafter.Public().Enc); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		for b.Loop() {
			if _, err := handoff.Open(tok, handoff.OpenOptions{Recipient: "drafter", Keys: drafter, CheckPassport: w.check}); err != nil {
				b.Fatal(err)
			}
		}
	})
}
