package proxy

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

// Secrets whose spellings differ once escaped: a query credential with
// characters the query renderer escapes, and a Basic credential.
const (
	mapsSecret  = "mk/Live+Ab 9&q=1~x<y>"
	basicSecret = "AC1234567890:tok/en+secret=="
)

// echoEverything answers as echoing upstreams do: a redirect to the same
// URL on a canonical path (Location, and the HTML body Go writes for it),
// or JSON with the URL as received and its decoded parameters, streamed
// in pieces of a few bytes; and the Authorization header, as sent.
var echoEverything = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
	switch r.URL.Path {
	case "/v1/old":
		http.Redirect(w, r, "/v2/new?"+r.URL.RawQuery, http.StatusMovedPermanently)
	case "/v1/stream":
		out, _ := json.Marshal(map[string]any{"url": r.URL.String(), "args": r.URL.Query(), "auth": r.Header.Get("Authorization")})
		for i := 0; i < len(out); i += 5 {
			w.Write(out[i:min(i+5, len(out))])
			w.(http.Flusher).Flush()
		}
	default:
		json.NewEncoder(w).Encode(map[string]any{"url": r.URL.String(), "args": r.URL.Query(), "auth": r.Header.Get("Authorization")})
	}
})

// An upstream that echoes an injected secret in another spelling than
// the one the sidecar sent (the query credential percent-encoded in a
// Location header and in a URL inside JSON, decoded and JSON-escaped; a
// Basic credential as its base64) gives the agent placeholders only, in
// headers and in bodies whole or streamed.
func TestScrubEchoedSpellings(t *testing.T) {
	hs := newHarness(t, echoEverything)
	ctx := context.Background()
	query, _ := vault.ParseRender("query:key")
	basic, _ := vault.ParseRender("basic")
	if _, err := hs.vault.Put(ctx, "maps", []byte(mapsSecret), vault.PutOptions{Hosts: []string{stripeHost}, Render: query}); err != nil {
		t.Fatal(err)
	}
	if _, err := hs.vault.Put(ctx, "twilio", []byte(basicSecret), vault.PutOptions{Hosts: []string{stripeHost}, Render: basic}); err != nil {
		t.Fatal(err)
	}
	if err := hs.store.Reload(); err != nil {
		t.Fatal(err)
	}
	tok, _ := hs.issue("bot", passport.Scope{{Hosts: []string{stripeHost}, Methods: []string{"GET"}, Paths: []string{"/**"}, Credentials: []string{"maps", "twilio"}}}, 0)
	c := hs.client("bot", tok)
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }

	b64 := base64.StdEncoding.EncodeToString([]byte(basicSecret))
	leaks := map[string]string{
		"the query secret":                    mapsSecret,
		"the query secret query-escaped":      url.QueryEscape(mapsSecret),
		"the query secret path-escaped":       url.PathEscape(mapsSecret),
		"the query secret JSON-escaped":       strings.Trim(mustJSON(mapsSecret), `"`),
		"the query secret escaped, then JSON": strings.Trim(mustJSON(url.QueryEscape(mapsSecret)), `"`),
		"the query secret's tail":             "9&q=1~x",
		"the Basic secret":                    basicSecret,
		"the Basic password":                  "tok/en+secret",
		"the Basic secret's base64":           strings.TrimRight(b64, "="),
	}
	for _, path := range []string{"/v1/old", "/v1/json", "/v1/stream"} {
		t.Run(path, func(t *testing.T) {
			req, _ := http.NewRequest("GET", hs.url(stripeHost, path+"?key=stk_ph_maps&page=2"), nil)
			req.SetBasicAuth("stk_ph_twilio", "")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil {
				t.Fatal(err)
			}
			var got strings.Builder
			resp.Header.Write(&got)
			got.Write(body)
			for name, leak := range leaks {
				if strings.Contains(got.String(), leak) {
					t.Errorf("%s reached the agent:\n%s", name, got.String())
				}
			}
			if !strings.Contains(got.String(), "stk_ph_maps") || !strings.Contains(got.String(), "stk_ph_twilio") {
				t.Errorf("no placeholders in what the agent got:\n%s", got.String())
			}
		})
	}
	// The upstream did receive the real secrets, as the renderers wrote them.
	if auths := hs.up.received(); len(auths) == 0 || auths[0] != "Basic "+b64 {
		t.Errorf("upstream Authorization %q", auths)
	}
}

func mustJSON(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return string(b)
}
