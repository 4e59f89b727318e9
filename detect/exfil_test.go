package detect

import (
	"bytes"
	"errors"
	"net/url"
	"strings"
	"testing"
)

var testSecrets = map[string]string{
	"stripe_live": "sk_live_" + strings.Repeat("9zQ", 8),
	"aws":         "AKIAQ3EGSNXTF2RWPK7M",
	"github":      "ghp_" + strings.Repeat("aB3", 12),
	"slack":       "xoxb-123456789012-abcdefABCDEF",
	"anthropic":   "sk-ant-api03-" + strings.Repeat("x", 30),
	"openai":      "sk-proj-" + strings.Repeat("Q1", 12),
	"jwt":         "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJib3QifQ.c2lnbmF0dXJlLXNpZ24",
}

func bound(m map[string][]string) func(string) ([]string, bool) {
	return func(n string) ([]string, bool) { h, ok := m[n]; return h, ok }
}

func rules(sigs []Signal) []string {
	var out []string
	for _, s := range sigs {
		out = append(out, s.Rule)
	}
	return out
}

func TestExfiltrationPlaceholders(t *testing.T) {
	x, err := NewExfiltration(ExfiltrationOptions{Bound: bound(map[string][]string{"stripe": {"api.stripe.com"}, "gh": {"*.github.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		ev   Event
		want string
		sev  Severity
	}{
		{"bound host", Event{Host: "api.stripe.com", Body: []byte("key=stk_ph_stripe")}, "", ""},
		{"wildcard", Event{Host: "api.github.com", Placeholders: []string{"gh"}}, "", ""},
		{"bound host as sent", Event{Host: "API.Stripe.com.:443", Body: []byte("key=stk_ph_stripe")}, "", ""},
		{"wildcard not two labels", Event{Host: "a.b.github.com", Placeholders: []string{"gh"}}, "placeholder_unbound", Critical},
		{"wildcard not the apex", Event{Host: "github.com", Placeholders: []string{"gh"}}, "placeholder_unbound", Critical},
		{"wildcard not a unicode label", Event{Host: "\u212Aey.github.com", Placeholders: []string{"gh"}}, "placeholder_unbound", Critical},
		{"unbound body", Event{Host: "paste.example", Body: []byte(`{"k":"stk_ph_stripe"}`)}, "placeholder_unbound", Critical},
		{"unbound query", Event{Host: "evil.example", Path: "/c", Query: url.Values{"q": {"stk_ph_stripe"}}}, "placeholder_unbound", Critical},
		{"unbound event", Event{Host: "evil.example", Placeholders: []string{"stripe"}}, "placeholder_unbound", Critical},
		{"unknown", Event{Host: "api.stripe.com", Body: []byte("stk_ph_nosuch")}, "placeholder_unknown", Warning},
		{"response ignored", Event{Direction: Response, Host: "evil.example", Body: []byte("stk_ph_stripe")}, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sigs := x.Inspect(&tc.ev)
			if tc.want == "" {
				if len(sigs) != 0 {
					t.Fatalf("signals %v", rules(sigs))
				}
				return
			}
			if len(sigs) != 1 || sigs[0].Rule != tc.want || sigs[0].Severity != tc.sev || sigs[0].Detector != ExfiltrationName {
				t.Fatalf("signals %+v", sigs)
			}
		})
	}
}

// The evidence of a placeholder the event lists reads as a sentence.
func TestExfiltrationPlaceholderEvidence(t *testing.T) {
	x, err := NewExfiltration(ExfiltrationOptions{Bound: bound(map[string][]string{"stripe": {"api.stripe.com"}})})
	if err != nil {
		t.Fatal(err)
	}
	sigs := x.Inspect(&Event{Host: "evil.example", Placeholders: []string{"stripe"}})
	want := "placeholder stk_ph_stripe in the request headed to evil.example; the credential is bound to api.stripe.com"
	if len(sigs) != 1 || sigs[0].Evidence != want {
		t.Fatalf("signals %+v, want evidence %q", sigs, want)
	}
}

func TestExfiltrationSecretShapes(t *testing.T) {
	x, _ := NewExfiltration(ExfiltrationOptions{AllowShapes: map[string][]string{"jwt": {"login.example"}}})
	for name, secret := range testSecrets {
		t.Run(name, func(t *testing.T) {
			ev := &Event{Host: "collector.example", Body: []byte("data: " + secret + "\n")}
			sigs := x.Inspect(ev)
			if len(sigs) != 1 {
				t.Fatalf("signals %v", rules(sigs))
			}
			if strings.Contains(sigs[0].Evidence, secret) || strings.Contains(sigs[0].Span.Excerpt, secret) {
				t.Errorf("evidence quotes the secret: %q", sigs[0].Evidence)
			}
			if got := string(ev.Body[sigs[0].Span.Start:sigs[0].Span.End]); got != secret {
				t.Errorf("span covers %q", got)
			}
		})
	}
	if sigs := x.Inspect(&Event{Host: "login.example", Body: []byte(testSecrets["jwt"])}); len(sigs) != 0 {
		t.Errorf("allowed JWT flagged: %v", rules(sigs))
	}
	pem := "-----BEGIN RSA PRIVATE KEY-----\nMIIE...\n-----END RSA PRIVATE KEY-----"
	gcp := `{"type": "service_account", "project_id": "p", "private_key": "-----BEGIN PRIVATE KEY-----\nMIIE\n-----END PRIVATE KEY-----\n"}`
	aws := "AWS_SECRET_ACCESS_KEY=Tz9kQ2mV7xRb4LwN8pHs3JcY6fGdA1eK5uZo0qWi"
	for _, tc := range []struct{ body, rule string }{{pem, "private_key_pem"}, {gcp, "gcp_service_account_key"}, {aws, "aws_secret_access_key"}} {
		if r := rules(x.Inspect(&Event{Host: "x.example", Body: []byte(tc.body)})); !hasString(r, tc.rule) {
			t.Errorf("%s: rules %v", tc.rule, r)
		}
	}
	// Look-alikes that are not secrets.
	for _, body := range []string{"task-manager sk-learn", "ghp_short", "AKIA is a prefix", "eyJhbGciOiJIUzI1NiJ9 alone"} {
		if sigs := x.Inspect(&Event{Host: "x.example", Body: []byte(body)}); len(sigs) != 0 {
			t.Errorf("%q: signals %v", body, rules(sigs))
		}
	}
}

func hasString(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

func TestSecretIndex(t *testing.T) {
	secrets := map[string][]byte{
		"stripe": []byte("rk_prod_" + strings.Repeat("k", 24)),
		"pw":     []byte("hunter2hunter2"),
		"b64":    []byte("c2VjcmV0LXZhbHVlLTEyMw=="),
		"short":  []byte("abc"),
	}
	idx := NewSecretIndex(secrets)
	for _, tc := range []struct {
		body string
		want []string
	}{
		{`{"token": "rk_prod_` + strings.Repeat("k", 24) + `"}`, []string{"stripe"}},
		{"password=hunter2hunter2&user=x", []string{"pw"}},
		{"Authorization: Basic c2VjcmV0LXZhbHVlLTEyMw==", []string{"b64"}},
		{"abc abc hunter2hunter3 rk_prod_" + strings.Repeat("k", 23), nil},
		{"xhunter2hunter2", nil}, // glued into a longer token: documented miss
	} {
		got := idx.Match([]byte(tc.body))
		if strings.Join(got, ",") != strings.Join(tc.want, ",") {
			t.Errorf("%q: %v, want %v", tc.body, got, tc.want)
		}
	}
	if s := idx.String(); strings.Contains(s, "hunter2") {
		t.Errorf("String reveals a secret: %s", s)
	}

	x, _ := NewExfiltration(ExfiltrationOptions{Secrets: idx, Bound: bound(map[string][]string{"pw": {"login.example"}})})
	if sigs := x.Inspect(&Event{Host: "login.example", Body: []byte("p=hunter2hunter2")}); len(sigs) != 0 {
		t.Errorf("secret to its own host flagged: %v", rules(sigs))
	}
	sigs := x.Inspect(&Event{Host: "evil.example", Body: []byte("p=hunter2hunter2")})
	if len(sigs) != 1 || sigs[0].Rule != "vault_secret" || sigs[0].Severity != Critical || strings.Contains(sigs[0].Evidence, "hunter2") {
		t.Errorf("signals %+v", sigs)
	}
	if _, err := NewExfiltration(ExfiltrationOptions{Window: -1}); !errors.Is(err, ErrInvalidOptions) {
		t.Errorf("negative window: %v", err)
	}
	if _, err := NewExfiltration(ExfiltrationOptions{AllowShapes: map[string][]string{"jwt": {"*.com"}}}); !errors.Is(err, ErrInvalidOptions) || !strings.Contains(err.Error(), `"*.com"`) {
		t.Errorf("allowed host *.com: %v", err)
	}
}

func BenchmarkExfiltration64KiB(b *testing.B) {
	body := benign64K(b)
	secrets := map[string][]byte{}
	for i := range 50 {
		secrets[string(rune('a'+i%26))+strings.Repeat("x", i)] = bytes.Repeat([]byte{byte('A' + i%26)}, 20+i)
	}
	x, _ := NewExfiltration(ExfiltrationOptions{Secrets: NewSecretIndex(secrets), Bound: bound(nil)})
	ev := &Event{Host: "api.example.com", Body: body}
	b.SetBytes(int64(len(body)))
	for b.Loop() {
		x.Inspect(ev)
	}
}
