package control_test

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/inject/mint"
	"github.com/stackctl/stack/internal/oauthtest"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
)

const (
	ordersHost   = "api.orders.example"
	ordersSecret = "Zq7rV2mXk9LpT4sWc8Hn"
)

// mintedFixture is a control plane whose vault holds an OAuth2 client
// credential ("orders") of a real authorization server, minting tokens
// that live for life, and an agent "bot" narrowed to orders.read.
func mintedFixture(t *testing.T, life time.Duration) (*fixture, *oauthtest.Server, *mint.Cache) {
	t.Helper()
	as := oauthtest.Start(t, oauthtest.Options{ClientID: "stack", Secret: ordersSecret,
		Scopes: []string{"orders.read", "orders.write"}, Exp: life, Basic: true})
	mints := mint.NewCache(mint.CacheOptions{Env: mint.Env{HTTPClient: as.Client()}, MinValidity: time.Second})
	t.Cleanup(mints.Close)
	f := newFixture(t, func(o *control.Options) { o.Mints = mints })
	params := json.RawMessage(fmt.Sprintf(`{"token_url":%q,"client_id":"stack","scopes":["orders.read","orders.write"],"auth_style":"header"}`, as.TokenURL()))
	if _, err := f.vault.Put(context.Background(), "orders", []byte(ordersSecret), vault.PutOptions{Hosts: []string{ordersHost},
		Render: vault.Render{Kind: vault.RenderBearer}, Kind: mint.KindOAuth2, Params: params}); err != nil {
		t.Fatal(err)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot",
		Scope: passport.Scope{{Hosts: []string{ordersHost}, Credentials: []string{"orders"}, Narrow: &passport.Narrowing{Scopes: []string{"orders.read"}}}}}}, nil)
	return f, as, mints
}

func (s *sidecar) lease(name string) (control.Lease, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.leases {
		if l.Name == name {
			return l, true
		}
	}
	return control.Lease{}, false
}

// A minted credential's lease carries the token minted under the agent's
// narrowing, expires when the token does, is renewed before it expires
// (the sidecar always holds a live one), and is gone on revocation.
func TestMintedLeaseRenewedAndDropped(t *testing.T) {
	f, as, mints := mintedFixture(t, 6*time.Second)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "bot", "", nil)

	first, ok := s.lease("orders")
	if !ok {
		t.Fatal("no lease of the minted credential")
	}
	if first.Kind != mint.KindOAuth2 || first.Narrow != (&passport.Narrowing{Scopes: []string{"orders.read"}}).Key() {
		t.Fatalf("lease kind %q narrow %q", first.Kind, first.Narrow)
	}
	if left := time.Until(first.ExpiresAt); left <= 0 || left > 6*time.Second {
		t.Fatalf("lease expires in %s, want the token's 6 s at most", left)
	}
	if status, info := as.Whoami(t, first.Secret); status != http.StatusOK || info["scope"] != "orders.read" {
		t.Fatalf("the leased token: %d %v", status, info)
	}

	// Past the first token's expiry the sidecar has held a live lease
	// all along, and holds another token now.
	deadline := first.ExpiresAt.Add(2 * time.Second)
	for time.Now().Before(deadline) {
		l, ok := s.lease("orders")
		if !ok || !time.Now().Before(l.ExpiresAt) {
			t.Fatalf("at %s the sidecar held no live lease (%v, expiring %s)", time.Now().Format(time.StampMilli), ok, l.ExpiresAt.Format(time.StampMilli))
		}
		time.Sleep(50 * time.Millisecond)
	}
	renewed, _ := s.lease("orders")
	if string(renewed.Secret) == string(first.Secret) {
		t.Fatal("the lease was not renewed with a new token")
	}
	if status, _ := as.Whoami(t, renewed.Secret); status != http.StatusOK {
		t.Fatalf("the renewed token: %d", status)
	}
	if mints.Len() != 1 {
		t.Fatalf("control plane holds %d minted credentials, want 1", mints.Len())
	}

	f.must(operatorToken, http.MethodPost, control.PathRevoke, control.RevokeRequest{Agent: "bot", Reason: "incident"}, nil)
	eventually(t, "the sidecar drops the minted lease", func() bool { _, ok := s.lease("orders"); return !ok })
	if mints.Len() != 0 {
		t.Fatalf("control plane still holds %d minted credentials of the revoked agent", mints.Len())
	}
}

// When the issuer cannot mint, the lease answer says so, and the sidecar
// keeps the lease it holds, once, until it expires rather than drop it.
func TestMintedLeaseKeptWhileIssuerDown(t *testing.T) {
	f, as, mints := mintedFixture(t, time.Minute)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "bot", "", nil)
	first, ok := s.lease("orders")
	if !ok {
		t.Fatal("no lease")
	}
	as.Close()
	// A new version of the credential: the control plane drops what it
	// minted, and the feed sends the sidecar for its leases at once.
	f.must(operatorToken, http.MethodPost, control.PathVaultRotate, control.VaultWriteRequest{Name: "orders", Secret: []byte(ordersSecret)}, nil)
	s.mu.Lock()
	before := s.sets
	s.mu.Unlock()
	eventually(t, "the sidecar asks again", func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.sets > before
	})
	if mints.Len() != 0 {
		t.Fatal("the control plane holds a token it could not have minted")
	}
	s.mu.Lock()
	var held []control.Lease
	for _, l := range s.leases {
		if l.Name == "orders" {
			held = append(held, l)
		}
	}
	s.mu.Unlock()
	if len(held) != 1 || string(held[0].Secret) != string(first.Secret) || !held[0].ExpiresAt.Equal(first.ExpiresAt) {
		t.Fatalf("with the issuer down the sidecar holds %d leases of orders, want the one it had", len(held))
	}
}

// A grant that narrows a minted credential beyond its vault entry is
// leased as refused: no secret, and not asked for again soon.
func TestMintedLeaseRefusedNarrowing(t *testing.T) {
	f, as, _ := mintedFixture(t, time.Minute)
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "greedy",
		Scope: passport.Scope{{Hosts: []string{ordersHost}, Credentials: []string{"orders"}, Narrow: &passport.Narrowing{Scopes: []string{"orders.admin"}}}}}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "greedy", "", nil)
	l, ok := s.lease("orders")
	if !ok || l.Refused == "" || !strings.Contains(l.Refused, "orders.admin") || l.Secret != nil || as.Requests() != 0 {
		t.Fatalf("lease %+v after %d token requests; want refused, naming the scope, with no secret and no request", l, as.Requests())
	}
}

// Root material the kind cannot mint with is not the grant's fault: the
// lease answer names the credential unavailable, without saying why, and
// the control plane's log says why.
func TestMintedLeaseBrokenRootIsUnavailable(t *testing.T) {
	core, logs := observer.New(zapcore.InfoLevel)
	mints := mint.NewCache(mint.CacheOptions{})
	t.Cleanup(mints.Close)
	f := newFixture(t, func(o *control.Options) { o.Mints, o.Log = mints, zap.New(core) })
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	// A service-account key the vault's check accepts, and Google's
	// library then refuses to read ("delegates" is a list).
	key, _ := json.Marshal(map[string]any{"type": "service_account", "client_email": "reader@p.iam.gserviceaccount.com",
		"private_key_id": "k1", "private_key": string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})), "delegates": 5})
	if _, err := f.vault.Put(context.Background(), "gcs", key, vault.PutOptions{Hosts: []string{"storage.googleapis.com"},
		Render: vault.Render{Kind: vault.RenderBearer}, Kind: mint.KindGCP,
		Params: json.RawMessage(`{"scopes":["https://www.googleapis.com/auth/devstorage.read_only"]}`)}); err != nil {
		t.Fatal(err)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: "bot",
		Scope: passport.Scope{{Hosts: []string{"storage.googleapis.com"}, Credentials: []string{"gcs"}}}}}, nil)
	cred := f.join("bot")
	var lr control.LeasesResponse
	f.must(cred.Token, http.MethodPost, control.PathLeases, control.LeasesRequest{Minted: true}, &lr)
	if len(lr.Leases) != 0 || len(lr.Unavailable) != 1 || lr.Unavailable[0] != (control.LeaseKey{Name: "gcs"}) {
		t.Fatalf("leases %+v, unavailable %+v; want gcs unavailable and no lease", lr.Leases, lr.Unavailable)
	}
	warned := logs.FilterMessage("credential not minted for a lease").FilterField(zap.String("credential", "gcs")).All()
	if len(warned) != 1 || !strings.Contains(fmt.Sprint(warned[0].ContextMap()["error"]), "not a service-account key") {
		t.Fatalf("log: %+v; want the cause", warned)
	}
}
