package config

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/passport"
)

// Validate reports every problem, each once, section by section in the
// order of the file, so a report reads the same from one run to the next.
func TestValidateReportsEveryProblemInOrder(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.pem")
	_, errMissing := os.ReadFile(missing)
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	hostErr := func(h string) string {
		t.Helper()
		_, err := hostmatch.Pattern(h)
		if err == nil {
			t.Fatalf("hostmatch.Pattern(%q) accepted it", h)
		}
		return err.Error()
	}
	badScope := passport.Scope{{Hosts: nil}}
	scopeErr := badScope.Validate()
	if scopeErr == nil {
		t.Fatal("a grant without hosts validated")
	}
	const hostMsg = "must be a host such as api.example.com or *.example.com: "
	const unknownDetector = "unknown detector; known: credential_burst, scope_drift, prompt_injection, credential_exfiltration"
	const modes = "must be one of off, shadow, alert, block, revoke"

	tests := []struct {
		name  string
		spoil func(c *Config)
		want  []Problem
	}{
		{
			name:  "defaults",
			spoil: func(*Config) {},
		},
		{
			name: "every section wrong",
			spoil: func(c *Config) {
				c.Log = LogConfig{Level: "loud", Format: "pretty"}
				c.Proxy = ProxyConfig{
					Listen:      "nope",
					AdminListen: "127.0.0.1:70000",
					UpstreamCA:  missing,
					TunnelHosts: []string{"api.example.com", "*.com"},
					MaxRequests: -1,
				}
				c.Proxy.ShutdownTimeout = -time.Second
				c.Egress = EgressConfig{
					AllowCIDRs: []string{"10.0.0.0/8", "10.0.0.0/33"},
					Resolve:    []string{"*.stripe.com=127.0.0.1", "api.stripe.com", "api.stripe.com=127.0.0.1"},
				}
				c.KMS = KMSConfig{URI: "vault://x"}
				c.Vault = VaultConfig{Path: " ", CacheTTL: -time.Second}
				c.Audit = AuditConfig{CheckpointEvery: -1, CheckpointInterval: -time.Second, Sync: "sometimes", SyncInterval: 2 * time.Second, ShipBatch: 1001, ShipInterval: 0}
				c.Passport = PassportConfig{
					MaxTTL: 48 * time.Hour,
					Leeway: 10 * time.Minute,
					Roles: map[string]passport.Role{
						"b": {Scope: badScope},
						"a": {TTL: 72 * time.Hour, Mode: "nuke"},
					},
				}
				c.Detect = DetectConfig{
					ScanWindow: 10,
					CredentialBurst: BurstConfig{
						Mode:           "nuke",
						Factor:         1,
						MinBaselineAge: -time.Second,
					},
					ScopeDrift:             DriftConfig{Mode: "nuke", MinAge: -time.Second},
					PromptInjection:        InjectionConfig{Mode: "nuke"},
					CredentialExfiltration: ExfilConfig{Mode: "nuke"},
					Rules: []RuleConfig{
						{Action: "nuke"},
						{Name: "r", Detectors: []string{"scope_drift", "telepathy"}, Within: time.Minute, Action: "alert"},
					},
					Suppress: []SuppressConfig{
						{},
						{Detector: "telepathy", Host: "api.example.com:443"},
					},
				}
				c.Control = ControlConfig{
					Hosts:          []string{"control.example.com", "*.example.com"},
					URLs:           []string{"http://control.example.com"},
					CA:             missing,
					JoinToken:      "t",
					JoinTokenFile:  "f",
					MaxStaleness:   -time.Second,
					Listen:         "nope",
					Store:          "consul",
					AuditIntegrity: "shrug",
					OTLP:           OTLPConfig{Endpoint: "collector:4318"},
					TLSCert:        "cert.pem",
					OIDCIssuers: []OIDCIssuerConfig{
						{Issuer: "ftp://issuer"},
						{Issuer: "https://issuer", Rules: []OIDCRuleConfig{{Agent: "bad agent"}}},
					},
				}
			},
			want: []Problem{
				{Key: "log.level", Value: "loud", Message: "must be one of debug, info, warn, error"},
				{Key: "log.format", Value: "pretty", Message: "must be one of auto, json, console"},
				{Key: "proxy.listen", Value: "nope", Message: "must be host:port, e.g. 127.0.0.1:8080"},
				{Key: "proxy.admin_listen", Value: "127.0.0.1:70000", Message: "port must be a number from 0 to 65535"},
				{Key: "proxy.upstream_ca", Value: missing, Message: "cannot be read: " + errMissing.Error()},
				{Key: "proxy.tunnel_hosts[1]", Value: "*.com", Message: hostMsg + hostErr("*.com")},
				{Key: "proxy.max_connections", Value: "0", Message: "must be at least 1"},
				{Key: "proxy.max_requests", Value: "-1", Message: "must be at least 1"},
				{Key: "proxy.max_upstream_conns_per_host", Value: "0", Message: "must be at least 1"},
				{Key: "proxy.shutdown_timeout", Value: "-1s", Message: "must not be negative"},
				{Key: "proxy.upstream_response_timeout", Value: "0s", Message: "must be at least 1s"},
				{Key: "proxy.handshake_timeout", Value: "0s", Message: "must be at least 100ms"},
				{Key: "proxy.idle_timeout", Value: "0s", Message: "must be at least 100ms"},
				{Key: "egress.allow_cidrs[1]", Value: "10.0.0.0/33", Message: "must be a CIDR such as 10.0.0.0/8 or fd00::/8"},
				{Key: "egress.resolve[0]", Value: "*.stripe.com=127.0.0.1", Message: "must be HOST=IP, e.g. api.stripe.com=127.0.0.1"},
				{Key: "egress.resolve[1]", Value: "api.stripe.com", Message: "must be HOST=IP, e.g. api.stripe.com=127.0.0.1"},
				{Key: "kms.uri", Value: "vault://x", Message: "must be one of local://PATH, gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K, awskms://KEY-ID-OR-ALIAS"},
				{Key: "kms.timeout", Value: "0s", Message: "must be a positive duration such as 10s"},
				{Key: "vault.path", Message: "must not be empty"},
				{Key: "vault.cache_ttl", Value: "-1s", Message: "must not be negative"},
				{Key: "vault.cache_size", Value: "0", Message: "must be at least 1"},
				{Key: "audit.path", Message: "must not be empty"},
				{Key: "audit.checkpoint_every", Value: "-1", Message: "must be 0 (off) or a positive count"},
				{Key: "audit.checkpoint_interval", Value: "-1s", Message: "must not be negative"},
				{Key: "audit.sync", Value: "sometimes", Message: "must be interval or always"},
				{Key: "audit.sync_interval", Value: "2s", Message: "must be more than 0s and at most 1s"},
				{Key: "audit.ship_batch", Value: "1001", Message: "must be from 1 to 1000"},
				{Key: "audit.ship_interval", Value: "0s", Message: "must be more than 0s and at most 1m"},
				{Key: "passport.issuer", Message: "must not be empty"},
				{Key: "passport.audience", Message: "must not be empty"},
				{Key: "passport.keys_path", Message: "must not be empty"},
				{Key: "passport.revocations_path", Message: "must not be empty"},
				{Key: "passport.default_ttl", Value: "0s", Message: "must be a positive duration such as 10s"},
				{Key: "passport.max_ttl", Value: "48h0m0s", Message: "must be at most 24h: passports are short-lived by design"},
				{Key: "passport.leeway", Value: "10m0s", Message: "must be between 0s and 5m"},
				{Key: "passport.cache_size", Value: "0", Message: "must be at least 1"},
				{Key: "passport.roles.a.ttl", Value: "72h0m0s", Message: "must be between 0 (default TTL) and passport.max_ttl (48h0m0s)"},
				{Key: "passport.roles.a.mode", Value: "nuke", Message: "must be one of enforce, alert, shadow"},
				{Key: "passport.roles.a.scope", Message: "must hold at least one grant"},
				{Key: "passport.roles.b.scope", Message: scopeErr.Error()},
				{Key: "detect.credential_burst.mode", Value: "nuke", Message: modes},
				{Key: "detect.scope_drift.mode", Value: "nuke", Message: modes},
				{Key: "detect.prompt_injection.mode", Value: "nuke", Message: modes},
				{Key: "detect.credential_exfiltration.mode", Value: "nuke", Message: modes},
				{Key: "detect.scan_window", Value: "10", Message: "must be between 1024 and 16777216 bytes"},
				{Key: "detect.state_path", Message: "must not be empty"},
				{Key: "detect.credential_burst.factor", Value: "1", Message: "must be greater than 1"},
				{Key: "detect.credential_burst.window", Value: "0s", Message: "must be a positive duration such as 10s"},
				{Key: "detect.credential_burst.learning_window", Value: "0s", Message: "must be longer than detect.credential_burst.window"},
				{Key: "detect.credential_burst.min_samples", Value: "0", Message: "must be at least 1"},
				{Key: "detect.credential_burst.min_count", Value: "0", Message: "must be at least 1"},
				{Key: "detect.credential_burst.absolute_cap", Value: "0", Message: "must be at least 1"},
				{Key: "detect.scope_drift.min_events", Value: "0", Message: "must be at least 1"},
				{Key: "detect.scope_drift.min_age", Value: "-1s", Message: "must not be negative"},
				{Key: "detect.credential_burst.min_baseline_age", Value: "-1s", Message: "must not be negative"},
				{Key: "detect.credential_burst.learning_window", Value: "0s", Message: "must be at least 4m48s"},
				{Key: "detect.prompt_injection.threshold", Value: "0", Message: "must be greater than 0 and at most 1"},
				{Key: "detect.rules[0].name", Message: "must not be empty"},
				{Key: "detect.rules[0].detectors", Message: "must name at least one detector"},
				{Key: "detect.rules[0].within", Value: "0s", Message: "must be a positive duration such as 10s"},
				{Key: "detect.rules[0].action", Value: "nuke", Message: "must be one of alert, block, revoke"},
				{Key: "detect.rules[1].detectors", Value: "telepathy", Message: unknownDetector},
				{Key: "detect.suppress[0]", Message: "must set at least one of agent, host, detector, rule"},
				{Key: "detect.suppress[1].detector", Value: "telepathy", Message: unknownDetector},
				{Key: "detect.suppress[1].host", Value: "api.example.com:443", Message: hostMsg + hostErr("api.example.com:443")},
				{Key: "control.hosts[1]", Value: "*.example.com", Message: "must be a host name or an IP address its certificate names, e.g. control.example.com"},
				{Key: "control.url[0]", Value: "http://control.example.com", Message: "must be https://HOST:PORT (the control plane is reached over HTTPS only)"},
				{Key: "control.ca", Value: missing, Message: "cannot be read: " + errMissing.Error()},
				{Key: "control.join_token", Value: "(set)", Message: "give one of control.join_token, control.join_token_file and control.oidc_token_file"},
				{Key: "control.max_staleness", Value: "-1s", Message: "must not be negative"},
				{Key: "control.listen", Value: "nope", Message: "must be host:port, e.g. 127.0.0.1:8080"},
				{Key: "control.store", Value: "consul", Message: "must be one of bbolt, etcd"},
				{Key: "control.store_path", Message: "must not be empty"},
				{Key: "control.audit_integrity", Value: "shrug", Message: "must be one of alert, revoke"},
				{Key: "control.otlp.endpoint", Value: "collector:4318", Message: "must be an http:// or https:// URL such as http://collector:4318"},
				{Key: "control.tls_cert", Value: "cert.pem", Message: "control.tls_cert and control.tls_key go together"},
				{Key: "control.sidecar_ttl", Value: "0s", Message: "must be at least 1m0s"},
				{Key: "control.lease_ttl", Value: "0s", Message: "must be at least 10s"},
				{Key: "control.heartbeat", Value: "0s", Message: "must be at least 100ms"},
				{Key: "control.key_activation_delay", Value: "0s", Message: "must be at least 1s"},
				{Key: "control.store_timeout", Value: "0s", Message: "must be at least 1s"},
				{Key: "control.detector_gate", Value: "0s", Message: "must be at least 1m0s"},
				{Key: "control.oidc_issuers[0].issuer", Value: "ftp://issuer", Message: "must be the issuer's URL, e.g. https://kubernetes.default.svc"},
				{Key: "control.oidc_issuers[0].rules", Message: "must map tokens to an agent with at least one rule"},
				{Key: "control.oidc_issuers[1].rules[0].agent", Value: "bad agent", Message: "must name an agent"},
				{Key: "control.oidc_issuers[1].rules[0].claims", Message: "must compare at least one claim (a rule matching every token would let any workload of the issuer act as the agent)"},
			},
		},
		{
			name: "the other ways to be wrong",
			spoil: func(c *Config) {
				c.Proxy.Listen = "example.com:80"
				c.Proxy.AdminListen = "example.com:80"
				c.Proxy.UpstreamCA = notPEM
				c.KMS.URI = "local://"
				c.Passport.DefaultTTL = 2 * time.Hour
				c.Passport.MaxTTL = time.Hour
				c.Passport.Leeway = -time.Second
				c.Detect.CredentialBurst.Window = time.Hour
				c.Detect.CredentialBurst.LearningWindow = time.Hour
				c.Detect.PromptInjection.Threshold = 1.5
				c.Control.URLs = []string{"https://control-0.example.com:8443", "https://control.example.com/api", "https://control-0.example.com:8443/"}
				c.Control.CA = notPEM
				c.Control.Listen = "127.0.0.1:x"
				c.Control.TLSKey = "key.pem"
			},
			want: []Problem{
				{Key: "proxy.listen", Value: "example.com:80", Message: "host must be an IP address, localhost, or empty for all interfaces"},
				{Key: "proxy.admin_listen", Value: "example.com:80", Message: "host must be an IP address, localhost, or empty for all interfaces"},
				{Key: "proxy.admin_listen", Value: "example.com:80", Message: "must differ from proxy.listen"},
				{Key: "proxy.upstream_ca", Value: notPEM, Message: "holds no PEM certificate"},
				{Key: "kms.uri", Value: "local://", Message: "local:// needs a key file path, e.g. local://kms.key"},
				{Key: "passport.default_ttl", Value: "2h0m0s", Message: "must not exceed passport.max_ttl (1h0m0s)"},
				{Key: "passport.leeway", Value: "-1s", Message: "must be between 0s and 5m"},
				{Key: "detect.credential_burst.learning_window", Value: "1h0m0s", Message: "must be longer than detect.credential_burst.window"},
				{Key: "detect.prompt_injection.threshold", Value: "1.5", Message: "must be greater than 0 and at most 1"},
				{Key: "control.url[1]", Value: "https://control.example.com/api", Message: "must be https://HOST:PORT (the control plane is reached over HTTPS only)"},
				{Key: "control.url[2]", Value: "https://control-0.example.com:8443/", Message: "is listed twice"},
				{Key: "control.ca", Value: notPEM, Message: "holds no PEM certificate"},
				{Key: "control.listen", Value: "127.0.0.1:x", Message: "port must be a number from 0 to 65535"},
				{Key: "control.tls_cert", Message: "control.tls_cert and control.tls_key go together"},
			},
		},
		{
			name: "etcd store",
			spoil: func(c *Config) {
				c.Control.Store = "etcd"
			},
			want: []Problem{
				{Key: "control.etcd.endpoints", Message: "must list at least one member when control.store is etcd"},
			},
		},
		{
			name: "etcd settings",
			spoil: func(c *Config) {
				c.Control.Store = "etcd"
				c.Control.Etcd = EtcdConfig{
					Endpoints:   []string{"https://etcd-0.example.com:2379", "10.0.0.2:2379", "etcd-2", "ftp://etcd:2379", "https://etcd:2379/v3"},
					Prefix:      "stack",
					DialTimeout: 0,
					TLS:         EtcdTLSConfig{CertFile: notPEM, CAFile: missing},
				}
			},
			want: []Problem{
				{Key: "control.etcd.endpoints[2]", Value: "etcd-2", Message: "must be a member's client URL or HOST:PORT, e.g. https://etcd-0.example.com:2379"},
				{Key: "control.etcd.endpoints[3]", Value: "ftp://etcd:2379", Message: "must be a member's client URL or HOST:PORT, e.g. https://etcd-0.example.com:2379"},
				{Key: "control.etcd.endpoints[4]", Value: "https://etcd:2379/v3", Message: "must be a member's client URL or HOST:PORT, e.g. https://etcd-0.example.com:2379"},
				{Key: "control.etcd.prefix", Value: "stack", Message: `must start and end with "/", e.g. /stack/, so that it is no other prefix's start`},
				{Key: "control.etcd.dial_timeout", Value: "0s", Message: "must be a positive duration such as 10s"},
				{Key: "control.etcd.tls.cert_file", Value: notPEM, Message: "control.etcd.tls.cert_file and control.etcd.tls.key_file go together"},
				{Key: "control.etcd.tls.cert_file", Value: notPEM, Message: "holds no PEM certificate"},
				{Key: "control.etcd.tls.ca_file", Value: missing, Message: "cannot be read: " + errMissing.Error()},
			},
		},
		{
			name: "etcd without problems",
			spoil: func(c *Config) {
				c.Control.Store = "etcd"
				c.Control.Etcd.Endpoints = []string{"https://etcd-0.example.com:2379", "127.0.0.1:2379"}
			},
		},
		{
			name: "cloud key names",
			spoil: func(c *Config) {
				c.KMS.URI = "gcpkms://projects/p/keyRings/r"
			},
			want: []Problem{
				{Key: "kms.uri", Value: "gcpkms://projects/p/keyRings/r", Message: "must be gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K"},
			},
		},
		{
			name: "aws key id",
			spoil: func(c *Config) {
				c.KMS.URI = "awskms://"
			},
			want: []Problem{
				{Key: "kms.uri", Value: "awskms://", Message: "awskms:// needs a key id, ARN or alias/NAME"},
			},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := Default(t.TempDir())
			tc.spoil(c)
			err := c.Validate()
			if tc.want == nil {
				if err != nil {
					t.Fatalf("Validate() = %v, want nil", err)
				}
				return
			}
			verr, ok := err.(*ValidationError)
			if !ok {
				t.Fatalf("Validate() = %v, want a *ValidationError", err)
			}
			if !reflect.DeepEqual(verr.Problems, tc.want) {
				t.Errorf("problems differ")
				for i := 0; i < max(len(verr.Problems), len(tc.want)); i++ {
					var got, want Problem
					if i < len(verr.Problems) {
						got = verr.Problems[i]
					}
					if i < len(tc.want) {
						want = tc.want[i]
					}
					if got != want {
						t.Errorf("[%d]\n got %q %q %q\nwant %q %q %q", i, got.Key, got.Value, got.Message, want.Key, want.Value, want.Message)
					}
				}
			}
		})
	}
}
