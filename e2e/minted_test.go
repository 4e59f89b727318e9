package e2e

import (
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/internal/oauthtest"
)

const ordersHost = "api.orders.test"

// A standalone sidecar mints OAuth2 tokens from a client credential in
// its vault, narrowed to the grant's scope, renews them under steady
// traffic with no failed request, and forgets them on revocation.
func TestMintedOAuth2ThroughTheSidecar(t *testing.T) {
	as := oauthtest.Start(t, oauthtest.Options{ClientID: "stack", Secret: "Zq7rV2mXk9LpT4sWc8Hn",
		Scopes: []string{"orders.read", "orders.write"}, Exp: 8 * time.Second, Basic: true})
	dir := t.TempDir()
	mintCA := filepath.Join(dir, "mint-ca.pem")
	if err := os.WriteFile(mintCA, as.CAPEM(), 0o600); err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, "STACK_VAULT_MINT_CA="+mintCA)
	e.mustStack("Zq7rV2mXk9LpT4sWc8Hn", "vault", "put", "orders", "--kind", "oauth2-client-credentials", "--host", ordersHost,
		"--token-url", as.TokenURL(), "--client-id", "stack", "--scope", "orders.read", "--scope", "orders.write")
	list := e.mustStack("", "vault", "list")
	if !strings.Contains(list, "oauth2-client-credentials") {
		t.Fatalf("vault list:\n%s", list)
	}
	// The API checks each token with the authorization server.
	var tokens []string
	e.up.route("/api/", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		tok := strings.TrimPrefix(r.Header.Get("Authorization"), "Bearer ")
		status, info := as.Whoami(t, []byte(tok))
		e.up.mu.Lock()
		if len(tokens) == 0 || tokens[len(tokens)-1] != tok {
			tokens = append(tokens, tok)
		}
		e.up.mu.Unlock()
		w.WriteHeader(status)
		json.NewEncoder(w).Encode(info)
	}))
	token := e.issue(agentID, "", "host="+ordersHost+",methods=GET,credentials=orders,scopes=orders.read")
	e.startProxy("--resolve", ordersHost+"=127.0.0.1")

	res := e.curl(agentID, token, "-H", "Authorization: Bearer stk_ph_orders", e.url(ordersHost, "/api/orders"))
	if res.Status != http.StatusOK || !strings.Contains(res.Body, `"scope":"orders.read"`) {
		t.Fatalf("curl: %d %s", res.Status, res.Body)
	}

	// Steady traffic across two token lifetimes: every request succeeds,
	// and the API sees more than one token.
	c := e.goClient(agentID, token)
	deadline := time.Now().Add(18 * time.Second)
	n := 0
	for time.Now().Before(deadline) {
		req, _ := http.NewRequest(http.MethodGet, e.url(ordersHost, "/api/orders"), nil)
		req.Header.Set("Authorization", "Bearer stk_ph_orders")
		resp, err := c.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("request %d after %d OK: %d %s", n+1, n, resp.StatusCode, resp.Header.Get("X-Stack-Reason"))
		}
		n++
		time.Sleep(100 * time.Millisecond)
	}
	e.up.mu.Lock()
	seen := len(tokens)
	e.up.mu.Unlock()
	if seen < 3 {
		t.Fatalf("%d requests over 18 s saw %d tokens of 8 s; want them renewed", n, seen)
	}
	if got := e.metric(`stack_credential_mints_total{kind="oauth2-client-credentials",outcome="ok"}`); got < 3 {
		t.Errorf("mints counted: %v", got)
	}
	if got := e.metric("stack_minted_credentials"); got != 1 {
		t.Errorf("minted credentials held: %v, want 1", got)
	}
	recs, _ := e.auditRecords()
	minted := 0
	for _, r := range recs {
		if r.Action == audit.ActionCredentialAccess && r.CredentialID == "orders" && strings.Contains(r.Detail, "minted, expires ") {
			minted++
		}
	}
	if minted < n {
		t.Errorf("%d credential_access records say when the minted token expires, of %d requests", minted, n)
	}

	e.revoke(t, agentID)
	if got := e.metric("stack_minted_credentials"); got != 0 {
		t.Errorf("after the revocation the sidecar holds %v minted credentials", got)
	}
	for _, tok := range tokens {
		if strings.Contains(e.proxy.Log(), tok) {
			t.Errorf("the sidecar's log holds a minted token")
		}
	}
}
