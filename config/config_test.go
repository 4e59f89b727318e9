package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spf13/pflag"
)

func writeFile(t *testing.T, dir, body string) string {
	t.Helper()
	p := filepath.Join(dir, FileName)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadDefaultsWithoutFile(t *testing.T) {
	home := t.TempDir()
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if c.File != "" {
		t.Errorf("File = %q, want empty when no stack.yaml exists", c.File)
	}
	if c.Proxy.Listen != DefaultListen || c.Proxy.AdminListen != DefaultAdminListen {
		t.Errorf("listeners = %q, %q", c.Proxy.Listen, c.Proxy.AdminListen)
	}
	if want := "local://" + filepath.Join(home, "kms.key"); c.KMS.URI != want {
		t.Errorf("kms.uri = %q, want %q (resolved against home)", c.KMS.URI, want)
	}
	if want := filepath.Join(home, DefaultAuditPath); c.Audit.Path != want {
		t.Errorf("audit.path = %q, want %q", c.Audit.Path, want)
	}
	if c.Passport.DefaultTTL != 15*time.Minute || c.Passport.MaxTTL != time.Hour {
		t.Errorf("passport TTLs = %v, %v", c.Passport.DefaultTTL, c.Passport.MaxTTL)
	}
	for _, role := range []string{"billing-reporter", "deploy-assistant", "content-publisher"} {
		if _, ok := c.Passport.Roles[role]; !ok {
			t.Errorf("reference role %q missing from defaults", role)
		}
	}
	for name, mode := range map[string]string{
		"credential_burst": c.Detect.CredentialBurst.Mode, "scope_drift": c.Detect.ScopeDrift.Mode,
		"prompt_injection": c.Detect.PromptInjection.Mode, "credential_exfiltration": c.Detect.CredentialExfiltration.Mode,
	} {
		if mode != "alert" {
			t.Errorf("detect.%s.mode = %q, want alert", name, mode)
		}
	}
	if c.Detect.AlertOnly || c.Detect.ScanWindow != 64<<10 || c.Detect.CredentialBurst.Factor != 5 || c.Detect.AlertSummaryWindow != time.Minute {
		t.Errorf("detect defaults = %+v", c.Detect)
	}
	if !reflect.DeepEqual(c, Default(home)) {
		t.Errorf("Load without a file differs from Default:\n%+v\n%+v", c, Default(home))
	}
}

// The file init writes must decode to exactly the defaults, so what it
// documents is what runs.
func TestDefaultFileRoundTrips(t *testing.T) {
	home := t.TempDir()
	p := writeFile(t, home, string(DefaultFile()))
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatalf("loading the default file: %v\n%s", err, DefaultFile())
	}
	if c.File != p {
		t.Errorf("File = %q, want %q", c.File, p)
	}
	want := Default(home)
	want.File = p
	if !reflect.DeepEqual(c, want) {
		t.Errorf("default file decodes differently from defaults:\ngot  %+v\nwant %+v", c, want)
	}
}

func TestPrecedence(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, "proxy:\n  listen: 127.0.0.1:1111\n  admin_listen: 127.0.0.1:2222\nvault:\n  cache_ttl: 5s\n")
	t.Setenv("STACK_PROXY_ADMIN_LISTEN", "127.0.0.1:3333")
	t.Setenv("STACK_EGRESS_ALLOW_CIDRS", "10.0.0.0/8,fd00::/8")
	t.Setenv("STACK_DETECT_CREDENTIAL_BURST_MODE", "revoke")

	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("listen", "", "")
	fs.String("unset", "", "")
	if err := fs.Parse([]string{"--listen", "127.0.0.1:4444"}); err != nil {
		t.Fatal(err)
	}
	c, err := Load(LoadOptions{Home: home, Flags: map[string]*pflag.Flag{
		"proxy.listen":      fs.Lookup("listen"),
		"proxy.upstream_ca": fs.Lookup("unset"),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Proxy.Listen != "127.0.0.1:4444" {
		t.Errorf("proxy.listen = %q, want the flag's value", c.Proxy.Listen)
	}
	if c.Proxy.AdminListen != "127.0.0.1:3333" {
		t.Errorf("proxy.admin_listen = %q, want the environment's value over the file's", c.Proxy.AdminListen)
	}
	if c.Proxy.UpstreamCA != "" {
		t.Errorf("an unset flag overrode proxy.upstream_ca: %q", c.Proxy.UpstreamCA)
	}
	if c.Vault.CacheTTL != 5*time.Second {
		t.Errorf("vault.cache_ttl = %v, want the file's 5s", c.Vault.CacheTTL)
	}
	if want := []string{"10.0.0.0/8", "fd00::/8"}; !reflect.DeepEqual(c.Egress.AllowCIDRs, want) {
		t.Errorf("egress.allow_cidrs = %q, want %q", c.Egress.AllowCIDRs, want)
	}
	if c.Detect.CredentialBurst.Mode != "revoke" {
		t.Errorf("detect.credential_burst.mode = %q", c.Detect.CredentialBurst.Mode)
	}
}

func TestHomeFromEnvironment(t *testing.T) {
	home := t.TempDir()
	t.Setenv("STACK_HOME", home)
	c, err := Load(LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if c.Home != home {
		t.Errorf("Home = %q, want STACK_HOME %q", c.Home, home)
	}
	other := t.TempDir()
	c, err = Load(LoadOptions{Home: other})
	if err != nil {
		t.Fatal(err)
	}
	if c.Home != other {
		t.Errorf("Home = %q, want the explicit %q over STACK_HOME", c.Home, other)
	}
}

func TestInvalidValuesNameTheKey(t *testing.T) {
	tests := []struct {
		name string
		file string
		env  map[string]string
		key  string
		says string
	}{
		{"listen not host:port", "proxy:\n  listen: localhost\n", nil, "proxy.listen", "host:port"},
		{"port out of range", "proxy:\n  admin_listen: 127.0.0.1:70000\n", nil, "proxy.admin_listen", "0 to 65535"},
		{"same listeners", "proxy:\n  listen: 127.0.0.1:9000\n  admin_listen: 127.0.0.1:9000\n", nil, "proxy.admin_listen", "differ"},
		{"bad cidr", "egress:\n  allow_cidrs: [10.0.0.0/33]\n", nil, "egress.allow_cidrs[0]", "CIDR"},
		{"bad cidr from env", "", map[string]string{"STACK_EGRESS_ALLOW_CIDRS": "10.0.0.0/8,nope"}, "egress.allow_cidrs[1]", "CIDR"},
		{"kms scheme", "kms:\n  uri: vault://x\n", nil, "kms.uri", "local://PATH"},
		{"gcp key name", "kms:\n  uri: gcpkms://projects/p/keyRings/r\n", nil, "kms.uri", "gcpkms://projects/P"},
		{"kms timeout", "kms:\n  timeout: 0s\n", nil, "kms.timeout", "positive"},
		{"log level", "log:\n  level: loud\n", nil, "log.level", "debug, info, warn, error"},
		{"log level from env", "", map[string]string{"STACK_LOG_LEVEL": "verbose"}, "log.level", "debug, info"},
		{"detector mode", "detect:\n  scope_drift:\n    mode: nuke\n", nil, "detect.scope_drift.mode", "off, shadow, alert, block, revoke"},
		{"unknown detector", "detect:\n  telepathy:\n    mode: alert\n", nil, "detect.telepathy.mode", "unknown key"},
		{"rule with unknown detector", "detect:\n  rules:\n    - {name: r, detectors: [telepathy], within: 60s, action: revoke}\n", nil, "detect.rules[0].detectors", "unknown detector"},
		{"rule action", "detect:\n  rules:\n    - {name: r, detectors: [scope_drift], within: 60s, action: nuke}\n", nil, "detect.rules[0].action", "alert, block, revoke"},
		{"empty suppression", "detect:\n  suppress:\n    - {}\n", nil, "detect.suppress[0]", "at least one"},
		{"suppression host with a port", "detect:\n  suppress:\n    - {host: \"api.stripe.com:443\", detector: scope_drift}\n", nil, "detect.suppress[0].host", "no port"},
		{"tunnel host over a top-level domain", "proxy:\n  tunnel_hosts: [\"*.com\"]\n", nil, "proxy.tunnel_hosts[0]", "two labels"},
		{"control replica over http", "", map[string]string{"STACK_CONTROL_URL": "https://control-0.example.com:8443,http://control-1.example.com:8443"}, "control.url[1]", "https://HOST:PORT"},
		{"control host with a port", "control:\n  hosts: [\"control.example.com:8443\"]\n", nil, "control.hosts[0]", "host name"},
		{"resolve a wildcard", "egress:\n  resolve: [\"*.stripe.com=127.0.0.1\"]\n", nil, "egress.resolve[0]", "HOST=IP"},
		{"burst factor", "detect:\n  credential_burst:\n    factor: 1\n", nil, "detect.credential_burst.factor", "greater than 1"},
		{"threshold", "detect:\n  prompt_injection:\n    threshold: 2\n", nil, "detect.prompt_injection.threshold", "at most 1"},
		{"negative alert summary window", "detect:\n  alert_summary_window: -1m\n", nil, "detect.alert_summary_window", "0 (every signal on its own) or a positive"},
		{"ttl over max", "passport:\n  default_ttl: 2h\n", nil, "passport.default_ttl", "max_ttl"},
		{"max ttl huge", "passport:\n  max_ttl: 48h\n  default_ttl: 1h\n", nil, "passport.max_ttl", "24h"},
		{"cache size", "vault:\n  cache_size: 0\n", nil, "vault.cache_size", "at least 1"},
		{"unknown key", "proxy:\n  lisen: 127.0.0.1:1\n", nil, "proxy.lisen", "proxy.listen"},
		{"unknown section", "proxxy:\n  listen: 1\n", nil, "proxxy.listen", "sections are"},
		{"upstream ca missing", "proxy:\n  upstream_ca: /nonexistent/ca.pem\n", nil, "proxy.upstream_ca", "cannot be read"},
		{"role ttl over max", "passport:\n  roles:\n    quick:\n      ttl: 3h\n      scope:\n        - hosts: [api.example.com]\n", nil, "passport.roles.quick.ttl", "max_ttl"},
		{"role without scope", "passport:\n  roles:\n    empty:\n      description: nothing\n", nil, "passport.roles.empty.scope", "at least one grant"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			home := t.TempDir()
			if tc.file != "" {
				writeFile(t, home, tc.file)
			}
			for k, v := range tc.env {
				t.Setenv(k, v)
			}
			_, err := Load(LoadOptions{Home: home})
			wantProblem(t, err, tc.key, tc.says)
		})
	}
}

// wantProblem fails t unless err is a *ValidationError with a problem on
// key that says says.
func wantProblem(t *testing.T, err error, key, says string) {
	t.Helper()
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v, want a *ValidationError", err)
	}
	found := false
	for _, p := range verr.Problems {
		if p.Key == key {
			found = true
			if !strings.Contains(p.String(), says) {
				t.Errorf("problem %q does not say %q", p, says)
			}
		}
	}
	if !found {
		t.Errorf("no problem names %s; got: %v", key, err)
	}
}

func TestEveryProblemReportedAtOnce(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, "log:\n  level: loud\nproxy:\n  listen: nope\nkms:\n  uri: foo://\n")
	_, err := Load(LoadOptions{Home: home})
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("err = %v", err)
	}
	if len(verr.Problems) != 3 {
		t.Errorf("got %d problems, want 3: %v", len(verr.Problems), err)
	}
	if !strings.Contains(err.Error(), filepath.Join(home, FileName)) {
		t.Errorf("error does not name the file: %v", err)
	}
}

func TestExplicitConfigMustExist(t *testing.T) {
	_, err := Load(LoadOptions{Home: t.TempDir(), File: filepath.Join(t.TempDir(), "missing.yaml")})
	if err == nil || !strings.Contains(err.Error(), "missing.yaml") {
		t.Fatalf("err = %v, want an error naming the missing file", err)
	}
}

func TestMalformedYAML(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, "proxy: [unclosed\n")
	if _, err := Load(LoadOptions{Home: home}); err == nil {
		t.Fatal("malformed YAML loaded without error")
	}
}

func TestFileRoleKeepsReferenceRoles(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, `passport:
  roles:
    reader:
      description: read the example API
      ttl: 5m
      scope:
        - hosts: [api.example.com]
          methods: [GET]
          paths: ["/v1/**"]
          credentials: [example]
          params:
            - {name: limit, from: query, op: in, values: ["10", "20"]}
`)
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	r, ok := c.Passport.Roles["reader"]
	if !ok {
		t.Fatalf("role reader missing: %v", c.Passport.Roles)
	}
	if r.TTL != 5*time.Minute || len(r.Scope) != 1 || r.Scope[0].Params[0].Values[1] != "20" {
		t.Errorf("role decoded as %+v", r)
	}
	if _, ok := c.Passport.Roles["billing-reporter"]; !ok {
		t.Error("a file role removed the reference roles")
	}
}

func TestDetectRulesAndSuppressions(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, `detect:
  alert_only: true
  rules:
    - {name: burst-and-drift, detectors: [credential_burst, scope_drift], within: 60s, action: revoke}
  suppress:
    - {agent: crawler, detector: prompt_injection}
  credential_burst:
    mode: revoke
    factor: 8
`)
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	d := c.Detect
	if !d.AlertOnly || len(d.Rules) != 1 || d.Rules[0].Within != time.Minute || d.Rules[0].Detectors[1] != "scope_drift" {
		t.Errorf("rules = %+v", d)
	}
	if len(d.Suppress) != 1 || d.Suppress[0].Agent != "crawler" || d.CredentialBurst.Factor != 8 || d.CredentialBurst.Window != time.Minute {
		t.Errorf("detect = %+v", d)
	}
	if d.StatePath != filepath.Join(home, "detect.db") {
		t.Errorf("state_path = %q", d.StatePath)
	}
}

// An alert summary window of 0 is valid: every signal on its own.
func TestAlertSummaryWindowZero(t *testing.T) {
	home := t.TempDir()
	t.Setenv("STACK_DETECT_ALERT_SUMMARY_WINDOW", "0s")
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	if c.Detect.AlertSummaryWindow != 0 {
		t.Errorf("alert_summary_window = %v, want 0", c.Detect.AlertSummaryWindow)
	}
}

// Unknown keys, values that do not decode and values that fail validation
// are one report, so a user fixes all of them in one pass.
func TestUnknownKeysAndInvalidValuesTogether(t *testing.T) {
	home := t.TempDir()
	writeFile(t, home, `proxy:
  lisen: 127.0.0.1:1
  listen: nope
  max_connections: many
  shutdown_timeout: 5 parsecs
log:
  level: loud
passport:
  roles:
    reader:
      scoop: x
      scope:
        - hosts: [api.example.com]
`)
	_, err := Load(LoadOptions{Home: home})
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Load error = %v, want a *ValidationError", err)
	}
	want := map[string]string{
		"proxy.lisen":                 "unknown key",
		"proxy.listen":                "host:port",
		"proxy.max_connections":       "whole number",
		"proxy.shutdown_timeout":      "duration",
		"log.level":                   "debug, info",
		"passport.roles.reader.scoop": "unknown key",
	}
	got := map[string]int{}
	for _, p := range verr.Problems {
		got[p.Key]++
		if says, ok := want[p.Key]; ok && !strings.Contains(p.String(), says) {
			t.Errorf("problem %q does not say %q", p, says)
		}
	}
	for key := range want {
		if got[key] != 1 {
			t.Errorf("%s reported %d times, want once; report:\n%v", key, got[key], err)
		}
	}
	if len(verr.Problems) != len(want) {
		t.Errorf("got %d problems, want %d:\n%v", len(verr.Problems), len(want), err)
	}
}

// A bad value is blamed on where it came from: the environment variable or
// the flag that set it, not the file that was also read.
func TestProblemsNameTheirSource(t *testing.T) {
	home := t.TempDir()
	file := writeFile(t, home, "proxy:\n  listen: 127.0.0.1:1111\nlog:\n  level: loud\n")
	t.Setenv("STACK_PROXY_LISTEN", "nope")
	t.Setenv("STACK_PROXY_MAX_CONNECTIONS", "lots")
	t.Setenv("STACK_EGRESS_ALLOW_CIDRS", "10.0.0.0/8,nope")
	fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
	fs.String("admin-listen", "", "")
	if err := fs.Parse([]string{"--admin-listen", "bad"}); err != nil {
		t.Fatal(err)
	}
	_, err := Load(LoadOptions{Home: home, Flags: map[string]*pflag.Flag{"proxy.admin_listen": fs.Lookup("admin-listen")}})
	var verr *ValidationError
	if !errors.As(err, &verr) {
		t.Fatalf("Load error = %v, want a *ValidationError", err)
	}
	want := map[string]string{
		"proxy.listen":          "environment variable STACK_PROXY_LISTEN",
		"proxy.max_connections": "environment variable STACK_PROXY_MAX_CONNECTIONS",
		"egress.allow_cidrs[1]": "environment variable STACK_EGRESS_ALLOW_CIDRS",
		"proxy.admin_listen":    "flag --admin-listen",
		"log.level":             file,
	}
	for _, p := range verr.Problems {
		if src, ok := want[p.Key]; ok {
			if p.Source != src {
				t.Errorf("%s: source %q, want %q", p.Key, p.Source, src)
			}
			delete(want, p.Key)
		}
	}
	for key := range want {
		t.Errorf("no problem names %s:\n%v", key, err)
	}
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		if strings.Contains(line, "proxy.listen:") && !strings.Contains(line, "STACK_PROXY_LISTEN") {
			t.Errorf("the report does not say proxy.listen came from STACK_PROXY_LISTEN:\n%s", msg)
		}
	}
}

// With no problem from the file, the report does not mention the file.
func TestEnvironmentProblemNotBlamedOnFile(t *testing.T) {
	home := t.TempDir()
	file := writeFile(t, home, "proxy:\n  listen: 127.0.0.1:1111\n")
	t.Setenv("STACK_PROXY_LISTEN", "nope")
	_, err := Load(LoadOptions{Home: home})
	if err == nil {
		t.Fatal("Load accepted STACK_PROXY_LISTEN=nope")
	}
	if strings.Contains(err.Error(), file) {
		t.Errorf("the report blames %s for an environment variable: %v", file, err)
	}
	if !strings.Contains(err.Error(), "STACK_PROXY_LISTEN") {
		t.Errorf("the report does not name STACK_PROXY_LISTEN: %v", err)
	}
}

// control.url takes one URL or several, however it is given.
func TestControlURLForms(t *testing.T) {
	a, b := "https://control-0.example.com:8443", "https://control-1.example.com:8443"
	tests := []struct {
		name string
		file string
		env  string
		flag string
		want []string
	}{
		{name: "unset", want: nil},
		{name: "one string in the file", file: "control:\n  url: " + a + "\n", want: []string{a}},
		{name: "a list in the file", file: "control:\n  url: [" + a + ", " + b + "]\n", want: []string{a, b}},
		{name: "commas in the environment", env: a + ", " + b, want: []string{a, b}},
		{name: "commas in the flag over the file", file: "control:\n  url: [" + a + "]\n", flag: b + "," + a, want: []string{b, a}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			home := t.TempDir()
			if tt.file != "" {
				writeFile(t, home, tt.file)
			}
			t.Setenv("STACK_CONTROL_URL", tt.env)
			fs := pflag.NewFlagSet("test", pflag.ContinueOnError)
			fs.String("control", "", "")
			var args []string
			if tt.flag != "" {
				args = []string{"--control", tt.flag}
			}
			if err := fs.Parse(args); err != nil {
				t.Fatal(err)
			}
			c, err := Load(LoadOptions{Home: home, Flags: map[string]*pflag.Flag{"control.url": fs.Lookup("control")}})
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(c.Control.URLs, tt.want) {
				t.Errorf("control.url = %q, want %q", c.Control.URLs, tt.want)
			}
		})
	}
}

// A relative file path in stack.yaml names a file in the data directory,
// wherever the command runs from: every one is made absolute against
// home before it is checked or used.
func TestRelativePathsResolveAgainstHome(t *testing.T) {
	home := t.TempDir()
	cert := selfSignedPEM(t)
	for _, name := range []string{"upstream.pem", "issuers.pem"} {
		if err := os.WriteFile(filepath.Join(home, name), cert, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, home, `proxy:
  upstream_ca: upstream.pem
vault:
  path: data/vault.db
  mint_ca: issuers.pem
audit:
  path: data/audit.db
`)
	c, err := Load(LoadOptions{Home: home})
	if err != nil {
		t.Fatal(err)
	}
	for key, got := range map[string]string{
		"proxy.upstream_ca": c.Proxy.UpstreamCA, "vault.path": c.Vault.Path,
		"vault.mint_ca": c.Vault.MintCA, "audit.path": c.Audit.Path,
	} {
		if !filepath.IsAbs(got) || !strings.HasPrefix(got, home+string(filepath.Separator)) {
			t.Errorf("%s = %q, want a path in %s", key, got, home)
		}
	}
	if want := filepath.Join(home, "issuers.pem"); c.Vault.MintCA != want {
		t.Errorf("vault.mint_ca = %q, want %q", c.Vault.MintCA, want)
	}
}

// selfSignedPEM is a certificate, PEM-encoded, for the keys that name a
// CA file.
func selfSignedPEM(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "issuers"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
