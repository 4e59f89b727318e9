package proxy

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// Upstreams that offer HTTP/2 get it, while the agent speaks HTTP/1.1 to
// the proxy.
func TestUpstreamHTTP2(t *testing.T) {
	protos := make(chan string, 1)
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		protos <- r.Proto
		io.WriteString(w, "ok")
	}))
	tok, _ := hs.issue("bot", stripeScope(), 0)
	resp, err := hs.client("bot", tok).Get(hs.url(otherHost, "/"))
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if p := <-protos; p != "HTTP/2.0" {
		t.Errorf("upstream saw %s, want HTTP/2.0", p)
	}
}

// A tunnel host passes without interception: the agent sees the
// upstream's own certificate and nothing is injected.
func TestTunnelHostPassesWithoutInterception(t *testing.T) {
	hs := newHarness(t, echoAuth, func(o *Options) { o.TunnelHosts = []string{otherHost} })
	tok, claims := hs.issue("bot", stripeScope(), 0)

	// Trusting only the MITM CA fails: the certificate is the upstream's.
	if _, err := hs.client("bot", tok).Get(hs.url(otherHost, "/")); err == nil {
		t.Fatal("a tunnelled host presented the interception certificate")
	}
	pu, _ := url.Parse(hs.server.URL)
	hdr := http.Header{"Proxy-Authorization": {"Bearer " + tok}}
	tr := &http.Transport{Proxy: http.ProxyURL(pu), ProxyConnectHeader: hdr, TLSClientConfig: &tls.Config{RootCAs: hs.up.roots}}
	defer tr.CloseIdleConnections()
	req, _ := http.NewRequest("GET", hs.url(otherHost, "/raw"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body := readAll(t, resp)
	if !strings.Contains(body, "auth=Bearer stk_ph_stripe") {
		t.Errorf("body %q: the tunnel must pass bytes untouched", body)
	}
	r := hs.lastRecord(audit.ActionRequest)
	if r.Method != http.MethodConnect || r.Host != otherHost || r.PassportJTI != claims.ID {
		t.Errorf("tunnel audit record = %+v", r)
	}
	// Still refused when the passport does not grant the host.
	other, _ := hs.issue("bot", stripeScope()[:1], 0)
	tr2 := &http.Transport{Proxy: http.ProxyURL(pu), ProxyConnectHeader: http.Header{"Proxy-Authorization": {"Bearer " + other}}, TLSClientConfig: &tls.Config{RootCAs: hs.up.roots}}
	defer tr2.CloseIdleConnections()
	if _, err := (&http.Client{Transport: tr2}).Get(hs.url(otherHost, "/")); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Errorf("tunnel to an ungranted host: err %v, want Forbidden", err)
	}
}

// In single-agent mode the sidecar's passport file applies to requests
// without Proxy-Authorization, and a refreshed file applies at once.
func TestPassportFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passport")
	hs := newHarness(t, echoAuth, func(o *Options) { o.Passports = NewPassportFile(path) })
	pu, _ := url.Parse(hs.server.URL)
	roots := hs.ca.Certificate()
	pool := newPool(roots)
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: pool}}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}

	if _, err := c.Get(hs.url(otherHost, "/")); err == nil || !strings.Contains(err.Error(), "Proxy Authentication Required") {
		t.Fatalf("no file yet: err %v, want 407", err)
	}
	narrow, _ := hs.issue("sidecar-agent", stripeScope()[:1], 0)
	if err := os.WriteFile(path, []byte(narrow+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(hs.url(otherHost, "/")); err == nil || !strings.Contains(err.Error(), "Forbidden") {
		t.Fatalf("narrow passport: err %v, want 403 for an ungranted host", err)
	}
	wide, _ := hs.issue("sidecar-agent", stripeScope(), 0)
	// A different size and content: the refreshed passport applies at once.
	if err := os.WriteFile(path, []byte(wide+"\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	resp, err := c.Get(hs.url(otherHost, "/"))
	if err != nil {
		t.Fatalf("refreshed passport: %v", err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Errorf("refreshed passport: status %d", resp.StatusCode)
	}
}

// Drain waits for a request inside an intercepted tunnel to finish.
func TestDrainWaitsForTunnelledRequest(t *testing.T) {
	release := make(chan struct{})
	started := make(chan struct{})
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-release
		io.WriteString(w, "late but whole")
	}))
	tok, _ := hs.issue("bot", stripeScope(), 0)
	type result struct {
		body string
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := hs.client("bot", tok).Get(hs.url(otherHost, "/slow"))
		if err != nil {
			res <- result{err: err}
			return
		}
		b, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		res <- result{string(b), err}
	}()
	<-started
	if n := hs.proxy.InFlight(); n != 1 {
		t.Fatalf("in flight = %d, want 1", n)
	}
	drained := make(chan error, 1)
	go func() { drained <- hs.proxy.Drain(context.Background()) }()
	select {
	case <-drained:
		t.Fatal("Drain returned while a request was in flight")
	default:
	}
	close(release)
	if err := <-drained; err != nil {
		t.Fatal(err)
	}
	if r := <-res; r.err != nil || r.body != "late but whole" {
		t.Errorf("request during drain: %q, %v", r.body, r.err)
	}
	if n := hs.proxy.InFlight(); n != 0 {
		t.Errorf("in flight after drain = %d", n)
	}
}

// A passport in alert mode lets an out-of-scope request through and
// records what enforce would have refused; the credential named for the
// host is still injected, and nothing unbound ever is.
func TestReportOnlyPassport(t *testing.T) {
	hs := newHarness(t, echoAuth)
	tok, claims, err := hs.issuer.Issue(context.Background(), passport.IssueRequest{Agent: "rollout", Scope: stripeScope(), Mode: passport.ModeAlert})
	if err != nil {
		t.Fatal(err)
	}
	c := hs.client("rollout", tok)
	req, _ := http.NewRequest("DELETE", hs.url(stripeHost, "/v1/customers/cus_1"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 200 {
		t.Fatalf("alert-mode passport, out-of-scope request: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	r := hs.lastRecord(ActionWouldDeny)
	if r.PassportJTI != claims.ID || r.Reason != reason.ScopeDenied || r.Method != "DELETE" {
		t.Errorf("would-deny record = %+v", r)
	}
	// Placeholders headed to unbound hosts are refused in every mode.
	req, _ = http.NewRequest("GET", hs.url(otherHost, "/x"), nil)
	req.Header.Set("Authorization", "Bearer stk_ph_stripe")
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, resp)
	if resp.StatusCode != 403 || resp.Header.Get(reason.Header) != "placeholder_unbound" {
		t.Errorf("unbound placeholder under an alert-mode passport: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
	}
}

// A tunnel opened on the sidecar's own passport runs on the passport the
// sidecar holds now: a keep-alive connection outlives the passport it
// was opened with, and is not refused when that one expires.
func TestOwnPassportRefreshedInsideOpenTunnel(t *testing.T) {
	path := filepath.Join(t.TempDir(), "passport")
	hs := newHarness(t, echoAuth, func(o *Options) { o.Passports = NewPassportFile(path) })
	pu, _ := url.Parse(hs.server.URL)
	dials := 0
	tr := &http.Transport{Proxy: http.ProxyURL(pu), TLSClientConfig: &tls.Config{RootCAs: newPool(hs.ca.Certificate())},
		OnProxyConnectResponse: func(context.Context, *url.URL, *http.Request, *http.Response) error { dials++; return nil }}
	defer tr.CloseIdleConnections()
	c := &http.Client{Transport: tr}
	get := func() int {
		t.Helper()
		resp, err := c.Get(hs.url(otherHost, "/"))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, resp)
		return resp.StatusCode
	}
	first, firstClaims := hs.issue("sidecar-agent", stripeScope(), 2*time.Minute)
	if err := os.WriteFile(path, []byte(first), 0o600); err != nil {
		t.Fatal(err)
	}
	if st := get(); st != http.StatusOK {
		t.Fatalf("first request: %d", st)
	}
	// Refreshed at 2/3 of its life, then the first one expires.
	hs.clock.Advance(80 * time.Second)
	second, secondClaims := hs.issue("sidecar-agent", stripeScope(), 2*time.Minute)
	if err := os.WriteFile(path, []byte(second+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	// Past the first one's expiry and leeway, well within the second's.
	hs.clock.Advance(80 * time.Second)
	if st := get(); st != http.StatusOK {
		t.Fatalf("after the first passport expired, on the same connection: %d", st)
	}
	if dials != 1 {
		t.Fatalf("%d CONNECTs: the test meant one connection", dials)
	}
	if r := hs.lastRecord(audit.ActionRequest); r.PassportJTI != secondClaims.ID || r.PassportJTI == firstClaims.ID {
		t.Fatalf("request recorded under %s, want the refreshed %s", r.PassportJTI, secondClaims.ID)
	}
	// Revoking the current passport still refuses at once.
	if _, err := hs.revs.RevokeJTI(secondClaims.ID, secondClaims.Expiry, "test"); err != nil {
		t.Fatal(err)
	}
	if st := get(); st != http.StatusForbidden {
		t.Fatalf("after revocation: %d", st)
	}
}
