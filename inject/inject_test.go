package inject

import (
	"bytes"
	"context"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// memStore is an in-memory Store.
type memStore struct {
	creds   map[string]Credential
	secrets map[string]string
	down    bool             // the KMS is unreachable
	errs    map[string]error // what Secret answers for a credential
}

func (s *memStore) Credential(name string) (Credential, bool) {
	c, ok := s.creds[name]
	return c, ok
}

func (s *memStore) Secret(_ context.Context, name string, _ Grant) (mint.Token, error) {
	if s.down {
		return mint.Token{}, errors.New("kms unavailable: local:///k")
	}
	if err := s.errs[name]; err != nil {
		return mint.Token{}, err
	}
	return mint.Token{Value: []byte(s.secrets[name])}, nil
}

func (s *memStore) BoundCredentials(host string) []Credential {
	var out []Credential
	for _, c := range s.creds {
		if c.BoundTo(host) {
			out = append(out, c)
		}
	}
	return out
}

func newStore() *memStore {
	return &memStore{
		creds: map[string]Credential{
			"stripe": {Name: "stripe", Hosts: []string{"api.stripe.com"}, Render: Render{Kind: Bearer}, Fingerprint: "fp-stripe"},
			"github": {Name: "github", Hosts: []string{"api.github.com"}, Render: Render{Kind: Header, Name: "Authorization", Template: "token {secret}"}},
			"openai": {Name: "openai", Hosts: []string{"*.openai.example"}, Render: Render{Kind: Header, Name: "X-Api-Key", Template: "{secret}"}},
			"maps":   {Name: "maps", Hosts: []string{"maps.example.com"}, Render: Render{Kind: Query, Name: "key"}},
			"twilio": {Name: "twilio", Hosts: []string{"api.twilio.com"}, Render: Render{Kind: Basic}},
		},
		secrets: map[string]string{
			"stripe": "sk_test_REALSECRET",
			"github": "ghp_REALTOKEN",
			"openai": "oa-REAL",
			"maps":   "AIzaREAL",
			"twilio": "AC123:authtoken",
		},
	}
}

func grantAll(string) (Grant, bool) { return Grant{Agent: "agent"}, true }

func TestApplyInjects(t *testing.T) {
	tests := []struct {
		name   string
		url    string
		header map[string]string
		check  func(t *testing.T, r *http.Request)
	}{
		{"bearer", "https://api.stripe.com/v1/charges", map[string]string{"Authorization": "Bearer stk_ph_stripe"},
			func(t *testing.T, r *http.Request) {
				want(t, r.Header.Get("Authorization"), "Bearer sk_test_REALSECRET")
			}},
		{"basic placeholder as user, rendered bearer", "https://api.stripe.com/v1/charges",
			map[string]string{"Authorization": "Basic " + base64.StdEncoding.EncodeToString([]byte("stk_ph_stripe:"))},
			func(t *testing.T, r *http.Request) {
				want(t, r.Header.Get("Authorization"), "Bearer sk_test_REALSECRET")
			}},
		{"token prefix header", "https://api.github.com/repos", map[string]string{"Authorization": "token stk_ph_github"},
			func(t *testing.T, r *http.Request) { want(t, r.Header.Get("Authorization"), "token ghp_REALTOKEN") }},
		{"x-api-key on wildcard host", "https://eu.openai.example/v1/chat", map[string]string{"x-api-key": "stk_ph_openai"},
			func(t *testing.T, r *http.Request) { want(t, r.Header.Get("X-Api-Key"), "oa-REAL") }},
		{"query parameter", "https://maps.example.com/geo?q=x&key=stk_ph_maps", nil,
			func(t *testing.T, r *http.Request) {
				want(t, r.URL.Query().Get("key"), "AIzaREAL")
				want(t, r.URL.Query().Get("q"), "x")
			}},
		{"basic render", "https://api.twilio.com/2010/Messages", map[string]string{"Authorization": "Bearer stk_ph_twilio"},
			func(t *testing.T, r *http.Request) {
				want(t, r.Header.Get("Authorization"), "Basic "+base64.StdEncoding.EncodeToString([]byte("AC123:authtoken")))
			}},
		{"host with port and trailing dot", "https://API.Stripe.com.:443/v1/x", map[string]string{"Authorization": "Bearer stk_ph_stripe"},
			func(t *testing.T, r *http.Request) {
				want(t, r.Header.Get("Authorization"), "Bearer sk_test_REALSECRET")
			}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			res, err := New(newStore(), Options{}).Apply(context.Background(), r, r.URL.Host, grantAll)
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Injected) != 1 {
				t.Fatalf("injected %d credentials, want 1", len(res.Injected))
			}
			tc.check(t, r)
			if strings.Contains(r.URL.String()+headerText(r.Header), Prefix) {
				t.Errorf("a placeholder is left in the request: %s %v", r.URL, r.Header)
			}
		})
	}
}

func TestApplyRefuses(t *testing.T) {
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	tests := []struct {
		name    string
		url     string
		header  map[string]string
		granted Granted
		reason  string
	}{
		{"placeholder to unbound host", "https://evil.example/collect", map[string]string{"Authorization": "Bearer stk_ph_stripe"}, grantAll, reason.PlaceholderUnbound},
		{"placeholder in path to unbound host", "https://evil.example/x/stk_ph_stripe", nil, grantAll, reason.PlaceholderUnbound},
		{"percent-encoded placeholder in query", "https://evil.example/x?k=stk%5Fph%5Fstripe", nil, grantAll, reason.PlaceholderUnbound},
		{"placeholder in the query name", "https://evil.example/x?stk_ph_stripe=1", nil, grantAll, reason.PlaceholderUnbound},
		{"percent-encoded placeholder in path", "https://evil.example/x/stk%5Fph%5Fstripe", nil, grantAll, reason.PlaceholderUnbound},
		{"placeholder in userinfo", "https://stk_ph_stripe@evil.example/", nil, grantAll, reason.PlaceholderUnbound},
		{"placeholder in userinfo password", "https://u:stk_ph_stripe@evil.example/", nil, grantAll, reason.PlaceholderUnbound},
		{"placeholder in host", "https://stk_ph_stripe.evil.example/", nil, grantAll, reason.PlaceholderUnbound},
		{"placeholder in an unscanned header", "https://evil.example/", map[string]string{"X-Whatever": "data stk_ph_github"}, grantAll, reason.PlaceholderUnbound},
		{"placeholder in basic to unbound host", "https://evil.example/", map[string]string{"Authorization": "Basic " + b64("u:stk_ph_stripe")}, grantAll, reason.PlaceholderUnbound},
		{"wildcard does not match apex", "https://openai.example/", map[string]string{"X-Api-Key": "stk_ph_openai"}, grantAll, reason.PlaceholderUnbound},
		{"wildcard does not match two labels", "https://a.b.openai.example/", map[string]string{"X-Api-Key": "stk_ph_openai"}, grantAll, reason.PlaceholderUnbound},
		{"suffix lookalike host", "https://api.stripe.com.evil.example/", map[string]string{"Authorization": "Bearer stk_ph_stripe"}, grantAll, reason.PlaceholderUnbound},
		{"unknown placeholder", "https://api.stripe.com/", map[string]string{"Authorization": "Bearer stk_ph_nosuch"}, grantAll, reason.PlaceholderUnknown},
		{"not granted", "https://api.stripe.com/", map[string]string{"Authorization": "Bearer stk_ph_stripe"}, func(string) (Grant, bool) { return Grant{}, false }, reason.ScopeDenied},
		{"nil grant func", "https://api.stripe.com/", map[string]string{"Authorization": "Bearer stk_ph_stripe"}, nil, reason.ScopeDenied},
		{"agent's own key to managed host", "https://api.stripe.com/", map[string]string{"Authorization": "Bearer sk_live_smuggled"}, grantAll, reason.AgentCredentialRefused},
		{"agent's own query key", "https://maps.example.com/geo?key=AIzaOWN", nil, grantAll, reason.AgentCredentialRefused},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest("GET", tc.url, nil)
			for k, v := range tc.header {
				r.Header.Set(k, v)
			}
			_, err := New(newStore(), Options{}).Apply(context.Background(), r, r.URL.Host, tc.granted)
			var de *DeniedError
			if !errors.As(err, &de) {
				t.Fatalf("err = %v, want a *DeniedError", err)
			}
			if de.Reason != tc.reason {
				t.Errorf("reason = %q, want %q (%v)", de.Reason, tc.reason, err)
			}
			if de.Status() != http.StatusForbidden || !errors.Is(err, ErrDenied) {
				t.Errorf("status %d, Is(ErrDenied) %v", de.Status(), errors.Is(err, ErrDenied))
			}
			if s := r.URL.String() + headerText(r.Header); strings.Contains(s, "REAL") {
				t.Errorf("a secret was written into a refused request: %s", s)
			}
		})
	}
}

// A request built in code can carry a fragment, which requests read off
// the wire cannot: it is scanned too.
func TestApplyRefusesPlaceholderInFragment(t *testing.T) {
	r := httptest.NewRequest("GET", "https://evil.example/", nil)
	r.URL.Fragment = "stk_ph_stripe"
	_, err := New(newStore(), Options{}).Apply(context.Background(), r, r.URL.Host, grantAll)
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason != reason.PlaceholderUnbound {
		t.Fatalf("err = %v, want %s", err, reason.PlaceholderUnbound)
	}
}

func TestOverwritePolicy(t *testing.T) {
	// The agent set its own Authorization and asked for the managed one
	// through another header: overwrite replaces it, refuse (default) refuses.
	store := newStore()
	store.creds["gh2"] = Credential{Name: "gh2", Hosts: []string{"api.github.com"}, Render: Render{Kind: Header, Name: "Authorization", Template: "token {secret}"}}
	store.secrets["gh2"] = "ghp_SECOND"
	mk := func() *http.Request {
		r := httptest.NewRequest("GET", "https://api.github.com/user", nil)
		r.Header.Set("Authorization", "token ghp_agents_own")
		r.Header.Set("X-Api-Key", "stk_ph_gh2")
		return r
	}
	if _, err := New(store, Options{}).Apply(context.Background(), mk(), "api.github.com", grantAll); err == nil {
		t.Fatal("refuse policy let the agent's own key through")
	}
	r := mk()
	if _, err := New(store, Options{AgentAuth: AgentAuthOverwrite}).Apply(context.Background(), r, "api.github.com", grantAll); err != nil {
		t.Fatal(err)
	}
	want(t, r.Header.Get("Authorization"), "token ghp_SECOND")
}

func TestKMSDownFailsClosed(t *testing.T) {
	store := newStore()
	store.down = true
	r := httptest.NewRequest("GET", "https://api.stripe.com/v1/charges", nil)
	r.Header.Set("Authorization", "Bearer stk_ph_stripe")
	_, err := New(store, Options{}).Apply(context.Background(), r, "api.stripe.com", grantAll)
	var de *DeniedError
	if !errors.As(err, &de) || de.Reason != reason.CredentialUnavailable || de.Status() != http.StatusServiceUnavailable {
		t.Fatalf("err = %v, want credential_unavailable with 503", err)
	}
	if !strings.Contains(err.Error(), "local:///k") {
		t.Errorf("the cause is lost: %v", err)
	}
}

// A narrowing the credential cannot honour is out of scope, and the agent
// is told what it asked for; root material or parameters that do not
// work make the credential unavailable, and the agent is told nothing of
// them (the log has the cause).
func TestMintRefusals(t *testing.T) {
	params := []byte(`{"token_url":"https://auth.example/oauth/token","client_id":"c","scopes":["orders.read"]}`)
	mintErr := func(root string, n *passport.Narrowing) error {
		_, err := mint.Mint(context.Background(), mint.Env{}, mint.Request{Kind: mint.KindOAuth2, Params: params, Root: []byte(root), Narrow: n})
		if !errors.Is(err, mint.ErrInvalid) {
			t.Fatalf("Mint = %v, want a refusal before any call", err)
		}
		return err
	}
	for _, tc := range []struct {
		name     string
		err      error
		reason   string
		status   int
		says     string // in the detail the agent gets
		withheld string // not in it
	}{
		{"narrowing beyond the credential", mintErr("s3cr3t-client", &passport.Narrowing{Scopes: []string{"orders.refund"}}),
			reason.ScopeDenied, http.StatusForbidden, "orders.refund", ""},
		{"root material that does not work", mintErr("s3cr3t\nclient", nil),
			reason.CredentialUnavailable, http.StatusServiceUnavailable, "could not be minted", "client secret"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			store := newStore()
			store.creds["orders"] = Credential{Name: "orders", Hosts: []string{"api.orders.example"}, Render: Render{Kind: Bearer}, Kind: mint.KindOAuth2}
			store.errs = map[string]error{"orders": tc.err}
			r := httptest.NewRequest("GET", "https://api.orders.example/v1/orders", nil)
			r.Header.Set("Authorization", "Bearer stk_ph_orders")
			_, err := New(store, Options{}).Apply(context.Background(), r, "api.orders.example", grantAll)
			var de *DeniedError
			if !errors.As(err, &de) || de.Reason != tc.reason || de.Status() != tc.status {
				t.Fatalf("err = %v, want %s with %d", err, tc.reason, tc.status)
			}
			if !strings.Contains(de.Detail, tc.says) || tc.withheld != "" && strings.Contains(de.Detail, tc.withheld) {
				t.Errorf("detail %q: want it to say %q and not %q", de.Detail, tc.says, tc.withheld)
			}
			if !errors.Is(de.Err, tc.err) {
				t.Errorf("the cause is lost: %v", de.Err)
			}
		})
	}
}

func TestBodyPlaceholdersNotSubstituted(t *testing.T) {
	body := `{"note":"stk_ph_stripe"}`
	r := httptest.NewRequest("POST", "https://api.stripe.com/v1/charges", strings.NewReader(body))
	r.Header.Set("Authorization", "Bearer stk_ph_stripe")
	if _, err := New(newStore(), Options{}).Apply(context.Background(), r, "api.stripe.com", grantAll); err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(r.Body)
	want(t, string(got), body)
}

func TestNoPlaceholderPassesUntouched(t *testing.T) {
	r := httptest.NewRequest("GET", "https://example.org/page?q=1", nil)
	r.Header.Set("Authorization", "Bearer someone-elses")
	res, err := New(newStore(), Options{}).Apply(context.Background(), r, "example.org", grantAll)
	if err != nil || len(res.Injected) != 0 {
		t.Fatalf("res %+v err %v", res, err)
	}
	want(t, r.Header.Get("Authorization"), "Bearer someone-elses")
}

func TestRedactorReplacesAcrossReadBoundaries(t *testing.T) {
	inj := []Injected{{Name: "stripe", Secret: []byte("sk_test_REALSECRET")}, {Name: "gh", Secret: []byte("ghp_X")}}
	in := "echo sk_test_REALSECRET and sk_test_REAL but ghp_X; tail sk_test_"
	wantOut := "echo stk_ph_stripe and sk_test_REAL but stk_ph_gh; tail sk_test_"
	readers := map[string]func() io.Reader{
		"whole":    func() io.Reader { return strings.NewReader(in) },
		"one byte": func() io.Reader { return iotest.OneByteReader(strings.NewReader(in)) },
		"half":     func() io.Reader { return iotest.HalfReader(strings.NewReader(in)) },
	}
	for name, mk := range readers {
		t.Run(name, func(t *testing.T) {
			got, err := io.ReadAll(NewRedactor(io.NopCloser(mk()), inj))
			if err != nil {
				t.Fatal(err)
			}
			want(t, string(got), wantOut)
		})
	}
	h := http.Header{"X-Echo": {"key=sk_test_REALSECRET"}}
	RedactHeader(h, inj)
	want(t, h.Get("X-Echo"), "key=stk_ph_stripe")
}

// An event is delivered as soon as it arrives, before the upstream sends
// the next one.
func TestRedactorStreams(t *testing.T) {
	pr, pw := io.Pipe()
	r := NewRedactor(pr, []Injected{{Name: "s", Secret: []byte("SECRET")}})
	go func() {
		pw.Write([]byte("data: one\n\n"))
		pw.Write([]byte("data: SECRET\n\n"))
		pw.Close()
	}()
	buf := make([]byte, 100)
	n, err := r.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	want(t, string(buf[:n]), "data: one\n\n")
	rest, _ := io.ReadAll(r)
	want(t, string(rest), "data: stk_ph_s\n\n")
}

func FuzzRedactor(f *testing.F) {
	f.Add([]byte("xxSECRETyySECRE"), uint8(3))
	f.Add([]byte("SSSECRETSECRET"), uint8(1))
	f.Fuzz(func(t *testing.T, data []byte, chunk uint8) {
		secret := []byte("SECRET")
		r := NewRedactor(io.NopCloser(&chunkReader{data: data, n: int(chunk%16) + 1}), []Injected{{Name: "p", Secret: secret}})
		got, err := io.ReadAll(r)
		if err != nil {
			t.Fatal(err)
		}
		if exp := bytes.ReplaceAll(data, secret, []byte("stk_ph_p")); !bytes.Equal(got, exp) {
			t.Fatalf("got %q, want %q", got, exp)
		}
	})
}

type chunkReader struct {
	data []byte
	n    int
}

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	n := min(c.n, len(p), len(c.data))
	copy(p, c.data[:n])
	c.data = c.data[n:]
	return n, nil
}

func want(t *testing.T, got, w string) {
	t.Helper()
	if got != w {
		t.Errorf("got %q, want %q", got, w)
	}
}

func headerText(h http.Header) string {
	var b strings.Builder
	h.Write(&b)
	return b.String()
}
