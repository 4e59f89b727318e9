package oidctest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Paths the issuer serves, as kube-apiserver serves them.
const (
	DiscoveryPath = "/.well-known/openid-configuration"
	JWKSPath      = "/openid/v1/jwks"
)

// Issuer is an OIDC issuer on a loopback TLS server. It is safe for
// concurrent use.
type Issuer struct {
	srv       *httptest.Server
	mux       *http.ServeMux
	transport *http.Transport // HTTPClient's

	mu       sync.Mutex
	key      *rsa.PrivateKey
	kid      string
	down     bool
	requests map[string]int // by path
	now      func() time.Time
	clients  map[string]Client         // by ID
	users    map[string]map[string]any // SetUser's claims, by name
	codes    map[string]grant          // unspent authorization codes
}

// NewIssuer starts an issuer on 127.0.0.1 with a fresh key. The server is
// closed when the test ends.
func NewIssuer(t testing.TB) *Issuer {
	t.Helper()
	i := &Issuer{
		requests: map[string]int{},
		now:      time.Now,
		clients:  map[string]Client{},
		users:    map[string]map[string]any{},
		codes:    map[string]grant{},
	}
	i.key, i.kid = newKey()
	i.mux = http.NewServeMux()
	i.mux.HandleFunc("GET "+DiscoveryPath, i.serveDiscovery)
	i.mux.HandleFunc("GET "+JWKSPath, i.serveJWKS)
	i.mux.HandleFunc("GET "+AuthorizePath, i.serveSignInPage)
	i.mux.HandleFunc("POST "+AuthorizePath, i.serveSignIn)
	i.mux.HandleFunc("POST "+TokenPath, i.serveToken)
	i.srv = httptest.NewUnstartedServer(http.HandlerFunc(i.serve))
	// Every httptest server presents the same built-in certificate; one
	// of its own lets a test tell issuers' roots apart.
	i.srv.TLS = &tls.Config{Certificates: []tls.Certificate{selfSigned(t)}}
	i.srv.StartTLS()
	i.transport = &http.Transport{
		Proxy:             nil, // never one from the environment
		TLSClientConfig:   &tls.Config{RootCAs: i.RootCAs(), MinVersion: tls.VersionTLS12},
		ForceAttemptHTTP2: true,
	}
	t.Cleanup(i.Close)
	return i
}

// URL is the issuer's URL: the token's iss and the discovery document's
// issuer.
func (i *Issuer) URL() string { return i.srv.URL }

// RootCAs holds the certificate the issuer's server presents.
func (i *Issuer) RootCAs() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(i.srv.Certificate())
	return pool
}

// CAPEM is the server's certificate in PEM, for configuration files.
func (i *Issuer) CAPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: i.srv.Certificate().Raw})
}

// KeyID is the kid of the current signing key.
func (i *Issuer) KeyID() string {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.kid
}

// RotateKey replaces the signing key. The old key is no longer published,
// so tokens it signed stop verifying once a verifier refetches the keys.
func (i *Issuer) RotateKey() {
	key, kid := newKey()
	i.mu.Lock()
	defer i.mu.Unlock()
	i.key, i.kid = key, kid
}

// SetDown makes the issuer answer 503 to every request (down) or serve
// again.
func (i *Issuer) SetDown(down bool) {
	i.mu.Lock()
	defer i.mu.Unlock()
	i.down = down
}

// Requests counts the requests made for path, answered or not.
func (i *Issuer) Requests(path string) int {
	i.mu.Lock()
	defer i.mu.Unlock()
	return i.requests[path]
}

// HTTPClient is a client that trusts the issuer's certificate and no
// other, and uses no proxy: the client for the contexts of
// golang.org/x/oauth2 (oauth2.HTTPClient) and go-oidc (oidc.ClientContext).
// Each call returns a new client; all share one transport, whose idle
// connections Close closes.
func (i *Issuer) HTTPClient() *http.Client {
	return &http.Client{Transport: i.transport, Timeout: 10 * time.Second}
}

// SetNow sets the clock that dates authorization codes, ID tokens and the
// default IssuedAt of service-account tokens; nil restores time.Now.
func (i *Issuer) SetNow(now func() time.Time) {
	if now == nil {
		now = time.Now
	}
	i.mu.Lock()
	defer i.mu.Unlock()
	i.now = now
}

func (i *Issuer) clock() time.Time {
	i.mu.Lock()
	now := i.now
	i.mu.Unlock()
	return now()
}

// Close stops the server and closes its connections. It is idempotent.
func (i *Issuer) Close() {
	i.srv.Close()
	i.transport.CloseIdleConnections()
}

// TokenOptions shape a service-account token. Zero values take the
// defaults.
type TokenOptions struct {
	// Audience is aud (default ["stack"]).
	Audience []string
	// TTL is exp - iat (default one hour).
	TTL time.Duration
	// IssuedAt is iat and nbf (default now, by the issuer's clock).
	IssuedAt time.Time
	// Pod, when set, binds the token to a pod of that name, as a projected
	// token mounted into a pod is bound.
	Pod string
	// Issuer overrides iss (default URL()).
	Issuer string
}

// ServiceAccountToken signs a token for service account sa in namespace
// ns, with the claims kube-apiserver writes into a projected token.
func (i *Issuer) ServiceAccountToken(t testing.TB, ns, sa string, opt TokenOptions) string {
	t.Helper()
	aud := opt.Audience
	if aud == nil {
		aud = []string{"stack"}
	}
	ttl := opt.TTL
	if ttl == 0 {
		ttl = time.Hour
	}
	iat := opt.IssuedAt
	if iat.IsZero() {
		iat = i.clock()
	}
	iss := opt.Issuer
	if iss == "" {
		iss = i.URL()
	}
	k8s := kubernetesClaims{
		Namespace:      ns,
		ServiceAccount: ref{Name: sa, UID: stableUID("serviceaccount", ns, sa)},
	}
	if opt.Pod != "" {
		k8s.Pod = &ref{Name: opt.Pod, UID: stableUID("pod", ns, opt.Pod)}
	}
	return i.Sign(t, serviceAccountClaims{
		Audience:   aud,
		Expiry:     iat.Add(ttl).Unix(),
		IssuedAt:   iat.Unix(),
		Issuer:     iss,
		JTI:        randomUID(),
		Kubernetes: k8s,
		NotBefore:  iat.Unix(),
		Subject:    "system:serviceaccount:" + ns + ":" + sa,
	})
}

// Sign signs claims (anything encoding/json turns into an object) with
// the current key, header {alg RS256, kid} as kube-apiserver writes it.
func (i *Issuer) Sign(t testing.TB, claims any) string {
	t.Helper()
	token, err := i.sign(claims)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

// sign is Sign for the issuer's own endpoints, which have no test to fail.
func (i *Issuer) sign(claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("oidctest: encode claims: %w", err)
	}
	i.mu.Lock()
	key, kid := i.key, i.kid
	i.mu.Unlock()
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		return "", fmt.Errorf("oidctest: signer: %w", err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oidctest: sign: %w", err)
	}
	token, err := jws.CompactSerialize()
	if err != nil {
		return "", fmt.Errorf("oidctest: serialize: %w", err)
	}
	return token, nil
}

// The claims of a projected service-account token, in the layout of
// k8s.io/kubernetes/pkg/serviceaccount's privateClaims.
type serviceAccountClaims struct {
	Audience   []string         `json:"aud"`
	Expiry     int64            `json:"exp"`
	IssuedAt   int64            `json:"iat"`
	Issuer     string           `json:"iss"`
	JTI        string           `json:"jti"`
	Kubernetes kubernetesClaims `json:"kubernetes.io"`
	NotBefore  int64            `json:"nbf"`
	Subject    string           `json:"sub"`
}

type kubernetesClaims struct {
	Namespace      string `json:"namespace"`
	Pod            *ref   `json:"pod,omitempty"`
	ServiceAccount ref    `json:"serviceaccount"`
}

type ref struct {
	Name string `json:"name"`
	UID  string `json:"uid"`
}

// The discovery document: the fields kube-apiserver serves
// (pkg/serviceaccount's openIDMetadata), then those of the sign-in
// endpoints.
type discovery struct {
	Issuer        string   `json:"issuer"`
	JWKSURI       string   `json:"jwks_uri"`
	ResponseTypes []string `json:"response_types_supported"`
	SubjectTypes  []string `json:"subject_types_supported"`
	SigningAlgs   []string `json:"id_token_signing_alg_values_supported"`

	AuthorizationEndpoint string   `json:"authorization_endpoint"`
	TokenEndpoint         string   `json:"token_endpoint"`
	GrantTypes            []string `json:"grant_types_supported"`
	CodeChallengeMethods  []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuth     []string `json:"token_endpoint_auth_methods_supported"`
	Scopes                []string `json:"scopes_supported"`
	Claims                []string `json:"claims_supported"`
}

// serve counts the request and answers it, or answers 503 while the
// issuer is down.
func (i *Issuer) serve(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	i.requests[r.URL.Path]++
	down := i.down
	i.mu.Unlock()
	if down {
		http.Error(w, "issuer is down", http.StatusServiceUnavailable)
		return
	}
	i.mux.ServeHTTP(w, r)
}

func (i *Issuer) serveDiscovery(w http.ResponseWriter, r *http.Request) {
	writeCacheableJSON(w, "application/json", discovery{
		Issuer:        i.URL(),
		JWKSURI:       i.URL() + JWKSPath,
		ResponseTypes: []string{"code", "id_token"},
		SubjectTypes:  []string{"public"},
		SigningAlgs:   []string{"RS256"},

		AuthorizationEndpoint: i.URL() + AuthorizePath,
		TokenEndpoint:         i.URL() + TokenPath,
		GrantTypes:            []string{"authorization_code"},
		CodeChallengeMethods:  []string{"S256"},
		TokenEndpointAuth:     []string{"client_secret_basic", "client_secret_post"},
		Scopes:                []string{"openid", "email", "profile"},
		Claims:                []string{"iss", "sub", "aud", "exp", "iat", "nonce", "email", "email_verified", "name"},
	})
}

func (i *Issuer) serveJWKS(w http.ResponseWriter, r *http.Request) {
	i.mu.Lock()
	key, kid := i.key, i.kid
	i.mu.Unlock()
	writeCacheableJSON(w, "application/jwk-set+json", jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: kid, Algorithm: "RS256", Use: "sig"}}})
}

func writeCacheableJSON(w http.ResponseWriter, contentType string, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("Cache-Control", "public, max-age=3600")
	w.Write(b)
}

// selfSigned makes a CA certificate for the loopback addresses that the
// server presents as its own.
func selfSigned(t testing.TB) tls.Certificate {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatalf("oidctest: certificate key: %v", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		t.Fatalf("oidctest: serial: %v", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "oidctest issuer"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatalf("oidctest: certificate: %v", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}

// newKey makes an RSA key and its kid: base64url(SHA-256(PKIX DER)), as
// kube-apiserver's keyIDFromPublicKey computes it.
func newKey() (*rsa.PrivateKey, string) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic(fmt.Sprintf("oidctest: generate key: %v", err))
	}
	der, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		panic(fmt.Sprintf("oidctest: encode public key: %v", err))
	}
	h := crypto.SHA256.New()
	h.Write(der)
	return key, base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// stableUID gives an object the same UID in every token, as a real object
// keeps its UID.
func stableUID(kind, ns, name string) string {
	sum := sha256.Sum256([]byte(kind + "/" + ns + "/" + name))
	return formatUUID(sum[:16])
}

func randomUID() string {
	var b [16]byte
	rand.Read(b[:])
	return formatUUID(b[:])
}

func formatUUID(b []byte) string {
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
