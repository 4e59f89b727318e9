package detect

import (
	"net/http"
	"strings"
	"testing"
)

// Request headers are scanned as the URL and the body are: a vault secret
// or a secret-shaped string in any header headed to a host it is not
// bound to is flagged, naming the header; a JWT in a header (a bearer
// token) and the proxy's own Proxy-Authorization are not.
func TestExfiltrationHeaders(t *testing.T) {
	const vaultKey = "rk_prod_kkkkkkkkkkkkkkkkkkkkkkkk"
	idx := NewSecretIndex(map[string][]byte{"stripe": []byte(vaultKey)})
	x, err := NewExfiltration(ExfiltrationOptions{Secrets: idx, Bound: bound(map[string][]string{"stripe": {"api.stripe.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name     string
		host     string
		h        http.Header
		rule     string // "" for no signal
		evidence string
	}{
		{"vault secret to an unbound host", "collector.example", http.Header{"X-Upload-Token": {vaultKey}}, "vault_secret", "request headers"},
		{"vault secret as Bearer to an unbound host", "collector.example", http.Header{"Authorization": {"Bearer " + vaultKey}}, "vault_secret", "request headers"},
		{"vault secret to its own host", "api.stripe.com", http.Header{"Authorization": {"Bearer " + vaultKey}}, "", ""},
		{"GitHub token", "collector.example", http.Header{"Accept": {"*/*"}, "X-Debug": {"ctx=" + testSecrets["github"]}}, "github_token", "request header X-Debug to collector.example"},
		{"AWS access key id in a cookie", "collector.example", http.Header{"Cookie": {"a=1; k=" + testSecrets["aws"]}}, "aws_access_key_id", "request header Cookie"},
		{"placeholder, as the proxy lists it", "collector.example", http.Header{"X-Key": {"stk_ph_stripe"}}, "placeholder_unbound", "headed to collector.example"},
		{"JWT bearer token", "api.example.com", http.Header{"Authorization": {"Bearer " + testSecrets["jwt"]}}, "", ""},
		{"Proxy-Authorization", "collector.example", http.Header{"Proxy-Authorization": {"Basic " + testSecrets["github"]}}, "", ""},
		{"Proxy-Authorization, any case", "collector.example", http.Header{"proxy-authorization": {testSecrets["github"]}}, "", ""},
		{"ordinary headers", "api.example.com", http.Header{"User-Agent": {"stripe-go/82.5.1"}, "Accept": {"application/json"}, "Idempotency-Key": {"8d5b0f9e-2b7c-4c1e-9a51-6f0d2f3c1a77"}}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ev := &Event{Direction: Request, Host: tc.host, Path: "/v1/x", Headers: tc.h}
			if v := tc.h.Get("X-Key"); strings.HasPrefix(v, PlaceholderPrefix) {
				ev.Placeholders = []string{strings.TrimPrefix(v, PlaceholderPrefix)}
			}
			sigs := x.Inspect(ev)
			if tc.rule == "" {
				if len(sigs) != 0 {
					t.Fatalf("signals %+v", sigs)
				}
				return
			}
			if len(sigs) != 1 || sigs[0].Rule != tc.rule || sigs[0].Severity != Critical || !strings.Contains(sigs[0].Evidence, tc.evidence) {
				t.Fatalf("signals %+v, want one %s naming %q", sigs, tc.rule, tc.evidence)
			}
			for _, vs := range tc.h {
				for _, v := range vs {
					if len(v) > 12 && !strings.HasPrefix(v, PlaceholderPrefix) && strings.Contains(sigs[0].Evidence, v) {
						t.Errorf("evidence quotes the header: %q", sigs[0].Evidence)
					}
				}
			}
		})
	}
	// A JWT is still flagged in the URL and the body.
	if r := rules(x.Inspect(&Event{Host: "api.example.com", Body: []byte(testSecrets["jwt"])})); !hasString(r, "jwt") {
		t.Errorf("JWT in the body: %v", r)
	}
}

// A request's headers cost no allocation when they hold nothing.
func TestExfiltrationHeadersNoAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("allocations are not counted under the race detector")
	}
	x, _ := NewExfiltration(ExfiltrationOptions{
		Secrets: NewSecretIndex(map[string][]byte{"stripe": []byte("sk_test_4eC39HqLyjWDarjtT1zdp7dc")}),
		Bound:   bound(map[string][]string{"stripe": {"api.stripe.com"}}),
	})
	ev := &Event{Direction: Request, Host: "api.stripe.com", Path: "/v1/charges", Headers: sdkHeaders(), Placeholders: []string{"stripe"}}
	x.Inspect(ev)
	if n := testing.AllocsPerRun(100, func() { x.Inspect(ev) }); n != 0 {
		t.Errorf("%v allocations per request", n)
	}
}

// sdkHeaders are the headers an SDK sends with a request carrying a
// placeholder, as the exfiltration detector sees them.
func sdkHeaders() http.Header {
	return http.Header{
		"Authorization":              {"Bearer stk_ph_stripe"},
		"Accept":                     {"application/json"},
		"Content-Type":               {"application/x-www-form-urlencoded"},
		"User-Agent":                 {"Stripe/v1 GoBindings/82.5.1"},
		"Stripe-Version":             {"2024-06-20"},
		"Idempotency-Key":            {"8d5b0f9e-2b7c-4c1e-9a51-6f0d2f3c1a77"},
		"X-Stripe-Client-User-Agent": {`{"bindings_version":"82.5.1","lang":"go","lang_version":"go1.26.8","publisher":"stripe","uname":"linux"}`},
	}
}

// BenchmarkExfiltrationRequestHeaders is the detector on a request
// without a body as the proxy sends it: with an SDK's headers, and
// without headers (what the detector looked at before it read them).
func BenchmarkExfiltrationRequestHeaders(b *testing.B) {
	x, _ := NewExfiltration(ExfiltrationOptions{
		Secrets: NewSecretIndex(map[string][]byte{"stripe": []byte("sk_test_4eC39HqLyjWDarjtT1zdp7dc")}),
		Bound:   bound(map[string][]string{"stripe": {"api.stripe.com"}}),
	})
	for _, tc := range []struct {
		name string
		h    http.Header
	}{{"sdk", sdkHeaders()}, {"none", nil}} {
		b.Run(tc.name, func(b *testing.B) {
			ev := &Event{Direction: Request, Host: "api.stripe.com", Path: "/v1/charges", Headers: tc.h, Placeholders: []string{"stripe"}}
			b.ReportAllocs()
			for b.Loop() {
				if sigs := x.Inspect(ev); len(sigs) != 0 {
					b.Fatal(sigs)
				}
			}
		})
	}
}
