package proxy

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// echoAuth answers with the Authorization header it received, so a test
// can see that the agent gets the placeholder back, never the secret.
var echoAuth = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("X-Echo-Auth", r.Header.Get("Authorization"))
	fmt.Fprintf(w, "auth=%s path=%s", r.Header.Get("Authorization"), r.URL.Path)
})

func readAll(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// waitRecord waits (bounded) for a record matching pred: the request record
// is written when the response body ends, which the client may observe
// first.
func (hs *harness) waitRecord(pred func(audit.Record) bool) audit.Record {
	hs.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		for _, r := range hs.records() {
			if pred(r) {
				return r
			}
		}
		if time.Now().After(deadline) {
			hs.t.Fatalf("no matching audit record among %+v", hs.records())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestInjectsThroughMITM(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, claims := hs.issue("billing-bot", stripeScope(), 0)
	c := hs.client("billing-bot", tok)

	req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges/ch_1"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("status %d: %s", resp.StatusCode, body)
	}
	if got := hs.up.received(); len(got) != 1 || got[0] != "Bearer "+stripeToken {
		t.Fatalf("upstream received %q, want the real secret", got)
	}
	if strings.Contains(body, stripeToken) || strings.Contains(resp.Header.Get("X-Echo-Auth"), stripeToken) {
		t.Fatalf("the secret reached the agent: %q / %q", body, resp.Header.Get("X-Echo-Auth"))
	}
	if body != "auth=Bearer stk_ph_stripe path=/v1/charges/ch_1" {
		t.Errorf("body = %q, want the echo with the placeholder", body)
	}
	access := hs.lastRecord(audit.ActionCredentialAccess)
	if access.CredentialID != "stripe" || access.AgentID != "billing-bot" || access.PassportJTI != claims.ID || access.Host != stripeHost {
		t.Errorf("credential access record = %+v", access)
	}
	if !strings.HasPrefix(access.CredentialFingerprint, "hmac-sha256:") {
		t.Errorf("fingerprint = %q", access.CredentialFingerprint)
	}
	rec := hs.waitRecord(func(r audit.Record) bool { return r.Action == audit.ActionRequest && r.Path == "/v1/charges/ch_1" })
	if rec.Status != 200 || rec.BytesOut != int64(len(body)) || rec.Method != "GET" {
		t.Errorf("request record = %+v (body %d bytes)", rec, len(body))
	}
	if access.Seq >= rec.Seq {
		t.Errorf("credential access (seq %d) not recorded before the request (seq %d)", access.Seq, rec.Seq)
	}
}

func TestPlainHTTPAndBearerIdentity(t *testing.T) {
	plain := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Proxy-Authorization") != "" {
			t.Error("Proxy-Authorization reached the upstream")
		}
		io.WriteString(w, "plain ok")
	})
	hs := newHarness(t, echoAuth)
	up := &http.Server{Handler: plain}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go up.Serve(ln)
	t.Cleanup(func() { up.Close() })
	_, port, _ := net.SplitHostPort(ln.Addr().String())

	tok, _ := hs.issue("bot", stripeScope(), 0)
	pu, _ := url.Parse(hs.server.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+otherHost+":"+port+"/x", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+tok)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	if body := readAll(t, resp); resp.StatusCode != 200 || body != "plain ok" {
		t.Fatalf("status %d body %q", resp.StatusCode, body)
	}

	// A credential is never injected into cleartext HTTP.
	req, _ = http.NewRequest("GET", "http://"+stripeHost+":"+port+"/v1/charges/x", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+tok)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err = tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 403 || resp.Header.Get(reason.Header) != reason.CleartextCredential {
		t.Errorf("cleartext injection: status %d reason %q", resp.StatusCode, resp.Header.Get(reason.Header))
	}
}

func TestDenials(t *testing.T) {
	hs := newHarness(t, echoAuth)
	good, _ := hs.issue("bot", stripeScope(), 0)
	expired, _ := hs.issue("bot", stripeScope(), time.Minute)
	revoked, rc := hs.issue("bot", stripeScope(), 0)
	if _, err := hs.revs.RevokeJTI(rc.ID, rc.Expiry, "test"); err != nil {
		t.Fatal(err)
	}
	// A passport signed by another issuer's key.
	otherKeys, _ := passport.GenerateKeySet(time.Now())
	forged, _, err := (&passport.Issuer{Keys: otherKeys}).Issue(context.Background(), passport.IssueRequest{Agent: "bot", Scope: stripeScope()})
	if err != nil {
		t.Fatal(err)
	}
	hs.clock.Advance(2 * time.Minute) // expire the one-minute passport

	tests := []struct {
		name   string
		token  string
		method string
		url    string
		header map[string]string
		status int
		reason string
	}{
		{"no passport", "", "GET", hs.url(stripeHost, "/v1/charges/1"), nil, 407, reason.PassportMissing},
		{"forged passport", forged, "GET", hs.url(stripeHost, "/v1/charges/1"), nil, 407, reason.PassportInvalid},
		{"expired passport", expired, "GET", hs.url(stripeHost, "/v1/charges/1"), nil, 407, reason.PassportExpired},
		{"revoked passport", revoked, "GET", hs.url(stripeHost, "/v1/charges/1"), nil, 403, reason.PassportRevoked},
		{"host not in scope", good, "GET", hs.url("api.nowhere.test", "/"), nil, 403, reason.ScopeDenied},
		{"path not in scope", good, "GET", hs.url(stripeHost, "/v1/transfers"), map[string]string{"Authorization": "Bearer stk_ph_stripe"}, 403, reason.ScopeDenied},
		{"method not in scope", good, "DELETE", hs.url(stripeHost, "/v1/charges/1"), nil, 403, reason.ScopeDenied},
		{"placeholder to unbound host", good, "GET", hs.url(otherHost, "/collect"), map[string]string{"Authorization": "Bearer stk_ph_stripe"}, 403, "placeholder_unbound"},
		{"unknown placeholder", good, "GET", hs.url(stripeHost, "/v1/charges/1"), map[string]string{"Authorization": "Bearer stk_ph_nosuch"}, 403, "placeholder_unknown"},
		{"agent's own key", good, "GET", hs.url(stripeHost, "/v1/charges/1"), map[string]string{"Authorization": "Bearer sk_live_smuggled"}, 403, "agent_credential_refused"},
		{"metadata address", good, "GET", "http://169.254.169.254/latest/meta-data/", nil, 403, reason.EgressDenied},
		{"name resolving to a refused address", good, "GET", hs.url(rebindHost, "/"), nil, 403, reason.EgressDenied},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := len(hs.records())
			nUp := len(hs.up.received())
			req, _ := http.NewRequest(tc.method, tc.url, nil)
			for k, v := range tc.header {
				req.Header.Set(k, v)
			}
			resp, err := hs.client("bot", tc.token).Do(req)
			if err != nil {
				// A refused CONNECT surfaces as a client error carrying the status.
				if !strings.Contains(err.Error(), http.StatusText(tc.status)) {
					t.Fatalf("err %v, want status %d", err, tc.status)
				}
			} else {
				body := readAll(t, resp)
				if resp.StatusCode != tc.status || resp.Header.Get(reason.Header) != tc.reason {
					t.Fatalf("status %d reason %q, want %d %q; body %s", resp.StatusCode, resp.Header.Get(reason.Header), tc.status, tc.reason, body)
				}
				var jb map[string]any
				if err := json.Unmarshal([]byte(body), &jb); err != nil || jb["reason"] != tc.reason {
					t.Errorf("JSON body %q does not carry the reason", body)
				}
			}
			after := hs.records()
			if len(after) != before+1 {
				t.Fatalf("%d audit records written, want 1", len(after)-before)
			}
			r := after[len(after)-1]
			if r.Action != audit.ActionRequestDenied || r.Reason != tc.reason || r.Status != tc.status {
				t.Errorf("audit record = %+v", r)
			}
			// Genuine passports refused for expiry or revocation are named.
			if (tc.reason == reason.PassportRevoked || tc.reason == reason.PassportExpired) && r.AgentID != "bot" {
				t.Errorf("refusal of a genuine passport does not name its agent: %+v", r)
			}
			if tc.reason == reason.PassportInvalid && r.AgentID != "" {
				t.Errorf("a forged passport's claims were trusted: %+v", r)
			}
			for _, a := range hs.up.received()[nUp:] {
				if strings.Contains(a, stripeToken) {
					t.Errorf("the secret left on a refused request")
				}
			}
		})
	}
}

func TestUntrustedUpstreamCertificate(t *testing.T) {
	hs := newHarness(t, echoAuth)
	// A second upstream whose CA the proxy does not trust.
	bad := startUpstream(t, echoAuth, "untrusted.test")
	tok, _ := hs.issue("bot", stripeScope(), 0)
	// otherHost resolves to loopback, where the untrusted server listens.
	req, _ := http.NewRequest("GET", "https://"+otherHost+":"+bad.port+"/", nil)
	resp, err := hs.client("bot", tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 502 || resp.Header.Get(reason.Header) != reason.UpstreamTLS {
		t.Fatalf("status %d reason %q body %s", resp.StatusCode, resp.Header.Get(reason.Header), body)
	}
	if len(bad.received()) != 0 {
		t.Error("the untrusted upstream received a request")
	}
	r := hs.lastRecord(audit.ActionRequestDenied)
	if r.Reason != reason.UpstreamTLS || r.Status != 502 {
		t.Errorf("audit record = %+v", r)
	}
}

// A revocation applies to the very next request, even on a connection
// whose tunnel was authorized before it.
func TestRevocationAppliesInsideOpenTunnel(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, claims := hs.issue("bot", stripeScope(), 0)
	c := hs.client("bot", tok)
	get := func() *http.Response {
		req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges/1"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp
	}
	if resp := get(); resp.StatusCode != 200 {
		t.Fatalf("before revocation: %d", resp.StatusCode)
	}
	if _, err := hs.revs.RevokeAgent(claims.Subject, "burst"); err != nil {
		t.Fatal(err)
	}
	resp := get()
	if resp.StatusCode != 403 || resp.Header.Get(reason.Header) != reason.PassportRevoked {
		t.Fatalf("after revocation: %d %q", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	if n := len(hs.up.received()); n != 1 {
		t.Errorf("upstream saw %d requests, want 1", n)
	}
}

// The client receives the first server-sent event before the upstream
// sends the last one.
func TestServerSentEventsStream(t *testing.T) {
	first := make(chan struct{})
	sse := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprintf(w, "data: one %s\n\n", r.Header.Get("Authorization"))
		w.(http.Flusher).Flush()
		select {
		case <-first:
		case <-time.After(10 * time.Second):
			t.Error("the client never saw the first event while the stream was open")
		}
		io.WriteString(w, "data: two\n\n")
	})
	hs := newHarness(t, sse)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/stream"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := hs.client("bot", tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	close(first)
	if line != "data: one Bearer stk_ph_stripe\n" {
		t.Errorf("first event %q (the secret must come back as the placeholder)", line)
	}
	rest, _ := io.ReadAll(br)
	if !strings.Contains(string(rest), "data: two") {
		t.Errorf("rest = %q", rest)
	}
}

func TestOversizedHeaderRefused(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	big := strings.Repeat("a", 70<<10)

	// On a plain proxy request.
	pu, _ := url.Parse(hs.server.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+otherHost+"/", nil)
	req.Header.Set("Proxy-Authorization", "Bearer "+tok)
	req.Header.Set("X-Big", big)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get(reason.Header) != reason.HeaderTooLarge {
		t.Errorf("plain: status %d reason %q, want 431 %s", resp.StatusCode, resp.Header.Get(reason.Header), reason.HeaderTooLarge)
	}
	if r := hs.lastRecord(audit.ActionRequestDenied); r.Reason != reason.HeaderTooLarge || r.Status != 431 {
		t.Errorf("audit record = %+v", r)
	}

	// Inside an intercepted tunnel, where net/http's limit does not reach.
	req, _ = http.NewRequest("GET", hs.url(otherHost, "/"), nil)
	req.Header.Set("X-Big", big)
	resp, err = hs.client("bot", tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge || resp.Header.Get(reason.Header) != reason.HeaderTooLarge {
		t.Errorf("tunnel: status %d reason %q", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	if n := len(hs.up.received()); n != 0 {
		t.Errorf("the upstream received %d oversized requests", n)
	}
}

func TestNonProxyRequestExplains(t *testing.T) {
	hs := newHarness(t, echoAuth)
	resp, err := http.Get(hs.server.URL + "/")
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if resp.StatusCode != 400 || !strings.Contains(body, "HTTPS_PROXY") {
		t.Errorf("status %d body %s", resp.StatusCode, body)
	}
}

func TestProxyAuthorizationAgentMismatch(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	_, err := hs.client("someone-else", tok).Get(hs.url(otherHost, "/"))
	if err == nil || !strings.Contains(err.Error(), http.StatusText(http.StatusProxyAuthRequired)) {
		t.Fatalf("err = %v, want a 407 on CONNECT", err)
	}
	bad := "Basic " + base64.StdEncoding.EncodeToString([]byte("no-colon"))
	pu, _ := url.Parse(hs.server.URL)
	tr := &http.Transport{Proxy: http.ProxyURL(pu)}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", "http://"+otherHost+"/", nil)
	req.Header.Set("Proxy-Authorization", bad)
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 407 || resp.Header.Get("Proxy-Authenticate") == "" {
		t.Errorf("status %d, Proxy-Authenticate %q", resp.StatusCode, resp.Header.Get("Proxy-Authenticate"))
	}
}

// The secret appears nowhere in the audit file.
func TestSecretNotInAuditFile(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, _ := hs.issue("bot", stripeScope(), 0)
	req, _ := http.NewRequest("GET", hs.url(stripeHost, "/v1/charges/1"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := hs.client("bot", tok).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	hs.waitRecord(func(r audit.Record) bool { return r.Action == audit.ActionRequest })
	for _, f := range []string{"audit.db", "vault.db"} {
		b, err := os.ReadFile(hs.dir + "/" + f)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(b), stripeToken) {
			t.Errorf("the secret is in %s", f)
		}
	}
}
