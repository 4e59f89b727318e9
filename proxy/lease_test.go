package proxy

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/inject"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
	"github.com/stackctl/stack/vault"
)

// A joined sidecar injects from leases: the leased secret reaches the
// bound host until the lease expires, and nothing after Set(nil).
func TestLeaseStoreInjects(t *testing.T) {
	var got []string
	leases := NewLeaseStore(nil)
	var indexed map[string][]byte
	leases.OnReload = func(m map[string][]byte) { indexed = m }
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}), func(o *Options) { o.Injector = inject.New(leases, inject.Options{}) })
	leased := "sk_live_leased_from_the_control_plane"
	leases.Set([]control.Lease{{Name: "stripe", Hosts: []string{stripeHost}, Render: vault.Render{Kind: vault.RenderBearer},
		Fingerprint: "fp", Secret: []byte(leased), ExpiresAt: time.Now().Add(time.Minute)}})
	if string(indexed["stripe"]) != leased {
		t.Fatalf("exfiltration index not told of the lease: %v", indexed)
	}
	tok, _ := hs.issue("bot", stripeScope(), time.Hour)
	c := hs.client("bot", tok)
	get := func() *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, hs.url(stripeHost, "/v1/charges/1"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusOK || len(got) != 1 || got[0] != "Bearer "+leased {
		t.Fatalf("with a lease: %d, upstream saw %q", resp.StatusCode, got)
	}

	// Expired and not renewed: refused, never sent.
	leases.Set([]control.Lease{{Name: "stripe", Hosts: []string{stripeHost}, Render: vault.Render{Kind: vault.RenderBearer},
		Secret: []byte(leased), ExpiresAt: time.Now().Add(-time.Second)}})
	if _, err := leases.Secret(context.Background(), "stripe", inject.Grant{}); err == nil {
		t.Fatal("an expired lease still gives its secret")
	}
	if resp := get(); resp.StatusCode == http.StatusOK || resp.Header.Get(reason.Header) != reason.CredentialUnavailable || len(got) != 1 {
		t.Fatalf("expired lease: %d %s, upstream saw %d requests", resp.StatusCode, resp.Header.Get(reason.Header), len(got))
	}

	// Dropped on revocation: the placeholder names nothing any more.
	leases.Set(nil)
	if _, ok := leases.Credential("stripe"); ok {
		t.Fatal("credential kept after Set(nil)")
	}
	if resp := get(); resp.StatusCode == http.StatusOK || len(got) != 1 {
		t.Fatalf("after the leases were dropped: %d, upstream saw %d requests", resp.StatusCode, len(got))
	}
}

// A sidecar cut off from its control plane past control.max_staleness
// refuses everything, also inside an open tunnel.
func TestGateRefuses(t *testing.T) {
	var stale error
	hs := newHarness(t, http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}), func(o *Options) {
		o.Gate = func() error { return stale }
	})
	tok, _ := hs.issue("bot", stripeScope(), time.Hour)
	c := hs.client("bot", tok)
	get := func() *http.Response {
		t.Helper()
		resp, err := c.Get(hs.url(otherHost, "/"))
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	if resp := get(); resp.StatusCode != http.StatusOK {
		t.Fatalf("open gate: %d", resp.StatusCode)
	}
	stale = errors.New("no contact with the control plane since 12:00 (control.max_staleness)")
	resp := get()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get(reason.Header) != reason.ControlUnreachable {
		t.Fatalf("closed gate on an open connection: %d %s", resp.StatusCode, resp.Header.Get(reason.Header))
	}
	if rec := hs.lastRecord("request_denied"); rec.Reason != reason.ControlUnreachable {
		t.Fatalf("audit: %+v", rec)
	}
}

// A minted credential is leased once per narrowing: each request gets the
// token minted under the narrowing of the grant that allows it, and its
// audit record says when that token expires.
func TestLeaseStoreMintedPerNarrowing(t *testing.T) {
	var got []string
	leases := NewLeaseStore(nil)
	hs := newHarness(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
	}), func(o *Options) { o.Injector = inject.New(leases, inject.Options{}) })
	read := &passport.Narrowing{Scopes: []string{"charges.read"}}
	write := &passport.Narrowing{Scopes: []string{"charges.write"}}
	exp := time.Now().Add(10 * time.Minute).UTC().Truncate(time.Second)
	lease := func(n *passport.Narrowing, tok string) control.Lease {
		return control.Lease{Name: "stripe", Hosts: []string{stripeHost}, Render: vault.Render{Kind: vault.RenderBearer},
			Kind: mint.KindOAuth2, Narrow: n.Key(), Secret: []byte(tok), ExpiresAt: exp}
	}
	admin := &passport.Narrowing{Scopes: []string{"admin"}}
	refused := control.Lease{Name: "stripe", Hosts: []string{stripeHost}, Render: vault.Render{Kind: vault.RenderBearer},
		Kind: mint.KindOAuth2, Narrow: admin.Key(), Refused: "scope admin is not among the credential's", ExpiresAt: exp}
	leases.Set([]control.Lease{lease(read, "tok-read"), lease(write, "tok-write"), refused})
	if leases.Len() != 2 {
		t.Fatalf("leases held: %d, want 2 (a refused narrowing holds none)", leases.Len())
	}
	scope := passport.Scope{
		{Hosts: []string{stripeHost}, Methods: []string{"GET"}, Credentials: []string{"stripe"}, Narrow: read},
		{Hosts: []string{stripeHost}, Methods: []string{"POST"}, Credentials: []string{"stripe"}, Narrow: write},
	}
	tok, _ := hs.issue("bot", scope, time.Hour)
	c := hs.client("bot", tok)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		req, _ := http.NewRequest(method, hs.url(stripeHost, "/v1/charges"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s: %d %s", method, resp.StatusCode, resp.Header.Get(reason.Header))
		}
	}
	if len(got) != 2 || got[0] != "Bearer tok-read" || got[1] != "Bearer tok-write" {
		t.Fatalf("upstream saw %q, want the read token for GET and the write token for POST", got)
	}
	var recs []audit.Record
	for _, r := range hs.records() {
		if r.Action == audit.ActionCredentialAccess {
			recs = append(recs, r)
		}
	}
	if len(recs) != 2 || !strings.Contains(recs[0].Detail, "minted, expires "+exp.Format(time.RFC3339)) {
		t.Fatalf("credential_access records: %+v", recs)
	}

	// A grant whose narrowing the control plane refused is out of
	// scope; one it has no lease for is unavailable. Neither gets the
	// others' tokens.
	for _, tc := range []struct {
		narrow *passport.Narrowing
		status int
		reason string
	}{
		{admin, http.StatusForbidden, reason.ScopeDenied},
		{&passport.Narrowing{Scopes: []string{"other"}}, http.StatusServiceUnavailable, reason.CredentialUnavailable},
	} {
		tok, _ = hs.issue("bot", passport.Scope{{Hosts: []string{stripeHost}, Credentials: []string{"stripe"}, Narrow: tc.narrow}}, time.Hour)
		req, _ := http.NewRequest(http.MethodGet, hs.url(stripeHost, "/v1/charges"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_stripe")
		resp, err := hs.client("bot", tok).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || resp.Header.Get(reason.Header) != tc.reason || len(got) != 2 {
			t.Fatalf("narrowing %v: %d %s, upstream saw %d; want %d %s", tc.narrow.Scopes, resp.StatusCode, resp.Header.Get(reason.Header), len(got), tc.status, tc.reason)
		}
	}

	leases.Set(nil)
	if leases.Len() != 0 {
		t.Fatalf("after a revocation: %d leases held", leases.Len())
	}
}
