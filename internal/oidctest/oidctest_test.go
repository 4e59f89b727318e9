package oidctest

import (
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

func client(i *Issuer) *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: i.RootCAs()}}}
}

func getJSON(t *testing.T, c *http.Client, url string, v any) int {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
			t.Fatal(err)
		}
	}
	return resp.StatusCode
}

func decodeSegment(t *testing.T, seg string) map[string]any {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(seg)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// The token has kube-apiserver's layout and verifies under the published
// key, which the discovery document points at.
func TestServiceAccountTokenLayout(t *testing.T) {
	i := NewIssuer(t)
	c := client(i)

	var disc discovery
	if code := getJSON(t, c, i.URL()+DiscoveryPath, &disc); code != http.StatusOK {
		t.Fatalf("discovery: %d", code)
	}
	if disc.Issuer != i.URL() || disc.JWKSURI != i.URL()+JWKSPath {
		t.Fatalf("discovery = %+v", disc)
	}
	var jwks jose.JSONWebKeySet
	if code := getJSON(t, c, disc.JWKSURI, &jwks); code != http.StatusOK {
		t.Fatalf("jwks: %d", code)
	}
	if len(jwks.Keys) != 1 || jwks.Keys[0].KeyID != i.KeyID() || jwks.Keys[0].Algorithm != "RS256" {
		t.Fatalf("jwks = %+v", jwks.Keys)
	}

	iat := time.Unix(1_800_000_000, 0)
	tok := i.ServiceAccountToken(t, "billing", "bot", TokenOptions{IssuedAt: iat, Pod: "bot-7d9f"})
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		t.Fatalf("token has %d parts", len(parts))
	}
	header := decodeSegment(t, parts[0])
	if len(header) != 2 || header["alg"] != "RS256" || header["kid"] != i.KeyID() {
		t.Fatalf("header = %v", header)
	}
	claims := decodeSegment(t, parts[1])
	for claim, want := range map[string]any{
		"iss": i.URL(),
		"sub": "system:serviceaccount:billing:bot",
		"iat": float64(iat.Unix()),
		"nbf": float64(iat.Unix()),
		"exp": float64(iat.Add(time.Hour).Unix()),
	} {
		if claims[claim] != want {
			t.Errorf("%s = %v, want %v", claim, claims[claim], want)
		}
	}
	if aud, _ := claims["aud"].([]any); len(aud) != 1 || aud[0] != "stack" {
		t.Errorf("aud = %v, want [stack]", claims["aud"])
	}
	k8s, _ := claims["kubernetes.io"].(map[string]any)
	sa, _ := k8s["serviceaccount"].(map[string]any)
	pod, _ := k8s["pod"].(map[string]any)
	if k8s["namespace"] != "billing" || sa["name"] != "bot" || sa["uid"] == "" || pod["name"] != "bot-7d9f" || pod["uid"] == "" {
		t.Errorf("kubernetes.io = %v", k8s)
	}

	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&jwks.Keys[0]); err != nil {
		t.Fatalf("token does not verify under the published key: %v", err)
	}

	// Without a pod, the token is not bound to one.
	claims = decodeSegment(t, strings.Split(i.ServiceAccountToken(t, "billing", "bot", TokenOptions{}), ".")[1])
	if _, ok := claims["kubernetes.io"].(map[string]any)["pod"]; ok {
		t.Errorf("unbound token names a pod: %v", claims["kubernetes.io"])
	}
}

func TestRotateKeyAndDown(t *testing.T) {
	i := NewIssuer(t)
	c := client(i)
	old := i.KeyID()
	i.RotateKey()
	if i.KeyID() == old {
		t.Fatal("kid unchanged by RotateKey")
	}
	var jwks jose.JSONWebKeySet
	getJSON(t, c, i.URL()+JWKSPath, &jwks)
	if len(jwks.Keys) != 1 || jwks.Keys[0].KeyID != i.KeyID() {
		t.Fatalf("after rotation jwks = %+v, want only %s", jwks.Keys, i.KeyID())
	}

	i.SetDown(true)
	if code := getJSON(t, c, i.URL()+DiscoveryPath, nil); code != http.StatusServiceUnavailable {
		t.Fatalf("down: discovery answered %d", code)
	}
	i.SetDown(false)
	if code := getJSON(t, c, i.URL()+DiscoveryPath, &discovery{}); code != http.StatusOK {
		t.Fatalf("up again: discovery answered %d", code)
	}
	if n := i.Requests(DiscoveryPath); n != 2 {
		t.Fatalf("discovery requests = %d, want 2", n)
	}
}

// Each issuer presents a certificate of its own, so a verifier given the
// wrong issuer's roots fails as it would against a real one.
func TestIssuersHaveTheirOwnRoots(t *testing.T) {
	a, b := NewIssuer(t), NewIssuer(t)
	c := client(b)
	if _, err := c.Get(a.URL() + DiscoveryPath); err == nil {
		t.Fatal("issuer a answered over TLS verified with issuer b's roots")
	}
	if code := getJSON(t, client(a), a.URL()+DiscoveryPath, &discovery{}); code != http.StatusOK {
		t.Fatalf("discovery: %d", code)
	}
}
