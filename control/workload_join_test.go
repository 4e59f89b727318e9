package control_test

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stackctl/stack/control"
	"github.com/stackctl/stack/control/client"
	"github.com/stackctl/stack/control/workload"
	"github.com/stackctl/stack/internal/oidctest"
)

// A sidecar joins with a Kubernetes projected service-account token,
// signed by a loopback issuer exactly as kube-apiserver signs it, and
// mapped to an agent by the control plane's rules.
func TestWorkloadJoin(t *testing.T) {
	k8s := oidctest.NewIssuer(t)
	other := oidctest.NewIssuer(t) // a cluster the control plane does not trust
	v, err := workload.New([]workload.Issuer{{
		URL: k8s.URL(), Audience: "stack", RootCAs: k8s.RootCAs(),
		Rules: []workload.Rule{{Agent: "billing-bot", Claims: map[string]string{
			"kubernetes.io/namespace": "billing", "kubernetes.io/serviceaccount/name": "billing-bot"}}},
	}}, workload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *control.Options) { o.Attester = control.NewAttester(v) })
	f.register("billing-bot")

	join := func(tok string) (int, string) {
		return f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{OIDCToken: tok}, nil)
	}
	good := k8s.ServiceAccountToken(t, "billing", "billing-bot", oidctest.TokenOptions{Pod: "billing-bot-7d9f"})
	var cred control.Credential
	f.must("", http.MethodPost, control.PathJoin, control.JoinRequest{OIDCToken: good, Name: "billing-bot-7d9f"}, &cred)
	if cred.Agent != "billing-bot" || cred.Token == "" {
		t.Fatalf("joined as %+v", cred)
	}
	// A workload token is not spent: the pod's next start joins again.
	if st, reason := join(good); st != http.StatusOK {
		t.Fatalf("second join with the same workload token: %d %s", st, reason)
	}

	for _, tc := range []struct {
		name, token, reason string
	}{
		{"wrong audience", k8s.ServiceAccountToken(t, "billing", "billing-bot", oidctest.TokenOptions{Audience: []string{"vault"}}), workload.ReasonAudience},
		{"expired", k8s.ServiceAccountToken(t, "billing", "billing-bot", oidctest.TokenOptions{IssuedAt: time.Now().Add(-2 * time.Hour), TTL: time.Hour}), workload.ReasonExpired},
		{"unknown issuer", other.ServiceAccountToken(t, "billing", "billing-bot", oidctest.TokenOptions{}), workload.ReasonIssuerUnknown},
		{"no rule matches", k8s.ServiceAccountToken(t, "default", "billing-bot", oidctest.TokenOptions{}), workload.ReasonNoRule},
		{"forged iss", other.ServiceAccountToken(t, "billing", "billing-bot", oidctest.TokenOptions{Issuer: k8s.URL()}), workload.ReasonInvalid},
		{"not a token", "hello", workload.ReasonMalformed},
	} {
		if st, reason := join(tc.token); st != http.StatusForbidden || reason != tc.reason {
			t.Errorf("%s: %d %s, want 403 %s", tc.name, st, reason, tc.reason)
		}
	}

	// A mapped agent that is not registered, or disabled, gets nothing.
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/billing-bot/disable", control.DisableRequest{}, nil)
	if st, reason := join(good); st != http.StatusForbidden || reason != control.ReasonAgentDisabled {
		t.Fatalf("join as a disabled agent: %d %s", st, reason)
	}
	f.must(operatorToken, http.MethodPost, control.PathAgents+"/billing-bot/enable", control.DisableRequest{}, nil)

	// The sidecar client joins from the token file, and joins again by
	// itself when its credential is no longer known.
	dir := t.TempDir()
	tokFile := filepath.Join(dir, "token")
	if err := os.WriteFile(tokFile, []byte(good+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := f.startSidecar(ctx, f.ts.URL, "billing-bot", dir, func(o *client.Options) { o.JoinToken, o.OIDCTokenFile = "", tokFile })
	tok, err := s.Passport()
	if err != nil {
		t.Fatal(err)
	}
	if c, err := s.verifier.Verify(tok); err != nil || c.Subject != "billing-bot" {
		t.Fatalf("passport after a workload join: %v", err)
	}
}

// Workload joins are rate limited: a flood of forged tokens cannot make
// the control plane fetch an issuer's keys again and again.
func TestWorkloadJoinsAreRateLimited(t *testing.T) {
	k8s := oidctest.NewIssuer(t)
	v, err := workload.New([]workload.Issuer{{URL: k8s.URL(), RootCAs: k8s.RootCAs(),
		Rules: []workload.Rule{{Agent: "bot", Claims: map[string]string{"kubernetes.io/namespace": "ns"}}}}}, workload.Options{})
	if err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, func(o *control.Options) { o.Attester = control.NewAttester(v); o.WorkloadJoinRate = 1 })
	forged := oidctest.NewIssuer(t).ServiceAccountToken(t, "ns", "sa", oidctest.TokenOptions{Issuer: k8s.URL()})
	limited := 0
	for range 10 {
		st, reason := f.call("", http.MethodPost, control.PathJoin, control.JoinRequest{OIDCToken: forged}, nil)
		switch {
		case st == http.StatusTooManyRequests && reason == control.ReasonRateLimited:
			limited++
		case st == http.StatusForbidden && reason == workload.ReasonInvalid:
		default:
			t.Fatalf("forged join: %d %s", st, reason)
		}
	}
	if limited < 5 {
		t.Fatalf("%d of 10 rapid joins limited", limited)
	}
	if n := k8s.Requests(oidctest.JWKSPath); n > 4 {
		t.Fatalf("the issuer's keys were fetched %d times for 10 forged tokens", n)
	}
}
