package main

import (
	"encoding/json"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/stackctl/stack/passport"
	"github.com/stackctl/stack/reason"
)

// issueToken runs `passport issue` and returns the token, failing the test
// unless it exits 0 with exactly one line on stdout.
func issueToken(t *testing.T, home string, args ...string) string {
	t.Helper()
	code, out, errs := runStack(t, home, "", append([]string{"passport", "issue"}, args...)...)
	if code != 0 {
		t.Fatalf("passport issue %v: exit %d\nstderr: %s", args, code, errs)
	}
	tok := strings.TrimSuffix(out, "\n")
	if tok == "" || strings.ContainsAny(tok, "\n ") || strings.Count(tok, ".") != 2 {
		t.Fatalf("passport issue printed more than a token: %q", out)
	}
	return tok
}

// verifyClaims runs `passport verify` and decodes the claims it prints.
func verifyClaims(t *testing.T, home, token string) map[string]any {
	t.Helper()
	code, out, errs := runStack(t, home, "", "passport", "verify", token)
	if code != 0 {
		t.Fatalf("passport verify: exit %d\nstdout: %s\nstderr: %s", code, out, errs)
	}
	var claims map[string]any
	if err := json.Unmarshal([]byte(out), &claims); err != nil {
		t.Fatalf("verify output is not JSON: %v\n%s", err, out)
	}
	return claims
}

func TestPassportIssueVerify(t *testing.T) {
	home := initHome(t)

	tok := issueToken(t, home, "--agent", "billing-bot", "--role", "billing-reporter")
	c := verifyClaims(t, home, tok)
	if c["sub"] != "billing-bot" || c["iss"] != "stack" || c["aud"] != "stack-proxy" || c["mode"] != "enforce" {
		t.Errorf("claims = %v", c)
	}
	if ttl := c["exp"].(float64) - c["iat"].(float64); ttl != 15*60 {
		t.Errorf("billing-reporter ttl = %vs, want 900", ttl)
	}
	tok = issueToken(t, home, "--agent", "deployer", "--role", "deploy-assistant", "--mode", "alert")
	c = verifyClaims(t, home, tok)
	if ttl := c["exp"].(float64) - c["iat"].(float64); ttl != 10*60 || c["mode"] != "alert" {
		t.Errorf("deploy-assistant: ttl %vs mode %v, want 600s alert", ttl, c["mode"])
	}

	// Token from stdin.
	code, out, errs := runStack(t, home, tok+"\n", "passport", "verify", "-")
	if code != 0 || !strings.Contains(out, `"sub": "deployer"`) {
		t.Errorf("verify -: exit %d, %s %s", code, out, errs)
	}

	tok = issueToken(t, home, "--agent", "writer", "--ttl", "5m",
		"--grant", "host=api.cms.example.com,methods=POST,paths=/v1/posts,credentials=cms,param=body:status:in:draft|scheduled",
		"--grant", "host=*.example.org,paths=/a/**")
	c = verifyClaims(t, home, tok)
	scope, _ := json.Marshal(c["scope"])
	for _, want := range []string{`"values":["draft","scheduled"]`, `"hosts":["*.example.org"]`, `"credentials":["cms"]`} {
		if !strings.Contains(string(scope), want) {
			t.Errorf("scope %s lacks %s", scope, want)
		}
	}
	if ttl := c["exp"].(float64) - c["iat"].(float64); ttl != 300 {
		t.Errorf("--ttl 5m gave %vs", ttl)
	}

	scopeFile := filepath.Join(t.TempDir(), "scope.yaml")
	if err := os.WriteFile(scopeFile, []byte("- hosts: [api.github.com]\n  methods: [GET]\n  credentials: [github]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tok = issueToken(t, home, "--agent", "reader", "--scope", scopeFile)
	if c := verifyClaims(t, home, tok); c["sub"] != "reader" {
		t.Errorf("claims = %v", c)
	}
}

func TestPassportIssueUsageErrors(t *testing.T) {
	home := initHome(t)
	cases := []struct {
		name string
		args []string
		says string
	}{
		{"no scope", []string{"--agent", "a"}, "one of --role, --grant or --scope"},
		{"no agent", []string{"--role", "billing-reporter"}, "agent"},
		{"two scope sources", []string{"--agent", "a", "--role", "billing-reporter", "--grant", "host=a.com"}, "none of the others"},
		{"unknown role", []string{"--agent", "a", "--role", "admin"}, `no role "admin"`},
		{"bad grant key", []string{"--agent", "a", "--grant", "hots=a.com"}, `unknown key "hots"`},
		{"bad grant param", []string{"--agent", "a", "--grant", "host=a.com,param=body:x"}, "FROM:NAME:OP:VALUE"},
		{"invalid grant", []string{"--agent", "a", "--grant", "host=*,methods=get"}, `"get"`},
		{"ttl over max", []string{"--agent", "a", "--role", "billing-reporter", "--ttl", "2h"}, "ttl"},
		{"bad mode", []string{"--agent", "a", "--role", "billing-reporter", "--mode", "lax"}, "mode"},
		{"missing scope file", []string{"--agent", "a", "--scope", "/nonexistent/scope.yaml"}, "no such file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errs := runStack(t, home, "", append([]string{"passport", "issue"}, tc.args...)...)
			if code != exitUsage {
				t.Errorf("exit %d, want %d\nstdout: %s\nstderr: %s", code, exitUsage, out, errs)
			}
			if out != "" {
				t.Errorf("stdout not empty on error: %q", out)
			}
			if !strings.Contains(errs, tc.says) {
				t.Errorf("stderr does not say %q: %s", tc.says, errs)
			}
		})
	}
}

func TestPassportVerifyFailures(t *testing.T) {
	home := initHome(t)
	other := initHome(t)
	foreign := issueToken(t, other, "--agent", "a", "--role", "billing-reporter")
	for name, tc := range map[string]struct {
		token, reason string
	}{
		"garbage":     {"not-a-token", reason.PassportInvalid},
		"foreign key": {foreign, reason.PassportInvalid},
		"oversized":   {strings.Repeat("a", passport.MaxTokenSize+1), reason.PassportInvalid},
	} {
		t.Run(name, func(t *testing.T) {
			code, out, errs := runStack(t, home, "", "passport", "verify", tc.token)
			if code != exitFailure || strings.TrimSpace(out) != tc.reason {
				t.Errorf("exit %d stdout %q, want %d %q\nstderr: %s", code, out, exitFailure, tc.reason, errs)
			}
		})
	}
	// The foreign token verifies against its own issuer's JWKS.
	_, jwks, _ := runStack(t, other, "", "passport", "jwks")
	file := filepath.Join(t.TempDir(), "jwks.json")
	if err := os.WriteFile(file, []byte(jwks), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out, errs := runStack(t, home, "", "passport", "verify", "--jwks", file, foreign); code != 0 {
		t.Errorf("verify --jwks: exit %d %s %s", code, out, errs)
	}
}

func TestPassportRevoke(t *testing.T) {
	home := initHome(t)
	byAgent := issueToken(t, home, "--agent", "burst-bot", "--role", "billing-reporter")
	byJTI := issueToken(t, home, "--agent", "other-bot", "--role", "billing-reporter")
	bystander := issueToken(t, home, "--agent", "third-bot", "--role", "billing-reporter")
	jti := verifyClaims(t, home, byJTI)["jti"].(string)

	if code, out, errs := runStack(t, home, "", "passport", "revoke", "--agent", "burst-bot", "--reason", "credential burst"); code != 0 || !strings.Contains(out, "revoked agent burst-bot") {
		t.Fatalf("revoke --agent: exit %d %s %s", code, out, errs)
	}
	if code, out, errs := runStack(t, home, "", "passport", "revoke", "--jti", jti); code != 0 || !strings.Contains(out, "revoked jti "+jti) {
		t.Fatalf("revoke --jti: exit %d %s %s", code, out, errs)
	}
	for _, tok := range []string{byAgent, byJTI} {
		code, out, _ := runStack(t, home, "", "passport", "verify", tok)
		if code != exitFailure || strings.TrimSpace(out) != reason.PassportRevoked {
			t.Errorf("revoked token: exit %d stdout %q", code, out)
		}
	}
	verifyClaims(t, home, bystander)

	for _, args := range [][]string{{}, {"--jti", "a", "--agent", "b"}} {
		if code, _, errs := runStack(t, home, "", append([]string{"passport", "revoke"}, args...)...); code != exitUsage {
			t.Errorf("revoke %v: exit %d, want 2: %s", args, code, errs)
		}
	}
}

func TestPassportDelegation(t *testing.T) {
	home := initHome(t)
	parent := issueToken(t, home, "--agent", "planner", "--role", "billing-reporter")
	parentFile := filepath.Join(t.TempDir(), "parent.jwt")
	if err := os.WriteFile(parentFile, []byte(parent+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	child := issueToken(t, home, "--agent", "helper", "--parent", "@"+parentFile,
		"--grant", "host=api.stripe.com,methods=GET,paths=/v1/balance,credentials=stripe")
	c := verifyClaims(t, home, child)
	pc := verifyClaims(t, home, parent)
	if !reflect.DeepEqual(c["del"], []any{pc["jti"]}) {
		t.Errorf("del = %v, want [%v]", c["del"], pc["jti"])
	}

	code, out, errs := runStack(t, home, "", "passport", "issue", "--agent", "helper", "--parent", parent,
		"--grant", "host=api.stripe.com,methods=POST,paths=/v1/transfers,credentials=stripe")
	if code != exitFailure || out != "" || !strings.Contains(errs, "not a subset") {
		t.Errorf("widening child: exit %d stdout %q stderr %s", code, out, errs)
	}

	if code, _, errs := runStack(t, home, "", "passport", "revoke", "--jti", pc["jti"].(string)); code != 0 {
		t.Fatal(errs)
	}
	if code, out, _ := runStack(t, home, "", "passport", "verify", child); code != exitFailure || strings.TrimSpace(out) != reason.PassportRevoked {
		t.Errorf("child of a revoked parent: exit %d %q", code, out)
	}
}

func TestPassportRotateKey(t *testing.T) {
	home := initHome(t)
	before := issueToken(t, home, "--agent", "a", "--role", "billing-reporter")
	code, out, errs := runStack(t, home, "", "passport", "rotate-key")
	if code != 0 || !strings.Contains(out, "current key") {
		t.Fatalf("rotate-key: exit %d %s %s", code, out, errs)
	}
	_, jwks, _ := runStack(t, home, "", "passport", "jwks")
	var set struct {
		Keys []struct {
			Kid, Alg, Use, Kty, Crv string
			D                       string `json:"d"`
		}
	}
	if err := json.Unmarshal([]byte(jwks), &set); err != nil {
		t.Fatal(err)
	}
	if len(set.Keys) != 2 {
		t.Fatalf("JWKS after rotation has %d keys: %s", len(set.Keys), jwks)
	}
	for _, k := range set.Keys {
		if k.Alg != "EdDSA" || k.Use != "sig" || k.Kty != "OKP" || k.Crv != "Ed25519" || k.D != "" {
			t.Errorf("jwk = %+v", k)
		}
	}
	after := issueToken(t, home, "--agent", "a", "--role", "billing-reporter")
	verifyClaims(t, home, before)
	verifyClaims(t, home, after)
	kidOf := func(tok string) string {
		var h struct{ Kid string }
		b, _ := base64Decode(strings.Split(tok, ".")[0])
		_ = json.Unmarshal(b, &h)
		return h.Kid
	}
	if kidOf(before) == kidOf(after) || kidOf(after) != set.Keys[0].Kid {
		t.Errorf("kids: before %s after %s, jwks current %s", kidOf(before), kidOf(after), set.Keys[0].Kid)
	}
}

func TestParseGrant(t *testing.T) {
	got, err := parseGrant("host=api.stripe.com|*.stripe.com,methods=GET|POST,paths=/v1/charges/**,credentials=stripe," +
		"param=query:limit:eq:10,param=body:status:in:draft|scheduled,param=body:id:regex:ch_[a-z|0-9]+:x")
	if err != nil {
		t.Fatal(err)
	}
	want := passport.Grant{
		Hosts:       []string{"api.stripe.com", "*.stripe.com"},
		Methods:     []string{"GET", "POST"},
		Paths:       []string{"/v1/charges/**"},
		Credentials: []string{"stripe"},
		Params: []passport.ParamConstraint{
			{Name: "limit", From: "query", Op: "eq", Value: "10"},
			{Name: "status", From: "body", Op: "in", Values: []string{"draft", "scheduled"}},
			{Name: "id", From: "body", Op: "regex", Value: "ch_[a-z|0-9]+:x"},
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("parseGrant =\n%+v\nwant\n%+v", got, want)
	}
	got, err = parseGrant("host=s3.amazonaws.com,credentials=aws|gh,actions=s3:GetObject|s3:List*,resources=arn:aws:s3:::b/*," +
		"regions=us-east-1,scopes=read,permissions=contents:read|issues:write,repositories=app")
	if err != nil {
		t.Fatal(err)
	}
	wantNarrow := &passport.Narrowing{Actions: []string{"s3:GetObject", "s3:List*"}, Resources: []string{"arn:aws:s3:::b/*"},
		Regions: []string{"us-east-1"}, Scopes: []string{"read"}, Permissions: map[string]string{"contents": "read", "issues": "write"},
		Repositories: []string{"app"}}
	if !reflect.DeepEqual(got.Narrow, wantNarrow) {
		t.Errorf("narrow = %+v, want %+v", got.Narrow, wantNarrow)
	}
	got, err = parseGrant("handoff-to=drafter|deploy-*,handoff-schemas=findings/v1")
	if err != nil {
		t.Fatal(err)
	}
	if want := (passport.Grant{Handoff: &passport.HandoffGrant{To: []string{"drafter", "deploy-*"}, Schemas: []string{"findings/v1"}}}); !reflect.DeepEqual(got, want) {
		t.Errorf("a handoff grant = %+v, want %+v", got, want)
	}
	for _, bad := range []string{"", "host", "host=", "colour=red", "host=a.com,param=eq", "host=a.com,permissions=contents"} {
		if _, err := parseGrant(bad); err == nil {
			t.Errorf("parseGrant(%q) accepted", bad)
		}
	}
}

// passport.max_ttl bounds the lifetime of a passport the sidecar and
// `passport verify` accept, not only of one `passport issue` signs:
// revocations are kept only that long.
func TestVerifyHonoursMaxTTL(t *testing.T) {
	home := initHome(t)
	if err := os.WriteFile(filepath.Join(home, "stack.yaml"), []byte("passport:\n  max_ttl: 2h\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	tenYears := homeKeyToken(t, home, now, 10*365*24*time.Hour)
	atMax := homeKeyToken(t, home, now, 2*time.Hour)
	overMax := homeKeyToken(t, home, now, 2*time.Hour+time.Second)

	for name, tc := range map[string]struct {
		token  string
		reason string // "" for accepted
	}{
		"ten years":    {tenYears, reason.PassportInvalid},
		"at max_ttl":   {atMax, ""},
		"over max_ttl": {overMax, reason.PassportInvalid},
	} {
		t.Run("verify "+name, func(t *testing.T) {
			code, out, errs := runStack(t, home, "", "passport", "verify", tc.token)
			if tc.reason == "" {
				if code != 0 {
					t.Fatalf("exit %d\n%s\n%s", code, out, errs)
				}
				return
			}
			if code != exitFailure || strings.TrimSpace(out) != tc.reason || !strings.Contains(errs, "max_ttl") {
				t.Fatalf("exit %d stdout %q stderr %q, want %d %q naming max_ttl", code, out, errs, exitFailure, tc.reason)
			}
		})
	}

	info := startSidecar(t, home)
	proxyURL, _ := url.Parse("http://" + info.Listen)
	tr := &http.Transport{Proxy: http.ProxyURL(proxyURL)}
	defer tr.CloseIdleConnections()
	send := func(token string) *http.Response {
		req, _ := http.NewRequest("GET", "http://internal.example.net/", nil)
		req.Header.Set("Proxy-Authorization", "Bearer "+token)
		resp, err := tr.RoundTrip(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp
	}
	if r := send(tenYears); r.StatusCode != http.StatusProxyAuthRequired || r.Header.Get("X-Stack-Reason") != reason.PassportInvalid {
		t.Errorf("ten-year passport through the sidecar: %d %s, want 407 %s", r.StatusCode, r.Header.Get("X-Stack-Reason"), reason.PassportInvalid)
	}
	// Past verification, the request meets its scope.
	if r := send(atMax); r.Header.Get("X-Stack-Reason") != reason.ScopeDenied {
		t.Errorf("passport at max_ttl through the sidecar: %d %s, want scope_denied", r.StatusCode, r.Header.Get("X-Stack-Reason"))
	}
}
