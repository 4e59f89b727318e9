package e2e

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/internal/stacktest"
)

// Every refusal through the real process gets its documented status and
// X-Stack-Reason, leaves an audit record, and lets no secret reach any host
// but the one the credential is bound to. The log verifies afterwards.
func TestDenials(t *testing.T) {
	const leeway = time.Second
	// A one-second clock-skew leeway (the default is 30 s), so that a
	// one-second passport expires within the test.
	e := newEnv(t, "STACK_PASSPORT_LEEWAY="+leeway.String())
	grants := []string{
		stripeGrant,
		// In scope and even granted the credential, but the credential is
		// bound to api.stripe.com only.
		"host=" + evilHost + ",credentials=stripe",
		"host=" + rebindHost,
		"host=169.254.169.254",
	}
	// Issued first so that it has expired by the time its case runs.
	expiring := e.issue(agentID, "1s", grants...)
	token := e.issue(agentID, "", grants...)
	// Revocation by agent covers every passport issued to it so far: the
	// revoked case uses an agent of its own.
	const revokedAgent = "revoked-bot"
	revocable := e.issue(revokedAgent, "", stripeGrant)

	// A server presenting a certificate from a CA the proxy does not trust,
	// for the very host the credential is bound to.
	rogue := startUpstream(t, "rogue")
	e.startProxy()

	bigHeader := filepath.Join(e.dir, "big-header.txt")
	if err := os.WriteFile(bigHeader, []byte("X-Big: "+strings.Repeat("a", 70<<10)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	auth := []string{"-H", "Authorization: Bearer " + placeholder}

	type want struct {
		status int
		reason string // X-Stack-Reason and the audit record's reason
		host   string // the audit record's host
	}
	cases := []struct {
		name string
		send func(t *testing.T) httpResult
		want want
	}{
		{
			name: "placeholder to an unbound host",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, e.url(evilHost, "/v1/balance"))...)
			},
			want: want{http.StatusForbidden, "placeholder_unbound", evilHost},
		},
		{
			name: "out-of-scope path",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, e.url(stripeHost, "/v2/accounts"))...)
			},
			want: want{http.StatusForbidden, "scope_denied", stripeHost},
		},
		{
			name: "out-of-scope method",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, "-X", "DELETE", e.url(stripeHost, "/v1/customers/cus_1"))...)
			},
			want: want{http.StatusForbidden, "scope_denied", stripeHost},
		},
		{
			name: "expired passport",
			send: func(t *testing.T) httpResult {
				// A short bounded wait: exp has one-second granularity.
				exp := jwtExpiry(t, expiring)
				if wait := time.Until(exp.Add(leeway + 100*time.Millisecond)); wait > 0 {
					if wait > 4*time.Second {
						t.Fatalf("passport issued with --ttl 1s expires in %s", wait)
					}
					time.Sleep(wait)
				}
				return e.curl(agentID, expiring, append(auth, e.url(stripeHost, "/v1/balance"))...)
			},
			want: want{http.StatusProxyAuthRequired, "passport_expired", stripeHost},
		},
		{
			name: "forged passport",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, forge(token), append(auth, e.url(stripeHost, "/v1/balance"))...)
			},
			want: want{http.StatusProxyAuthRequired, "passport_invalid", stripeHost},
		},
		{
			name: "no passport",
			send: func(t *testing.T) httpResult {
				r := e.run("", stacktest.ChildEnv(), "curl", "-s", "-S", "-i", "--max-time", "20",
					"--proxy", "http://"+e.proxy.Listen, "--cacert", e.caFile, e.url(stripeHost, "/v1/balance"))
				res, err := parseCurl(r.Stdout)
				if err != nil {
					t.Fatalf("curl: %v\n%s", err, r.Stderr)
				}
				return res
			},
			want: want{http.StatusProxyAuthRequired, "passport_missing", stripeHost},
		},
		{
			name: "revoked passport",
			send: func(t *testing.T) httpResult {
				before := e.curl(revokedAgent, revocable, append(auth, e.url(stripeHost, "/v1/balance"))...)
				if before.Status != http.StatusOK {
					t.Fatalf("before revocation: %d %s", before.Status, before.Header.Get("X-Stack-Reason"))
				}
				e.revoke(t, revokedAgent)
				return e.curl(revokedAgent, revocable, append(auth, e.url(stripeHost, "/v1/balance"))...)
			},
			want: want{http.StatusForbidden, "passport_revoked", stripeHost},
		},
		{
			name: "cloud metadata address",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, "http://169.254.169.254/latest/meta-data/")
			},
			want: want{http.StatusForbidden, "egress_denied", "169.254.169.254"},
		},
		{
			name: "name resolving to a refused address",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, e.url(rebindHost, "/"))
			},
			want: want{http.StatusForbidden, "egress_denied", rebindHost},
		},
		{
			name: "upstream certificate from an untrusted CA",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, "https://"+stripeHost+":"+rogue.Port+"/v1/balance")...)
			},
			want: want{http.StatusBadGateway, "upstream_tls", stripeHost},
		},
		{
			name: "oversized header on CONNECT",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, "--proxy-header", "@"+bigHeader, e.url(stripeHost, "/v1/balance"))...)
			},
			want: want{http.StatusRequestHeaderFieldsTooLarge, "header_too_large", stripeHost},
		},
		{
			name: "oversized header inside the tunnel",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, append(auth, "-H", "@"+bigHeader, e.url(stripeHost, "/v1/balance"))...)
			},
			want: want{http.StatusRequestHeaderFieldsTooLarge, "header_too_large", stripeHost},
		},
		{
			name: "oversized header on a plain request",
			send: func(t *testing.T) httpResult {
				return e.curl(agentID, token, "-H", "@"+bigHeader, "http://"+stripeHost+":"+e.up.Port+"/v1/balance")
			},
			want: want{http.StatusRequestHeaderFieldsTooLarge, "header_too_large", stripeHost},
		},
	}

	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := tc.send(t)
			if res.Status != tc.want.status {
				t.Errorf("status %d, want %d\n%s", res.Status, tc.want.status, redactSecret(res.Raw, e.secret))
			}
			if got := res.Header.Get("X-Stack-Reason"); got != tc.want.reason {
				t.Errorf("X-Stack-Reason %q, want %q", got, tc.want.reason)
			}
			if strings.Contains(res.Raw, e.secret) {
				t.Error("the refusal shows the secret")
			}
		})
	}

	// Nothing reached the rogue server: its certificate was refused before
	// a request (with the injected secret) was sent.
	if n := len(rogue.requests()); n != 0 {
		t.Errorf("the server with the untrusted certificate received %d requests", n)
	}
	e.checkNoSecretElsewhere(t, e.up, rogue)
	for _, r := range e.up.requests() {
		if r.Host != stripeHost {
			t.Errorf("a refused request reached the upstream: %s %s %s", r.Host, r.Method, r.Path)
		}
	}

	e.stopProxy()
	if out := e.verifyAudit(); !strings.HasPrefix(out, "ok") {
		t.Errorf("audit verify: %s", out)
	}
	recs, raw := e.auditRecords()
	if strings.Contains(raw, e.secret) {
		t.Error("the audit log contains the secret")
	}
	for _, tc := range cases {
		if !hasDenial(recs, tc.want.reason, tc.want.host, tc.want.status) {
			t.Errorf("%s: no request_denied record with reason %s, host %s, status %d", tc.name, tc.want.reason, tc.want.host, tc.want.status)
		}
	}
	// The placeholder headed elsewhere is recorded with the credential it
	// named: an exfiltration attempt.
	for _, r := range recs {
		if r.Reason == "placeholder_unbound" && r.CredentialID != "stripe" {
			t.Errorf("placeholder_unbound record names credential %q, want stripe", r.CredentialID)
		}
	}
	// Every injection was recorded before the request left: the requests
	// that reached the upstream with the secret, and the one the untrusted
	// certificate stopped.
	var accesses, withSecret int
	for _, r := range recs {
		if r.Action == audit.ActionCredentialAccess && r.CredentialID == "stripe" && r.Host == stripeHost {
			accesses++
		}
	}
	for _, r := range e.up.requests() {
		if r.Authorization == "Bearer "+e.secret {
			withSecret++
		}
	}
	if accesses != withSecret+1 {
		t.Errorf("%d credential_access records, want %d (%d upstream requests with the secret, 1 stopped by TLS)", accesses, withSecret+1, withSecret)
	}
	// The revocation itself is in the log.
	if !hasAction(recs, audit.ActionPassportRevoked, revokedAgent) {
		t.Errorf("no %s record for %s", audit.ActionPassportRevoked, revokedAgent)
	}
}

// revoke revokes every passport of agent with `stack passport revoke`
// while the proxy runs: the CLI goes through the sidecar's admin API.
func (e *env) revoke(t *testing.T, agent string) {
	t.Helper()
	out := e.mustStack("", "passport", "revoke", "--agent", agent, "--reason", "e2e")
	if !strings.Contains(out, "running sidecar") {
		t.Errorf("passport revoke did not go through the running sidecar: %q", out)
	}
}

// hasDenial reports whether a request_denied record has the status, and
// the reason and host unless they are empty.
func hasDenial(recs []audit.Record, reason, host string, status int) bool {
	for _, r := range recs {
		if r.Action == audit.ActionRequestDenied && r.Status == status &&
			(reason == "" || r.Reason == reason) && (host == "" || r.Host == host) {
			return true
		}
	}
	return false
}

func hasAction(recs []audit.Record, action, agent string) bool {
	for _, r := range recs {
		if r.Action == action && r.AgentID == agent {
			return true
		}
	}
	return false
}
