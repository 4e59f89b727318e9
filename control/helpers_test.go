package control_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/store"
	"github.com/stackctl/stack/internal/testclock"
	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/vault"
	"github.com/stackctl/stack/vault/kms/kmstest"
)

const operatorToken = "0123456789abcdef0123456789abcdef-operator"

// fixture is a control plane served over real TLS on loopback, with a
// real bbolt store, vault and local KMS.
type fixture struct {
	t      *testing.T
	srv    *control.Server
	ts     *httptest.Server
	store  store.Store
	keys   *passport.KeySet
	vault  *vault.Vault
	audit  *recorder
	clock  *testclock.Clock
	roots  *x509.CertPool
	client *http.Client
}

// recorder keeps the audit records the control plane wrote.
type recorder struct {
	mu   sync.Mutex
	recs []audit.Record
}

func (r *recorder) Append(_ context.Context, rec audit.Record) (uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.recs = append(r.recs, rec)
	return uint64(len(r.recs)), nil
}

func (r *recorder) actions(action string) []audit.Record {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []audit.Record
	for _, rec := range r.recs {
		if rec.Action == action {
			out = append(out, rec)
		}
	}
	return out
}

func newFixture(t *testing.T, tune func(*control.Options)) *fixture {
	t.Helper()
	dir := t.TempDir()
	st, err := store.OpenBolt(filepath.Join(dir, "control.db"), store.BoltOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	keys, err := passport.GenerateKeySet(time.Now())
	if err != nil {
		t.Fatal(err)
	}
	v, err := vault.Open(filepath.Join(dir, "vault.db"), kmstest.Local(t), vault.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { v.Close() })
	f := &fixture{t: t, store: st, keys: keys, vault: v, audit: &recorder{}, clock: testclock.Running()}
	opts := control.Options{
		Store: st, Keys: keys, Token: operatorToken, Vault: v, Audit: f.audit, Now: f.clock.Now,
		Heartbeat: 200 * time.Millisecond,
		Roles:     map[string]passport.Role{"reader": {TTL: 5 * time.Minute, Scope: passport.Scope{{Hosts: []string{"api.example.com"}, Methods: []string{"GET"}, Credentials: []string{"example"}}}}},
	}
	if tune != nil {
		tune(&opts)
	}
	srv, err := control.New(opts)
	if err != nil {
		t.Fatal(err)
	}
	f.srv = srv
	f.ts = httptest.NewUnstartedServer(srv.Handler())
	f.ts.EnableHTTP2 = true
	f.ts.StartTLS()
	t.Cleanup(f.ts.Close)
	f.roots = x509.NewCertPool()
	f.roots.AddCert(f.ts.Certificate())
	f.client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: f.roots}, ForceAttemptHTTP2: true}}
	return f
}

// call sends a JSON request with a bearer token and decodes the answer;
// it returns the status and, for a refusal, the reason.
func (f *fixture) call(token, method, path string, in, out any) (int, string) {
	f.t.Helper()
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			f.t.Fatal(err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, f.ts.URL+path, body)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := f.client.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		var e control.Error
		if err := json.Unmarshal(b, &e); err != nil {
			f.t.Fatalf("%s %s: %d with a body that is not an error: %q", method, path, resp.StatusCode, b)
		}
		return resp.StatusCode, e.Reason
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			f.t.Fatalf("%s %s: %v in %q", method, path, err, b)
		}
	}
	return resp.StatusCode, ""
}

// must is call that fails the test on a refusal.
func (f *fixture) must(token, method, path string, in, out any) {
	f.t.Helper()
	if st, reason := f.call(token, method, path, in, out); st/100 != 2 {
		f.t.Fatalf("%s %s: %d %s", method, path, st, reason)
	}
}

// register registers an agent with the reader role.
func (f *fixture) register(name string) {
	f.t.Helper()
	f.must(operatorToken, http.MethodPost, control.PathAgents, control.AgentRequest{Agent: control.Agent{Name: name, Role: "reader"}}, nil)
}

// join registers nothing: it spends a fresh join token for agent.
func (f *fixture) join(agent string) control.Credential {
	f.t.Helper()
	var jt control.JoinTokenResponse
	f.must(operatorToken, http.MethodPost, control.PathTokens, control.JoinTokenRequest{Agent: agent}, &jt)
	var cred control.Credential
	f.must("", http.MethodPost, control.PathJoin, control.JoinRequest{JoinToken: jt.Token, Name: "test"}, &cred)
	return cred
}

// verifier checks passports against the control plane's JWKS.
func (f *fixture) verifier() *passport.Verifier {
	f.t.Helper()
	v, err := passport.NewVerifier(passport.VerifierOptions{Keys: f.keys.JWKS(time.Now()), Now: f.clock.Now})
	if err != nil {
		f.t.Fatal(err)
	}
	return v
}

// joinRace has n sidecars join with one join token at once and checks
// that exactly one joins and the others are refused as for a spent token.
func (f *fixture) joinRace(token string, n int) {
	f.t.Helper()
	var wg sync.WaitGroup
	var mu sync.Mutex
	ok, refused := 0, 0
	for range n {
		wg.Go(func() {
			st, reason := f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{JoinToken: token}, nil)
			mu.Lock()
			defer mu.Unlock()
			switch {
			case st == http.StatusOK:
				ok++
			case reason == control.ReasonJoinTokenInvalid:
				refused++
			default:
				f.t.Errorf("join: %d %s", st, reason)
			}
		})
	}
	wg.Wait()
	if ok != 1 || refused != n-1 {
		f.t.Fatalf("one token, %d joins: %d joined, %d refused", n, ok, refused)
	}
}
