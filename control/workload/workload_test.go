package workload_test

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"

	"github.com/stackctl/stack/control/workload"
	"github.com/stackctl/stack/internal/oidctest"
	"github.com/stackctl/stack/internal/testclock"
)

// kubeRules map Kubernetes service accounts to agents; the last one
// overlaps the first, so order matters.
var kubeRules = []workload.Rule{
	{Agent: "billing-bot", Claims: map[string]string{
		"kubernetes.io/namespace":           "billing",
		"kubernetes.io/serviceaccount/name": "bot",
	}},
	{Agent: "ci-runner", Claims: map[string]string{"kubernetes.io/namespace": "ci-*"}},
	{Agent: "reporter", Claims: map[string]string{"kubernetes.io/pod/name": "reporter-*"}},
	{Agent: "any-billing", Claims: map[string]string{"sub": "system:serviceaccount:billing:*"}},
}

func kubeIssuer(i *oidctest.Issuer, rules ...workload.Rule) workload.Issuer {
	if rules == nil {
		rules = kubeRules
	}
	return workload.Issuer{URL: i.URL(), RootCAs: i.RootCAs(), Rules: rules}
}

func newVerifier(t testing.TB, opts workload.Options, issuers ...workload.Issuer) *workload.Verifier {
	t.Helper()
	v, err := workload.New(issuers, opts)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func mustVerify(t testing.TB, v *workload.Verifier, token string) workload.Identity {
	t.Helper()
	id, err := v.Verify(context.Background(), token)
	if err != nil {
		t.Fatalf("Verify: %v (reason %s)", err, workload.Reason(err))
	}
	return id
}

// wantRefusal checks the reason, the sentinel and that the message never
// quotes the token.
func wantRefusal(t testing.TB, err error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("Verify succeeded, want %s", reason)
	}
	if got := workload.Reason(err); got != reason {
		t.Fatalf("reason = %s, want %s (err: %v)", got, reason, err)
	}
}

func wantNoToken(t testing.TB, err error, token string) {
	t.Helper()
	if err == nil || token == "" {
		return
	}
	msg := err.Error()
	for _, part := range strings.Split(token, ".") {
		if len(part) >= 16 && strings.Contains(msg, part) {
			t.Fatalf("error quotes the token: %v", err)
		}
	}
}

func TestVerifyKubernetesToken(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	now := time.Now()

	tests := []struct {
		name      string
		ns, sa    string
		opt       oidctest.TokenOptions
		wantAgent string
	}{
		{"namespace and service account", "billing", "bot", oidctest.TokenOptions{}, "billing-bot"},
		{"glob on namespace", "ci-eu-west", "runner", oidctest.TokenOptions{}, "ci-runner"},
		{"pod name", "reports", "default", oidctest.TokenOptions{Pod: "reporter-5f6c7"}, "reporter"},
		{"first match wins over a later glob", "billing", "bot", oidctest.TokenOptions{Pod: "reporter-1"}, "billing-bot"},
		{"glob on sub", "billing", "invoicer", oidctest.TokenOptions{}, "any-billing"},
		{"one of several audiences", "billing", "bot", oidctest.TokenOptions{Audience: []string{"vault", "stack"}}, "billing-bot"},
		{"expired within the leeway", "billing", "bot", oidctest.TokenOptions{IssuedAt: now.Add(-time.Hour - 10*time.Second)}, "billing-bot"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := kube.ServiceAccountToken(t, tc.ns, tc.sa, tc.opt)
			id := mustVerify(t, v, token)
			if id.Agent != tc.wantAgent {
				t.Fatalf("agent = %q, want %q", id.Agent, tc.wantAgent)
			}
			if id.Issuer != kube.URL() || id.Subject != "system:serviceaccount:"+tc.ns+":"+tc.sa {
				t.Fatalf("issuer %q subject %q", id.Issuer, id.Subject)
			}
			iat := tc.opt.IssuedAt
			if iat.IsZero() {
				iat = now
			}
			if d := id.Expiry.Sub(iat.Add(time.Hour)); d < -2*time.Second || d > 2*time.Second {
				t.Fatalf("expiry %v, want about %v", id.Expiry, iat.Add(time.Hour))
			}
			k8s, _ := id.Claims["kubernetes.io"].(map[string]any)
			if k8s["namespace"] != tc.ns {
				t.Fatalf("claims = %v", id.Claims)
			}
		})
	}
}

// forge signs claims with a key the issuer never published, under the
// kid the issuer uses.
func forge(t testing.TB, kid string, payload []byte) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: kid}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jws, err := signer.Sign(payload)
	if err != nil {
		t.Fatal(err)
	}
	s, err := jws.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func payloadOf(t testing.TB, token string) []byte {
	t.Helper()
	b, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[1])
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func b64(s string) string { return base64.RawURLEncoding.EncodeToString([]byte(s)) }

func hs256(header, payload string, secret []byte) string {
	signing := b64(header) + "." + b64(payload)
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(signing))
	return signing + "." + base64.RawURLEncoding.EncodeToString(mac.Sum(nil))
}

func TestVerifyRefusals(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	other := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{},
		kubeIssuer(kube),
		workload.Issuer{URL: other.URL(), RootCAs: other.RootCAs(), Rules: []workload.Rule{{Agent: "x", Claims: map[string]string{"sub": "nobody"}}}},
	)
	good := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	goodPayload := payloadOf(t, good)
	now := time.Now()
	claims := fmt.Sprintf(`{"iss":%q,"sub":"system:serviceaccount:billing:bot","aud":["stack"],"exp":%d,"iat":%d}`, kube.URL(), now.Add(time.Hour).Unix(), now.Unix())

	tests := []struct {
		name   string
		token  string
		reason string
		// wantInMsg are substrings the message must hold.
		wantInMsg []string
	}{
		{
			name:      "wrong audience",
			token:     kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{Audience: []string{"vault"}}),
			reason:    workload.ReasonAudience,
			wantInMsg: []string{kube.URL(), "system:serviceaccount:billing:bot", `"vault"`},
		},
		{
			name:      "expired",
			token:     kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{IssuedAt: now.Add(-2 * time.Hour)}),
			reason:    workload.ReasonExpired,
			wantInMsg: []string{kube.URL(), "system:serviceaccount:billing:bot"},
		},
		{
			name:   "not yet valid",
			token:  kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{IssuedAt: now.Add(10 * time.Minute)}),
			reason: workload.ReasonInvalid,
		},
		{
			name:      "unknown issuer",
			token:     kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{Issuer: "https://kubernetes.default.svc.cluster.local"}),
			reason:    workload.ReasonIssuerUnknown,
			wantInMsg: []string{"https://kubernetes.default.svc.cluster.local"},
		},
		{
			name:      "no rule matches",
			token:     kube.ServiceAccountToken(t, "reports", "default", oidctest.TokenOptions{}),
			reason:    workload.ReasonNoRule,
			wantInMsg: []string{kube.URL(), "system:serviceaccount:reports:default", `kubernetes.io/namespace="reports"`, "kubernetes.io/pod/name (missing"},
		},
		{
			name:      "signed by another key under the same kid",
			token:     forge(t, kube.KeyID(), goodPayload),
			reason:    workload.ReasonInvalid,
			wantInMsg: []string{kube.URL(), "signature"},
		},
		{
			name:   "signed by another configured issuer",
			token:  other.Sign(t, rawJSON(claims)),
			reason: workload.ReasonInvalid,
		},
		{
			name:   "alg none",
			token:  b64(`{"alg":"none"}`) + "." + b64(claims) + ".",
			reason: workload.ReasonInvalid,
		},
		{
			name:   "HS256 keyed with the issuer's certificate",
			token:  hs256(fmt.Sprintf(`{"alg":"HS256","kid":%q}`, kube.KeyID()), claims, kube.CAPEM()),
			reason: workload.ReasonInvalid,
		},
		{
			name:   "good signature on other claims",
			token:  strings.Join([]string{strings.Split(good, ".")[0], b64(strings.ReplaceAll(string(goodPayload), "billing", "payroll")), strings.Split(good, ".")[2]}, "."),
			reason: workload.ReasonInvalid,
		},
		{name: "empty", token: "", reason: workload.ReasonMalformed},
		{name: "one part", token: "not-a-token", reason: workload.ReasonMalformed},
		{name: "four parts", token: good + ".x", reason: workload.ReasonMalformed},
		{name: "header not base64url", token: "!!." + b64(claims) + ".sig", reason: workload.ReasonMalformed},
		{name: "header not an object", token: b64(`"RS256"`) + "." + b64(claims) + ".sig", reason: workload.ReasonMalformed},
		{name: "claims not JSON", token: b64(`{"alg":"RS256"}`) + "." + b64("iss=me") + ".sig", reason: workload.ReasonMalformed},
		{name: "claims an array", token: b64(`{"alg":"RS256"}`) + "." + b64(`["iss"]`) + ".sig", reason: workload.ReasonMalformed},
		{name: "claims with trailing data", token: b64(`{"alg":"RS256"}`) + "." + b64(claims+"{}") + ".sig", reason: workload.ReasonMalformed},
		{name: "iss not a string", token: b64(`{"alg":"RS256"}`) + "." + b64(`{"iss":42}`) + ".sig", reason: workload.ReasonMalformed},
		{
			name:   "oversized",
			token:  kube.Sign(t, map[string]any{"iss": kube.URL(), "sub": "x", "aud": "stack", "exp": now.Add(time.Hour).Unix(), "pad": strings.Repeat("p", workload.MaxTokenSize)}),
			reason: workload.ReasonMalformed,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(context.Background(), tc.token)
			wantRefusal(t, err, tc.reason)
			wantNoToken(t, err, tc.token)
			for _, s := range tc.wantInMsg {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("message lacks %q: %v", s, err)
				}
			}
		})
	}
}

// rawJSON is a JSON object's text, which Sign encodes as is.
type rawJSON string

func (r rawJSON) MarshalJSON() ([]byte, error) { return []byte(r), nil }

func TestSentinelsWrapped(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	for token, want := range map[string]error{
		"x": workload.ErrTokenMalformed,
		kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{Issuer: "https://elsewhere"}): workload.ErrIssuerUnknown,
		kube.ServiceAccountToken(t, "nobody", "nobody", oidctest.TokenOptions{}):                          workload.ErrNoRule,
		kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{Audience: []string{"x"}}):     workload.ErrAudience,
	} {
		if _, err := v.Verify(context.Background(), token); !errors.Is(err, want) {
			t.Errorf("err = %v, want %v", err, want)
		}
	}
	if workload.Reason(nil) != "" || workload.Reason(errors.New("other")) != workload.ReasonInvalid {
		t.Error("Reason of nil or of a foreign error")
	}
}

func TestClockAndLeeway(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	iat := time.Now().Add(-24 * time.Hour)
	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{IssuedAt: iat, TTL: 10 * time.Minute})
	exp := iat.Add(10 * time.Minute)

	clk := testclock.New(iat.Add(time.Minute))
	v := newVerifier(t, workload.Options{Now: clk.Now}, kubeIssuer(kube))
	mustVerify(t, v, token)

	clk.Set(exp.Add(workload.DefaultLeeway - time.Second))
	mustVerify(t, v, token)

	clk.Set(exp.Add(workload.DefaultLeeway + time.Second))
	_, err := v.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonExpired)

	clk.Set(iat.Add(-workload.DefaultLeeway + time.Second))
	mustVerify(t, v, token)
	clk.Set(iat.Add(-workload.DefaultLeeway - time.Second))
	_, err = v.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonInvalid)

	// A negative leeway means none.
	strict := newVerifier(t, workload.Options{Now: clk.Now, Leeway: -1}, kubeIssuer(kube))
	clk.Set(exp.Add(time.Second))
	_, err = strict.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonExpired)
}

func TestIssuerDownAtNewThenUp(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	kube.SetDown(true)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	if n := kube.Requests(oidctest.DiscoveryPath); n != 0 {
		t.Fatalf("New made %d discovery requests, want none", n)
	}
	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})

	_, err := v.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)
	if !strings.Contains(err.Error(), kube.URL()) {
		t.Errorf("message does not name the issuer: %v", err)
	}
	_, err = v.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)
	if n := kube.Requests(oidctest.DiscoveryPath); n != 2 {
		t.Fatalf("discovery requests = %d, want 2: a failed discovery is tried again", n)
	}

	kube.SetDown(false)
	if id := mustVerify(t, v, token); id.Agent != "billing-bot" {
		t.Fatalf("agent = %q", id.Agent)
	}
	mustVerify(t, v, token)
	if n := kube.Requests(oidctest.DiscoveryPath); n != 3 {
		t.Fatalf("discovery requests = %d, want 3: a discovered issuer is kept", n)
	}
}

func TestKeyRotation(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	before := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	mustVerify(t, v, before)

	kube.RotateKey()
	after := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	if id := mustVerify(t, v, after); id.Agent != "billing-bot" {
		t.Fatalf("agent = %q", id.Agent)
	}
	// The old key is no longer published.
	_, err := v.Verify(context.Background(), before)
	wantRefusal(t, err, workload.ReasonInvalid)
}

func TestKeysUnavailableAfterDiscovery(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	before := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	mustVerify(t, v, before)

	kube.SetDown(true)
	// Keys already fetched keep working while the issuer is away.
	mustVerify(t, v, before)

	kube.RotateKey()
	after := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	_, err := v.Verify(context.Background(), after)
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)

	kube.SetDown(false)
	// go-oidc clears its failed fetch just after handing out its error: a
	// Verify in that moment is handed the same error once more.
	deadline := time.Now().Add(5 * time.Second)
	for {
		_, err := v.Verify(context.Background(), after)
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the issuer is back, the token still does not verify: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestDiscoveredIssuerMustMatchExactly(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	withSlash := kube.URL() + "/"
	v := newVerifier(t, workload.Options{}, workload.Issuer{URL: withSlash, RootCAs: kube.RootCAs(), Rules: kubeRules})
	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{Issuer: withSlash})
	_, err := v.Verify(context.Background(), token)
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)
}

func TestUntrustedIssuerCertificate(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	stranger := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, workload.Issuer{URL: kube.URL(), RootCAs: stranger.RootCAs(), Rules: kubeRules})
	_, err := v.Verify(context.Background(), kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)
}

// githubClaims are the claims of a GitHub Actions OIDC token.
func githubClaims(iss, repo, ref string, now time.Time) map[string]any {
	owner, _, _ := strings.Cut(repo, "/")
	return map[string]any{
		"iss":                 iss,
		"aud":                 "stack",
		"sub":                 "repo:" + repo + ":ref:" + ref,
		"repository":          repo,
		"repository_owner":    owner,
		"repository_owner_id": 4242,
		"ref":                 ref,
		"ref_protected":       true,
		"event_name":          "push",
		"workflow":            "deploy",
		"runner_environment":  "github-hosted",
		"jti":                 "5e1d8d3c-6b0f-4c59-9c6a-6f1e0c1a2b3c",
		"iat":                 now.Unix(),
		"nbf":                 now.Unix(),
		"exp":                 now.Add(5 * time.Minute).Unix(),
	}
}

func TestSecondIssuer(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	ci := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{},
		kubeIssuer(kube),
		workload.Issuer{URL: ci.URL(), RootCAs: ci.RootCAs(), Rules: []workload.Rule{
			{Agent: "deployer", Claims: map[string]string{"repository": "stackctl/*", "ref": "refs/heads/main", "ref_protected": "true"}},
			{Agent: "owner-4242", Claims: map[string]string{"repository_owner_id": "4242", "ref": "refs/heads/release-*"}},
		}},
	)
	now := time.Now()
	tests := []struct {
		name, repo, ref string
		wantAgent       string
		wantReason      string
	}{
		{"repository glob", "stackctl/stack", "refs/heads/main", "deployer", ""},
		{"number claim", "someone/fork", "refs/heads/release-1", "owner-4242", ""},
		{"other repository", "someone/fork", "refs/heads/main", "", workload.ReasonNoRule},
		{"glob does not cross a slash", "stackctl/stack", "refs/heads/release-1/x", "", workload.ReasonNoRule},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			token := ci.Sign(t, githubClaims(ci.URL(), tc.repo, tc.ref, now))
			id, err := v.Verify(context.Background(), token)
			if tc.wantReason != "" {
				wantRefusal(t, err, tc.wantReason)
				if !strings.Contains(err.Error(), "repository=") {
					t.Errorf("message does not list the compared claims: %v", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if id.Agent != tc.wantAgent || id.Issuer != ci.URL() || id.Subject != "repo:"+tc.repo+":ref:"+tc.ref {
				t.Fatalf("identity = %+v", id)
			}
		})
	}
	// The Kubernetes issuer's rules still apply to its own tokens only.
	mustVerify(t, v, kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
}

func TestClaimTypes(t *testing.T) {
	ci := oidctest.NewIssuer(t)
	now := time.Now()
	claims := map[string]any{
		"iss": ci.URL(), "aud": []string{"stack"}, "sub": "job", "exp": now.Add(time.Hour).Unix(),
		"n": 12345678901234567, "f": 1.5, "b": false, "s": "x",
		"o":   map[string]any{"deep": map[string]any{"name": "y"}},
		"arr": []string{"a"}, "null": nil,
	}
	token := ci.Sign(t, claims)
	tests := []struct {
		path, glob string
		match      bool
	}{
		{"n", "12345678901234567", true},
		{"f", "1.5", true},
		{"b", "false", true},
		{"s", "x", true},
		{"o/deep/name", "y", true},
		{"o/deep/name", "?", true},
		{"o/deep", "*", false},
		{"o/deep/name/more", "*", false},
		{"arr", "*", false},
		{"null", "*", false},
		{"missing", "*", false},
		{"s", "X", false},
	}
	for _, tc := range tests {
		t.Run(tc.path+"="+tc.glob, func(t *testing.T) {
			v := newVerifier(t, workload.Options{}, workload.Issuer{URL: ci.URL(), RootCAs: ci.RootCAs(), Rules: []workload.Rule{
				{Agent: "a", Claims: map[string]string{tc.path: tc.glob}},
			}})
			_, err := v.Verify(context.Background(), token)
			if tc.match && err != nil {
				t.Fatalf("want a match: %v", err)
			}
			if !tc.match {
				wantRefusal(t, err, workload.ReasonNoRule)
			}
		})
	}
}

// Concurrent first calls share one discovery and one key fetch.
func TestOneDiscoveryInFlight(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	var wg sync.WaitGroup
	errs := make(chan error, 16)
	for range 16 {
		wg.Go(func() {
			if _, err := v.Verify(context.Background(), token); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := kube.Requests(oidctest.DiscoveryPath); n != 1 {
		t.Errorf("discovery requests = %d, want 1", n)
	}
	if n := kube.Requests(oidctest.JWKSPath); n != 1 {
		t.Errorf("key set requests = %d, want 1", n)
	}
}

// A caller that gives up during discovery fails alone: the next call
// discovers the issuer.
func TestCancelledDiscovery(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	token := kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := v.Verify(ctx, token)
	wantRefusal(t, err, workload.ReasonIssuerUnavailable)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("err = %v, want it to wrap context.Canceled", err)
	}
	mustVerify(t, v, token)
}

func TestNewRejectsBadConfig(t *testing.T) {
	good := []workload.Rule{{Agent: "a", Claims: map[string]string{"sub": "x"}}}
	_, err := workload.New([]workload.Issuer{
		{URL: "http://issuer.example.com", Rules: good},
		{URL: "ftp://127.0.0.1", Rules: good},
		{URL: "https://q.example.com?x=1", Rules: good},
		{URL: "https://none.example.com"},
		{URL: "https://rules.example.com", Rules: []workload.Rule{
			{Claims: map[string]string{"sub": "x"}},
			{Agent: "everyone"},
			{Agent: "b", Claims: map[string]string{"": "x", "kubernetes.io//name": "y", "sub": "[x"}},
		}},
		{URL: "https://dup.example.com", Rules: good},
		{URL: "https://dup.example.com", Rules: good},
		{Rules: good},
	}, workload.Options{})
	if !errors.Is(err, workload.ErrConfig) {
		t.Fatalf("err = %v, want ErrConfig", err)
	}
	for _, want := range []string{
		"http://issuer.example.com\": http is allowed only for loopback",
		"ftp://127.0.0.1\": scheme must be https",
		"must not carry user info, a query or a fragment",
		"(https://none.example.com): no rules",
		"rules[0]: no agent",
		`rules[1]: agent "everyone": no claims`,
		`claim path "" has an empty name`,
		`claim path "kubernetes.io//name" has an empty name`,
		`pattern "[x"`,
		"configured twice",
		"issuers[7]: no URL",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q:\n%v", want, err)
		}
	}

	if _, err := workload.New(nil, workload.Options{}); !errors.Is(err, workload.ErrConfig) {
		t.Errorf("no issuers: err = %v", err)
	}
	for _, u := range []string{"http://127.0.0.1:8080", "http://localhost", "http://[::1]:9000/issuer", "https://token.actions.githubusercontent.com"} {
		if _, err := workload.New([]workload.Issuer{{URL: u, Rules: good}}, workload.Options{}); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
	custom := &http.Client{Transport: roundTripFunc(func(*http.Request) (*http.Response, error) { return nil, errors.New("no") })}
	kube := oidctest.NewIssuer(t)
	if _, err := workload.New([]workload.Issuer{kubeIssuer(kube)}, workload.Options{HTTPClient: custom}); !errors.Is(err, workload.ErrConfig) {
		t.Errorf("RootCAs with a transport they cannot be set on: err = %v", err)
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

// A base client's transport is used, with the issuer's roots on a clone.
func TestBaseHTTPClient(t *testing.T) {
	kube := oidctest.NewIssuer(t)
	var mu sync.Mutex
	var paths []string
	inner := &http.Transport{}
	base := &http.Client{Transport: inner}
	v := newVerifier(t, workload.Options{HTTPClient: base}, kubeIssuer(kube))
	mustVerify(t, v, kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
	if inner.TLSClientConfig != nil && inner.TLSClientConfig.RootCAs != nil {
		t.Fatal("the caller's transport was given the issuer's roots")
	}

	// A transport that is not an *http.Transport is used as is.
	ci := oidctest.NewIssuer(t)
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ci.RootCAs()}}
	wrapped := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		mu.Lock()
		paths = append(paths, r.URL.Path)
		mu.Unlock()
		return tr.RoundTrip(r)
	})}
	v = newVerifier(t, workload.Options{HTTPClient: wrapped}, workload.Issuer{URL: ci.URL(), Rules: kubeRules})
	mustVerify(t, v, ci.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
	mu.Lock()
	defer mu.Unlock()
	if strings.Join(paths, " ") != oidctest.DiscoveryPath+" "+oidctest.JWKSPath {
		t.Fatalf("requests through the caller's transport: %v", paths)
	}
}

func TestNoGoroutineLeft(t *testing.T) {
	before := runtime.NumGoroutine()
	kube := oidctest.NewIssuer(t)
	v := newVerifier(t, workload.Options{}, kubeIssuer(kube))
	mustVerify(t, v, kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
	kube.RotateKey()
	mustVerify(t, v, kube.ServiceAccountToken(t, "billing", "bot", oidctest.TokenOptions{}))
	kube.Close()
	// Connections close on both sides after the server stops; the
	// deadline only bounds the wait.
	deadline := time.Now().Add(10 * time.Second)
	for runtime.NumGoroutine() > before && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if after := runtime.NumGoroutine(); after > before {
		buf := make([]byte, 1<<16)
		t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
	}
}
