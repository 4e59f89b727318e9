package examples

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/stackctl/stack/internal/stacktest"
)

// The in-cluster issuer kubernetes/control-plane.yaml trusts.
const clusterIssuer = "https://kubernetes.default.svc.cluster.local"

// kubernetes/control-plane.yaml's rules against tokens shaped as a
// Kubernetes API server projects them, from a stand-in issuer: a sidecar
// started as deployment.yaml starts it (--oidc-token-file) joins as
// billing-bot; the Job's service account is billing-reporter; a token of
// another namespace or audience is refused.
func TestKubernetesWorkloadJoin(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a control plane and a sidecar; skipped in -short mode")
	}
	issuer := startIssuer(t)
	dir := t.TempDir()

	// The control plane's stack.yaml from the manifest, with the stand-in
	// issuer for the cluster's and the local KMS for the cloud one.
	cfg := controlPlaneConfig(t)
	ctl := cfg["control"].(map[string]any)
	issuers := ctl["oidc_issuers"].([]any)
	if len(issuers) != 1 {
		t.Fatalf("control.oidc_issuers: %d issuers, want the cluster's", len(issuers))
	}
	is := issuers[0].(map[string]any)
	if is["issuer"] != clusterIssuer {
		t.Fatalf("control.oidc_issuers[0].issuer %v, want %s", is["issuer"], clusterIssuer)
	}
	is["issuer"] = issuer.url
	is["ca_file"] = issuer.caFile
	delete(cfg, "kms")
	ctl["listen"] = "127.0.0.1:0"
	cfgFile := filepath.Join(dir, "control.yaml")
	b, err := yaml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(cfgFile, b, 0o600); err != nil {
		t.Fatal(err)
	}

	controlHome := filepath.Join(dir, "control")
	cli := stacktest.CLI{Bin: stackBin, Home: controlHome, Env: childEnv()}
	cli.Must(t, "", "--config="+cfgFile, "init", "--control")
	control := startControl(t, controlHome, "--config="+cfgFile)
	cli.Must(t, "", "--config="+cfgFile, "agent", "register", "billing-bot", "--grant", grants[0])
	cli.Must(t, "", "--config="+cfgFile, "agent", "register", "billing-reporter", "--role", "billing-reporter")

	// The sidecar of deployment.yaml: its own data directory, the control
	// CA, the projected token; POD_NAME names it.
	sidecarHome := filepath.Join(dir, "sidecar")
	(&stacktest.CLI{Bin: stackBin, Home: sidecarHome, Env: childEnv()}).Must(t, "", "init")
	tokenDir := filepath.Join(dir, "token")
	if err := os.MkdirAll(tokenDir, 0o700); err != nil {
		t.Fatal(err)
	}
	tokenFile := filepath.Join(tokenDir, "token")
	if err := os.WriteFile(tokenFile, []byte(issuer.token(t, "billing", "billing-agent", "stack")), 0o600); err != nil {
		t.Fatal(err)
	}
	sc := stacktest.StartSidecar(t, stackBin, sidecarHome, childEnv("POD_NAME=billing-agent-5d8c7-x2x9q"),
		"--control="+control.url,
		"--control-ca="+filepath.Join(controlHome, "control-ca.pem"),
		"--oidc-token-file="+tokenFile,
	)
	if r := readyz(t, sc.Admin); !strings.Contains(r, "agent billing-bot") {
		t.Errorf("the sidecar did not join as billing-bot:\n%s\n%s", r, sc.Log())
	}
	var st struct {
		Sidecars []struct{ Name, Agent, Method string }
	}
	if err := json.Unmarshal([]byte(cli.Must(t, "", "--config="+cfgFile, "control", "status", "--json")), &st); err != nil {
		t.Fatal(err)
	}
	if len(st.Sidecars) != 1 || st.Sidecars[0].Name != "billing-agent-5d8c7-x2x9q" || st.Sidecars[0].Agent != "billing-bot" {
		t.Errorf("control status: %+v, want one sidecar billing-agent-5d8c7-x2x9q serving billing-bot", st.Sidecars)
	}

	// The other rules, straight against the join API.
	roots, err := loadPool(filepath.Join(controlHome, "control-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name, ns, sa, aud string
		agent, reason     string
	}{
		{name: "job", ns: "billing", sa: "billing-reporter", aud: "stack", agent: "billing-reporter"},
		{name: "other namespace", ns: "default", sa: "billing-agent", aud: "stack", reason: "workload_no_rule"},
		{name: "API audience", ns: "billing", sa: "billing-agent", aud: "https://kubernetes.default.svc.cluster.local", reason: "workload_audience"},
	} {
		t.Run(c.name, func(t *testing.T) {
			agent, reason := join(t, control.url, roots, issuer.token(t, c.ns, c.sa, c.aud))
			if agent != c.agent || reason != c.reason {
				t.Errorf("join as %s/%s for %s: agent %q, reason %q; want %q, %q", c.ns, c.sa, c.aud, agent, reason, c.agent, c.reason)
			}
		})
	}
	sc.Stop(t)
}

// controlPlaneConfig is the stack.yaml of the ConfigMap in
// kubernetes/control-plane.yaml, as a tree.
func controlPlaneConfig(t *testing.T) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("kubernetes", "control-plane.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, doc := range strings.Split(string(b), "\n---\n") {
		var cm corev1.ConfigMap
		if err := yaml.Unmarshal([]byte(doc), &cm); err != nil || cm.Kind != "ConfigMap" {
			continue
		}
		text, ok := cm.Data["stack.yaml"]
		if !ok {
			continue
		}
		var cfg map[string]any
		if err := yaml.Unmarshal([]byte(text), &cfg); err != nil {
			t.Fatalf("ConfigMap %s: stack.yaml: %v", cm.Name, err)
		}
		return cfg
	}
	t.Fatal("kubernetes/control-plane.yaml has no ConfigMap with a stack.yaml")
	return nil
}

// join presents a workload token to the control plane and returns the
// agent it joined as, or the reason it was refused.
func join(t *testing.T, base string, roots *x509.CertPool, token string) (agent, reason string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
	}}
	defer c.CloseIdleConnections()
	body, _ := json.Marshal(map[string]string{"oidc_token": token, "name": "test"})
	resp, err := c.Post(base+"/v1/join", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out struct {
		Agent  string `json:"agent"`
		Reason string `json:"reason"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
		t.Fatalf("join: status %d: %v", resp.StatusCode, err)
	}
	return out.Agent, out.Reason
}

// issuer is a stand-in for a Kubernetes API server's service-account
// token issuer: its discovery document and key set over TLS, and tokens
// with the claims the API server projects.
type issuer struct {
	url    string
	caFile string
	signer jose.Signer
}

func startIssuer(t *testing.T) *issuer {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	jwk := jose.JSONWebKey{Key: key, KeyID: "sa-key-1", Algorithm: string(jose.RS256), Use: "sig"}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jwk}, (&jose.SignerOptions{}).WithType("JWT"))
	if err != nil {
		t.Fatal(err)
	}
	is := &issuer{signer: signer}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, map[string]any{
			"issuer": is.url, "jwks_uri": is.url + "/openid/v1/jwks",
			"response_types_supported": []string{"id_token"}, "subject_types_supported": []string{"public"},
			"id_token_signing_alg_values_supported": []string{"RS256"},
		})
	})
	mux.HandleFunc("GET /openid/v1/jwks", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, http.StatusOK, jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk.Public()}})
	})
	srv := httptest.NewTLSServer(mux)
	t.Cleanup(srv.Close)
	is.url = srv.URL
	is.caFile = filepath.Join(t.TempDir(), "ca.crt")
	ca := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(is.caFile, ca, 0o600); err != nil {
		t.Fatal(err)
	}
	return is
}

// token is a projected service-account token of namespace ns and service
// account sa for the audience aud, with the claims the API server sets.
func (is *issuer) token(t *testing.T, ns, sa, aud string) string {
	t.Helper()
	now := time.Now()
	claims := map[string]any{
		"iss": is.url, "aud": []string{aud}, "sub": "system:serviceaccount:" + ns + ":" + sa,
		"iat": now.Unix(), "nbf": now.Unix(), "exp": now.Add(time.Hour).Unix(),
		"jti": stacktest.RandomHex(t, 8),
		"kubernetes.io": map[string]any{
			"namespace":      ns,
			"node":           map[string]any{"name": "node-1", "uid": stacktest.RandomHex(t, 8)},
			"pod":            map[string]any{"name": sa + "-5d8c7-x2x9q", "uid": stacktest.RandomHex(t, 8)},
			"serviceaccount": map[string]any{"name": sa, "uid": stacktest.RandomHex(t, 8)},
		},
	}
	payload, err := json.Marshal(claims)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := is.signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	tok, err := sig.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}
