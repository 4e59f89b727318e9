package inject

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"html/template"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"testing/iotest"
)

// jsonEscapeAll writes s as a JSON string body with every byte as \u00XX.
func jsonEscapeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, `\u%04x`, s[i])
	}
	return b.String()
}

// jsonPHP writes s as PHP's json_encode does by default: '/' as \/.
func jsonPHP(s string) string {
	out, _ := json.Marshal(s)
	return strings.ReplaceAll(strings.Trim(string(out), `"`), "/", `\/`)
}

func percentAll(s string, hex string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%"+hex, s[i])
	}
	return b.String()
}

// lowerHex writes the hex digits of s's percent escapes in lower case.
func lowerHex(s string) string {
	b := []byte(s)
	for i := 0; i+2 < len(b); i++ {
		if b[i] == '%' {
			b[i+1], b[i+2] = bytes.ToLower(b[i+1 : i+2])[0], bytes.ToLower(b[i+2 : i+3])[0]
		}
	}
	return string(b)
}

func htmlTemplate(s string) string {
	var b strings.Builder
	template.Must(template.New("").Parse("{{.}}")).Execute(&b, s)
	return b.String()
}

func goJSON(s string) string {
	out, _ := json.Marshal(s)
	return strings.Trim(string(out), `"`)
}

// Every spelling the sidecar's own renderers produce, and the escapings
// an upstream commonly applies when it echoes one, come back as the
// placeholder: in a body in memory, streamed in pieces of every size, and
// in a header.
func TestRedactSpellings(t *testing.T) {
	const secret = "sk/Live+Ab 9&q=1~x<y>"
	inj := []Injected{{Name: "maps", Secret: []byte(secret)}}
	query := url.Values{"key": {secret}}.Encode() // as the query renderer writes it
	spellings := map[string]string{
		"as sent":                     secret,
		"query renderer":              strings.TrimPrefix(query, "key="),
		"QueryEscape":                 url.QueryEscape(secret),
		"PathEscape":                  url.PathEscape(secret),
		"lower-case hex":              lowerHex(url.QueryEscape(secret)),
		"every byte percent-encoded":  percentAll(secret, "%02X"),
		"every byte, lower-case hex":  percentAll(secret, "%02x"),
		"Go JSON":                     goJSON(secret),
		"PHP JSON":                    jsonPHP(secret),
		"JSON, every byte \\u00XX":    jsonEscapeAll(secret),
		"JSON of the query-escaped":   goJSON(url.QueryEscape(secret)),
		"html.EscapeString":           html.EscapeString(secret),
		"html/template":               htmlTemplate(secret),
		"html of the query":           html.EscapeString("?" + query)[len("?key="):],
		"base64 (a Basic credential)": base64.StdEncoding.EncodeToString([]byte(secret)),
		"base64 in JSON, PHP-style":   jsonPHP(base64.StdEncoding.EncodeToString([]byte(secret))),
		"base64 percent-encoded":      url.QueryEscape(base64.StdEncoding.EncodeToString([]byte(secret))),
	}
	for name, spelled := range spellings {
		t.Run(name, func(t *testing.T) {
			body := []byte(`{"url":"https://maps.example.com/geo?` + spelled + `&z=1"}`)
			got := string(RedactBytes(body, inj))
			if strings.Contains(got, spelled) || !strings.Contains(got, "stk_ph_maps") {
				t.Fatalf("RedactBytes(%q) = %q", body, got)
			}
			for size := 1; size <= len(body); size++ {
				s := NewStreamRedactor(inj)
				var out []byte
				for i := 0; i < len(body); i += size {
					out = s.Feed(out, body[i:min(i+size, len(body))], false)
				}
				if out = s.Feed(out, nil, true); string(out) != got {
					t.Fatalf("pieces of %d: %q, want %q", size, out, got)
				}
			}
			streamed, err := io.ReadAll(NewRedactor(io.NopCloser(iotest.OneByteReader(bytes.NewReader(body))), inj))
			if err != nil || string(streamed) != got {
				t.Fatalf("NewRedactor: %q, %v; want %q", streamed, err, got)
			}
			h := http.Header{"Location": {"/geo?" + spelled}, "X-Echo": {spelled, "plain"}}
			RedactHeader(h, inj)
			if h.Get("Location") != "/geo?stk_ph_maps" || h["X-Echo"][0] != "stk_ph_maps" || h["X-Echo"][1] != "plain" {
				t.Fatalf("RedactHeader: %v", h)
			}
		})
	}
}

// A user:password secret (a Basic credential) is also looked for by its
// halves: the password, and the user when there is no password (Stripe's
// key as the Basic user). A short half, or a user next to a password, is
// ordinary text.
func TestRedactBasicHalves(t *testing.T) {
	for _, tc := range []struct {
		secret, body, want string
	}{
		{"AC1234567890:authtoken-xyz", "bad password authtoken-xyz for AC1234567890", "bad password stk_ph_c for AC1234567890"},
		{"sk_live_51Habc:", "No such key: sk_live_51Habc", "No such key: stk_ph_c"},
		{"api:key-3ax6xnjp", "key key-3ax6xnjp", "key stk_ph_c"},
		{"user:short", "user short", "user short"},
		{"AC1:tok", "Basic " + base64.StdEncoding.EncodeToString([]byte("AC1:tok")), "Basic stk_ph_c=="},
	} {
		got := string(RedactBytes([]byte(tc.body), []Injected{{Name: "c", Secret: []byte(tc.secret)}}))
		if got != tc.want {
			t.Errorf("%s in %q: %q, want %q", tc.secret, tc.body, got, tc.want)
		}
	}
}

// A secret holding escape characters itself is found as it stands and
// escaped.
func TestRedactSecretWithEscapeCharacters(t *testing.T) {
	const secret = `pa%25s\u0041&amp;`
	inj := []Injected{{Name: "p", Secret: []byte(secret)}}
	for _, spelled := range []string{secret, url.QueryEscape(secret), goJSON(secret), html.EscapeString(secret)} {
		if got := string(RedactBytes([]byte("<"+spelled+">"), inj)); got != "<stk_ph_p>" {
			t.Errorf("%q: %q", spelled, got)
		}
	}
}

// What an upstream can do to a secret that the redactor does not undo,
// as docs/operations.md lists it: these pass unchanged.
func TestRedactDocumentedMisses(t *testing.T) {
	const secret = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"
	inj := []Injected{{Name: "s", Secret: []byte(secret)}}
	for name, body := range map[string]string{
		"percent-encoded twice":      url.QueryEscape(percentAll(secret, "%02X")),
		"base64 not at its start":    base64.StdEncoding.EncodeToString([]byte("x" + secret)),
		"hex":                        fmt.Sprintf("%x", secret),
		"case changed":               strings.ToUpper(secret),
		"split":                      secret[:16] + "-" + secret[16:],
		"JSON \\u of a non-ASCII":    `\u00e9`,
		"masked, as Stripe does":     "sk_test_************7dc",
		"HTML with seven digits":     "&#0000115;k_test_4eC39HqLyjWDarjtT1zdp7dc",
		"a prefix only, body ending": secret[:20],
	} {
		if got := string(RedactBytes([]byte(body), inj)); got != body {
			t.Errorf("%s: %q became %q", name, body, got)
		}
	}
}
