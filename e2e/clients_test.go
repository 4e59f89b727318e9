package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stripe/stripe-go/v82"

	"github.com/stackctl/stack/audit"
)

// Real clients, each holding only the placeholder and trusting only the
// exported CA, reach the upstream through `stack proxy`: the upstream gets
// the real secret, the client never sees it, and every credential access is
// in an audit log that verifies after the proxy stops.
func TestRealClients(t *testing.T) {
	e := newEnv(t)
	token := e.issue(agentID, "", stripeGrant)
	e.startProxy()

	// Each client makes two calls: a balance read and a charge.
	const callsPerClient = 2
	run := func(name string, f func(t *testing.T) []httpResult) {
		t.Run(name, func(t *testing.T) {
			from := len(e.up.requests())
			results := f(t)
			for _, res := range results {
				if res.Status != http.StatusOK {
					t.Fatalf("status %d, want 200:\n%s", res.Status, res.Raw)
				}
				if r := res.Header.Get("X-Stack-Reason"); r != "" {
					t.Errorf("an allowed request carries X-Stack-Reason %q", r)
				}
				e.checkClientView(t, res)
			}
			e.checkUpstreamGotSecret(t, from, callsPerClient)
		})
	}

	run("curl", func(t *testing.T) []httpResult {
		auth := []string{"-H", "Authorization: Bearer " + placeholder}
		balance := e.curl(agentID, token, append(auth, e.url(stripeHost, "/v1/balance"))...)
		charge := e.curl(agentID, token, append(auth, "-d", "amount=2000", "-d", "currency=usd", "-d", "source=tok_visa",
			e.url(stripeHost, "/v1/charges"))...)
		if !strings.Contains(charge.Body, `"id":"ch_e2e_1"`) {
			t.Errorf("charge body %s", charge.Body)
		}
		return []httpResult{balance, charge}
	})

	run("python-requests", func(t *testing.T) []httpResult {
		return []httpResult{
			e.python(agentID, token, "GET", e.url(stripeHost, "/v1/balance"), ""),
			e.python(agentID, token, "POST", e.url(stripeHost, "/v1/charges"), "amount=2000&currency=usd&source=tok_visa"),
		}
	})

	t.Run("node-undici", func(t *testing.T) {
		needNode(t)
		from := len(e.up.requests())
		for _, res := range []httpResult{
			e.node(agentID, token, "GET", e.url(stripeHost, "/v1/balance"), ""),
			e.node(agentID, token, "POST", e.url(stripeHost, "/v1/charges"), "amount=2000&currency=usd&source=tok_visa"),
		} {
			if res.Status != http.StatusOK {
				t.Fatalf("status %d, want 200:\n%s", res.Status, res.Raw)
			}
			e.checkClientView(t, res)
		}
		e.checkUpstreamGotSecret(t, from, callsPerClient)
	})

	t.Run("stripe-go", func(t *testing.T) {
		from := len(e.up.requests())
		sc := stripe.NewClient(placeholder, stripe.WithBackends(stripe.NewBackendsWithConfig(&stripe.BackendConfig{
			HTTPClient:        e.goClient(agentID, token),
			URL:               stripe.String("https://" + stripeHost + ":" + e.up.Port),
			MaxNetworkRetries: stripe.Int64(0),
			LeveledLogger:     &stripe.LeveledLogger{Level: stripe.LevelNull},
		})))
		ctx := context.Background()
		bal, err := sc.V1Balance.Retrieve(ctx, nil)
		if err != nil {
			t.Fatalf("Balance: %v", err)
		}
		if len(bal.Available) != 1 || bal.Available[0].Amount != 1000 || bal.Available[0].Currency != stripe.CurrencyUSD {
			t.Errorf("balance available = %+v", bal.Available)
		}
		ch, err := sc.V1Charges.Create(ctx, &stripe.ChargeCreateParams{
			Amount: stripe.Int64(2000), Currency: stripe.String(string(stripe.CurrencyUSD)),
			Source: &stripe.PaymentSourceSourceParams{Token: stripe.String("tok_visa")},
		})
		if err != nil {
			t.Fatalf("Charge: %v", err)
		}
		if ch.ID != "ch_e2e_1" || ch.Amount != 2000 || ch.Status != stripe.ChargeStatusSucceeded || !ch.Paid {
			t.Errorf("charge = id %q amount %d status %q paid %v", ch.ID, ch.Amount, ch.Status, ch.Paid)
		}
		if ch.Description != "authorization=Bearer "+placeholder {
			t.Errorf("charge description (the upstream's echo) = %q, want the placeholder", redactSecret(ch.Description, e.secret))
		}
		for _, resp := range []*stripe.APIResponse{bal.LastResponse, ch.LastResponse} {
			var raw strings.Builder
			resp.Header.Write(&raw)
			raw.Write(resp.RawJSON)
			e.checkClientView(t, httpResult{Status: resp.StatusCode, Header: resp.Header, Body: string(resp.RawJSON), Raw: raw.String()})
		}
		e.checkUpstreamGotSecret(t, from, callsPerClient)
	})

	// Server-sent events flow through event by event: the client has the
	// first event (with the secret turned back into the placeholder) while
	// the upstream still holds the last one back.
	t.Run("sse", func(t *testing.T) {
		req, _ := http.NewRequest("GET", e.url(stripeHost, "/v1/events"), nil)
		req.Header.Set("Authorization", "Bearer "+placeholder)
		resp, err := e.goClient(agentID, token).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		br := bufio.NewReader(resp.Body)
		first, err := br.ReadString('\n')
		if err != nil {
			t.Fatalf("first event: %v", err)
		}
		close(e.up.sseRelease)
		if first != "data: first Bearer "+placeholder+"\n" {
			t.Errorf("first event %q", redactSecret(first, e.secret))
		}
		rest, _ := io.ReadAll(br)
		if !strings.Contains(string(rest), "data: last") {
			t.Errorf("the stream ended without the last event: %q", rest)
		}
	})

	t.Run("admin", func(t *testing.T) {
		status, body := e.admin("GET", "/metrics", nil, false)
		if status != http.StatusOK || !strings.Contains(string(body), "stack_requests_total") {
			t.Errorf("/metrics: %d, stack_requests_total present: %v", status, strings.Contains(string(body), "stack_requests_total"))
		}
		if status, _ := e.admin("GET", "/healthz", nil, false); status != http.StatusOK {
			t.Errorf("/healthz: %d", status)
		}
		if status, _ := e.admin("GET", "/v1/status", nil, false); status != http.StatusUnauthorized {
			t.Errorf("/v1/status without the token: %d, want 401", status)
		}
		status, body = e.admin("GET", "/v1/status", nil, true)
		var st struct {
			Home string `json:"home"`
		}
		if status != http.StatusOK || json.Unmarshal(body, &st) != nil || st.Home != e.home {
			t.Errorf("/v1/status with the token: %d %s", status, body)
		}
		// A state-changing endpoint without the token changes nothing.
		status, _ = e.admin("POST", "/v1/passport/revoke", strings.NewReader(`{"agent":"`+agentID+`"}`), false)
		if status != http.StatusUnauthorized {
			t.Errorf("revoke without the token: %d, want 401", status)
		}
		if status, _ := e.admin("GET", "/v1/audit/snapshot", nil, false); status != http.StatusUnauthorized {
			t.Errorf("audit snapshot without the token: %d, want 401", status)
		}
		res := e.curl(agentID, token, "-H", "Authorization: Bearer "+placeholder, e.url(stripeHost, "/v1/balance"))
		if res.Status != http.StatusOK {
			t.Errorf("after a refused revoke the passport no longer works: %d %s", res.Status, res.Header.Get("X-Stack-Reason"))
		}

		// The live log, through a consistent snapshot, verifies while the
		// proxy runs.
		status, snap := e.admin("GET", "/v1/audit/snapshot", nil, true)
		if status != http.StatusOK {
			t.Fatalf("audit snapshot: %d %s", status, snap)
		}
		file := filepath.Join(e.dir, "audit-snapshot.db")
		if err := os.WriteFile(file, snap, 0o600); err != nil {
			t.Fatal(err)
		}
		if out := e.verifyAudit("--db", file); !strings.HasPrefix(out, "ok") {
			t.Errorf("audit verify of the snapshot: %s", out)
		}
		// And the CLI reads the live log itself, without hanging on the
		// file the proxy holds.
		if out := e.verifyAudit(); !strings.HasPrefix(out, "ok") {
			t.Errorf("audit verify while the proxy runs: %s", out)
		}
		recs, _ := e.auditRecords()
		if !hasAction(recs, audit.ActionCredentialAccess, agentID) {
			t.Errorf("audit tail while the proxy runs shows no credential access among %d records", len(recs))
		}
	})

	e.stopProxy()
	out := e.verifyAudit()
	if !strings.HasPrefix(out, "ok") {
		t.Errorf("audit verify: %s", out)
	}
	recs, raw := e.auditRecords()
	if strings.Contains(raw, e.secret) {
		t.Error("the audit log contains the secret")
	}
	// Every request that reached the upstream had its credential access
	// recorded, naming the credential and host, before it left.
	var accesses int
	for _, r := range recs {
		if r.Action != audit.ActionCredentialAccess {
			continue
		}
		accesses++
		if r.CredentialID != "stripe" || r.Host != stripeHost || r.AgentID != agentID || r.PassportJTI == "" {
			t.Errorf("credential access record %+v", r)
		}
	}
	if want := len(e.up.requests()); accesses != want {
		t.Errorf("%d credential_access records for %d requests that reached the upstream", accesses, want)
	}
	e.checkNoSecretElsewhere(t, e.up)
}
