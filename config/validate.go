package config

import (
	"crypto/x509"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/stackctl/stack/audit"
	"github.com/stackctl/stack/detect/judge"
	"github.com/stackctl/stack/hostmatch"
	"github.com/stackctl/stack/passport"
)

// Problem is one invalid key.
type Problem struct {
	Key     string // e.g. "proxy.listen"
	Value   string // the offending value, as text; empty when not useful
	Message string // what is wrong and what is allowed
	// Source says where the value came from: the file's path,
	// "environment variable STACK_...", or "flag --..."; empty for a
	// default. Load fills it in.
	Source string
}

func (p Problem) String() string {
	if p.Value != "" {
		return fmt.Sprintf("%s: %q: %s", p.Key, p.Value, p.Message)
	}
	return fmt.Sprintf("%s: %s", p.Key, p.Message)
}

// ValidationError lists every problem found (unknown keys, values that do
// not decode, values that are not allowed); Load returns it so a user
// fixes all of them in one pass.
type ValidationError struct {
	// File is set when every problem with a source comes from this file;
	// otherwise each problem names its own source.
	File     string
	Problems []Problem
}

func (e *ValidationError) add(key, value, msg string) {
	e.Problems = append(e.Problems, Problem{Key: key, Value: value, Message: msg})
}

func (e *ValidationError) Error() string {
	var b strings.Builder
	b.WriteString("invalid configuration")
	if e.File != "" {
		b.WriteString(" in " + e.File)
	}
	line := func(p Problem) string {
		switch {
		case e.File != "" || p.Source == "":
			return p.String()
		case strings.HasPrefix(p.Source, "environment variable ") || strings.HasPrefix(p.Source, "flag "):
			return p.String() + " (from " + p.Source + ")"
		default:
			return p.String() + " (in " + p.Source + ")"
		}
	}
	if len(e.Problems) == 1 {
		b.WriteString(": " + line(e.Problems[0]))
		return b.String()
	}
	b.WriteString(":")
	for _, p := range e.Problems {
		b.WriteString("\n  " + line(p))
	}
	return b.String()
}

var (
	gcpKeyName = regexp.MustCompile(`^projects/[^/]+/locations/[^/]+/keyRings/[^/]+/cryptoKeys/[^/]+$`)
	kmsSchemes = "local://PATH, gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K, awskms://KEY-ID-OR-ALIAS"
	roleModes  = []string{"", "enforce", "alert", "shadow"}
)

// Validate checks every key and reports all problems at once. It reads
// the CA files named by proxy.upstream_ca and control.ca, and changes
// nothing. The problems
// it returns do not say where a value came from; Load's do.
func (c *Config) Validate() error {
	var e ValidationError
	c.Log.validate(&e)
	c.Proxy.validate(&e)
	c.Egress.validate(&e)
	c.KMS.validate(&e)
	c.Vault.validate(&e)
	c.Audit.validate(&e)
	c.Passport.validate(&e)
	c.Detect.validate(&e)
	c.Control.validate(&e)
	if len(e.Problems) > 0 {
		return &e
	}
	return nil
}

func (l LogConfig) validate(e *ValidationError) {
	e.oneOf("log.level", l.Level, LogLevels)
	e.oneOf("log.format", l.Format, LogFormats)
}

func (p ProxyConfig) validate(e *ValidationError) {
	e.hostPort("proxy.listen", p.Listen)
	e.hostPort("proxy.admin_listen", p.AdminListen)
	if p.Listen == p.AdminListen && !strings.HasSuffix(p.Listen, ":0") {
		e.add("proxy.admin_listen", p.AdminListen, "must differ from proxy.listen")
	}
	if p.UpstreamCA != "" {
		e.pemFile("proxy.upstream_ca", p.UpstreamCA)
	}
	for i, h := range p.TunnelHosts {
		e.hostPattern(fmt.Sprintf("proxy.tunnel_hosts[%d]", i), h)
	}
	e.atLeastOne("proxy.max_connections", p.MaxConnections)
	e.atLeastOne("proxy.max_requests", p.MaxRequests)
	e.atLeastOne("proxy.max_upstream_conns_per_host", p.MaxUpstreamConnsPerHost)
	e.nonNegative("proxy.shutdown_timeout", p.ShutdownTimeout)
	e.atLeast("proxy.upstream_response_timeout", p.UpstreamResponseTimeout, time.Second)
	e.atLeast("proxy.handshake_timeout", p.HandshakeTimeout, 100*time.Millisecond)
	e.atLeast("proxy.idle_timeout", p.IdleTimeout, 100*time.Millisecond)
}

func (g EgressConfig) validate(e *ValidationError) {
	for i, cidr := range g.AllowCIDRs {
		if _, err := netip.ParsePrefix(strings.TrimSpace(cidr)); err != nil {
			e.add(fmt.Sprintf("egress.allow_cidrs[%d]", i), cidr, "must be a CIDR such as 10.0.0.0/8 or fd00::/8")
		}
	}
	for i, r := range g.Resolve {
		host, ip, ok := strings.Cut(strings.TrimSpace(r), "=")
		pinned, herr := hostmatch.Pattern(host)
		if _, err := netip.ParseAddr(ip); !ok || herr != nil || strings.HasPrefix(pinned, "*.") || err != nil {
			e.add(fmt.Sprintf("egress.resolve[%d]", i), r, "must be HOST=IP, e.g. api.stripe.com=127.0.0.1")
		}
	}
}

func (k KMSConfig) validate(e *ValidationError) {
	switch scheme, rest, _ := strings.Cut(k.URI, "://"); scheme {
	case "local":
		if rest == "" {
			e.add("kms.uri", k.URI, "local:// needs a key file path, e.g. local://kms.key")
		}
	case "gcpkms":
		if !gcpKeyName.MatchString(rest) {
			e.add("kms.uri", k.URI, "must be gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
		}
	case "awskms":
		if rest == "" {
			e.add("kms.uri", k.URI, "awskms:// needs a key id, ARN or alias/NAME")
		}
	default:
		e.add("kms.uri", k.URI, "must be one of "+kmsSchemes)
	}
	e.positive("kms.timeout", k.Timeout)
}

func (v VaultConfig) validate(e *ValidationError) {
	e.nonEmpty("vault.path", v.Path)
	if v.MintCA != "" {
		e.pemFile("vault.mint_ca", v.MintCA)
	}
	e.nonNegative("vault.cache_ttl", v.CacheTTL)
	e.atLeastOne("vault.cache_size", v.CacheSize)
}

func (a AuditConfig) validate(e *ValidationError) {
	e.nonEmpty("audit.path", a.Path)
	if a.CheckpointEvery < 0 {
		e.add("audit.checkpoint_every", strconv.Itoa(a.CheckpointEvery), "must be 0 (off) or a positive count")
	}
	e.nonNegative("audit.checkpoint_interval", a.CheckpointInterval)
	if _, err := audit.ParseSyncPolicy(a.Sync); err != nil {
		e.add("audit.sync", a.Sync, "must be interval or always")
	}
	if a.SyncInterval <= 0 || a.SyncInterval > time.Second {
		e.add("audit.sync_interval", a.SyncInterval.String(), "must be more than 0s and at most 1s")
	}
	if a.ShipBatch < 1 || a.ShipBatch > MaxAuditShipBatch {
		e.add("audit.ship_batch", strconv.Itoa(a.ShipBatch), fmt.Sprintf("must be from 1 to %d", MaxAuditShipBatch))
	}
	if a.ShipInterval <= 0 || a.ShipInterval > time.Minute {
		e.add("audit.ship_interval", a.ShipInterval.String(), "must be more than 0s and at most 1m")
	}
}

func (p PassportConfig) validate(e *ValidationError) {
	e.nonEmpty("passport.issuer", p.Issuer)
	e.nonEmpty("passport.audience", p.Audience)
	e.nonEmpty("passport.keys_path", p.KeysPath)
	e.nonEmpty("passport.revocations_path", p.RevocationsPath)
	e.positive("passport.default_ttl", p.DefaultTTL)
	e.positive("passport.max_ttl", p.MaxTTL)
	if p.MaxTTL > 24*time.Hour {
		e.add("passport.max_ttl", p.MaxTTL.String(), "must be at most 24h: passports are short-lived by design")
	}
	if p.DefaultTTL > p.MaxTTL && p.MaxTTL > 0 {
		e.add("passport.default_ttl", p.DefaultTTL.String(), "must not exceed passport.max_ttl ("+p.MaxTTL.String()+")")
	}
	if p.Leeway < 0 || p.Leeway > 5*time.Minute {
		e.add("passport.leeway", p.Leeway.String(), "must be between 0s and 5m")
	}
	e.atLeastOne("passport.cache_size", p.CacheSize)
	for _, name := range sortedKeys(p.Roles) {
		p.validateRole(e, "passport.roles."+name, p.Roles[name])
	}
}

func (p PassportConfig) validateRole(e *ValidationError, key string, r passport.Role) {
	if r.TTL < 0 || (p.MaxTTL > 0 && r.TTL > p.MaxTTL) {
		e.add(key+".ttl", r.TTL.String(), "must be between 0 (default TTL) and passport.max_ttl ("+p.MaxTTL.String()+")")
	}
	if !contains(roleModes, r.Mode) {
		e.add(key+".mode", r.Mode, "must be one of enforce, alert, shadow")
	}
	if len(r.Scope) == 0 {
		e.add(key+".scope", "", "must hold at least one grant")
	} else if err := r.Scope.Validate(); err != nil {
		e.add(key+".scope", "", err.Error())
	}
}

func (d DetectConfig) validate(e *ValidationError) {
	e.oneOf("detect.credential_burst.mode", d.CredentialBurst.Mode, DetectorModes)
	e.oneOf("detect.scope_drift.mode", d.ScopeDrift.Mode, DetectorModes)
	e.oneOf("detect.prompt_injection.mode", d.PromptInjection.Mode, DetectorModes)
	e.oneOf("detect.credential_exfiltration.mode", d.CredentialExfiltration.Mode, DetectorModes)
	if d.ScanWindow < 1024 || d.ScanWindow > 16<<20 {
		e.add("detect.scan_window", strconv.Itoa(d.ScanWindow), "must be between 1024 and 16777216 bytes")
	}
	e.nonEmpty("detect.state_path", d.StatePath)
	if d.AlertSummaryWindow < 0 {
		e.add("detect.alert_summary_window", d.AlertSummaryWindow.String(), "must be 0 (every signal on its own) or a positive duration such as 1m")
	}
	d.validateTuning(e)
	for i, r := range d.Rules {
		r.validate(e, fmt.Sprintf("detect.rules[%d]", i))
	}
	for i, s := range d.Suppress {
		s.validate(e, fmt.Sprintf("detect.suppress[%d]", i))
	}
}

// validateTuning checks the detectors' thresholds and windows. Its order
// is the order of the report, which interleaves credential_burst and
// scope_drift; a new check goes where its problem should be listed.
func (d DetectConfig) validateTuning(e *ValidationError) {
	b := d.CredentialBurst
	if b.Factor <= 1 {
		e.add("detect.credential_burst.factor", strconv.FormatFloat(b.Factor, 'g', -1, 64), "must be greater than 1")
	}
	e.positive("detect.credential_burst.window", b.Window)
	if b.LearningWindow <= b.Window {
		e.add("detect.credential_burst.learning_window", b.LearningWindow.String(), "must be longer than detect.credential_burst.window")
	}
	e.atLeastOne("detect.credential_burst.min_samples", b.MinSamples)
	e.atLeastOne("detect.credential_burst.min_count", b.MinCount)
	e.atLeastOne("detect.credential_burst.absolute_cap", b.AbsoluteCap)
	e.atLeastOne("detect.scope_drift.min_events", d.ScopeDrift.MinEvents)
	e.nonNegative("detect.scope_drift.min_age", d.ScopeDrift.MinAge)
	e.nonNegative("detect.credential_burst.min_baseline_age", b.MinBaselineAge)
	if b.LearningWindow < 288*time.Second {
		e.add("detect.credential_burst.learning_window", b.LearningWindow.String(), "must be at least 4m48s")
	}
	if t := d.PromptInjection.LearnedThreshold; t < 0 || t > 1 {
		e.add("detect.prompt_injection.learned_threshold", strconv.FormatFloat(t, 'g', -1, 64), "must be 0 (off) or greater than 0 and at most 1")
	}
	if t := d.PromptInjection.Threshold; t <= 0 || t > 1 {
		e.add("detect.prompt_injection.threshold", strconv.FormatFloat(t, 'g', -1, 64), "must be greater than 0 and at most 1")
	}
	d.PromptInjection.Model.validate(e, "detect.prompt_injection.model")
}

// validate checks the model judge's keys when url turns it on.
func (m InjectionModelConfig) validate(e *ValidationError, key string) {
	if m.URL == "" {
		return
	}
	e.oneOf(key+".kind", m.Kind, JudgeKinds)
	e.oneOf(key+".on_error", m.OnError, JudgeOnErrors)
	e.oneOf(key+".when", m.When, JudgeWhens)
	e.positive(key+".timeout", m.Timeout)
	if m.CacheSize < 0 {
		e.add(key+".cache_size", strconv.Itoa(m.CacheSize), "must not be negative (0 keeps no verdicts)")
	}
	if m.BreakAfter < -1 || m.BreakAfter == 0 {
		e.add(key+".break_after", strconv.Itoa(m.BreakAfter), "must be a number of failures (at least 1), or -1 never to stop calling")
	}
	if m.BreakAfter > 0 {
		e.positive(key+".break_for", m.BreakFor)
	}
	if m.APIKeyEnv != "" && !envName.MatchString(m.APIKeyEnv) {
		e.add(key+".api_key_env", m.APIKeyEnv, "must name an environment variable (letters, digits and _), not hold the key")
	}
	if err := judge.CheckURL(m.URL); err != nil {
		shown := m.URL
		if u, perr := url.Parse(m.URL); perr == nil && u.User != nil {
			shown = u.Redacted() // a password in it is not repeated
		}
		e.add(key+".url", shown, err.Error())
	}
	if m.Kind == "chat" {
		e.nonEmpty(key+".model", m.Model)
	}
	if m.CAFile != "" {
		e.pemFile(key+".ca_file", m.CAFile)
	}
}

// envName matches the name of an environment variable.
var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

func (r RuleConfig) validate(e *ValidationError, key string) {
	if r.Name == "" {
		e.add(key+".name", "", "must not be empty")
	}
	if len(r.Detectors) < 1 {
		e.add(key+".detectors", "", "must name at least one detector")
	}
	for _, n := range r.Detectors {
		e.detector(key+".detectors", n)
	}
	e.positive(key+".within", r.Within)
	e.oneOf(key+".action", r.Action, RuleActions)
}

func (s SuppressConfig) validate(e *ValidationError, key string) {
	if s == (SuppressConfig{}) {
		e.add(key, "", "must set at least one of agent, host, detector, rule")
	}
	if s.Detector != "" {
		e.detector(key+".detector", s.Detector)
	}
	if s.Host != "" {
		e.hostPattern(key+".host", s.Host)
	}
}

func (c ControlConfig) validate(e *ValidationError) {
	for i, h := range c.Hosts {
		if p, err := hostmatch.Pattern(h); err != nil || strings.HasPrefix(p, "*.") {
			e.add(fmt.Sprintf("control.hosts[%d]", i), h, "must be a host name or an IP address its certificate names, e.g. control.example.com")
		}
	}
	seen := map[string]bool{}
	for i, raw := range c.URLs {
		key := fmt.Sprintf("control.url[%d]", i)
		if u, err := url.Parse(raw); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
			e.add(key, raw, "must be https://HOST:PORT (the control plane is reached over HTTPS only)")
			continue
		}
		if base := strings.TrimRight(raw, "/"); seen[base] {
			e.add(key, raw, "is listed twice")
		} else {
			seen[base] = true
		}
	}
	if c.CA != "" {
		e.pemFile("control.ca", c.CA)
	}
	if n := countSet(c.JoinToken, c.JoinTokenFile, c.OIDCTokenFile); n > 1 {
		e.add("control.join_token", "(set)", "give one of control.join_token, control.join_token_file and control.oidc_token_file")
	}
	e.nonNegative("control.max_staleness", c.MaxStaleness)
	e.hostPort("control.listen", c.Listen)
	e.oneOf("control.store", c.Store, ControlStores)
	e.nonEmpty("control.store_path", c.StorePath)
	e.oneOf("control.audit_integrity", c.AuditIntegrity, AuditIntegrityPolicies)
	if o := c.OTLP; o.Endpoint != "" {
		if u, err := url.Parse(o.Endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			e.add("control.otlp.endpoint", o.Endpoint, "must be an http:// or https:// URL such as http://collector:4318")
		}
		if o.CA != "" {
			e.pemFile("control.otlp.ca", o.CA)
		}
	}
	if w := c.Webhook; w.Image != "" {
		if u, err := url.Parse(w.ControlURL); err != nil || u.Scheme != "https" || u.Host == "" {
			e.add("control.webhook.control_url", w.ControlURL, "must be the https:// URL injected sidecars join this control plane at, such as https://stack-control.stack-system.svc:9443")
		}
		e.oneOf("control.webhook.pull_policy", w.PullPolicy, []string{"IfNotPresent", "Always", "Never"})
	}
	if o := c.Console.OIDC; c.Console.Enabled && o.Issuer != "" {
		if u, err := url.Parse(o.Issuer); err != nil || u.Scheme != "https" || u.Host == "" {
			e.add("control.console.oidc.issuer", o.Issuer, "must be the provider's https:// issuer URL")
		}
		if o.ClientID == "" {
			e.add("control.console.oidc.client_id", o.ClientID, "is required with an issuer")
		}
		if u, err := url.Parse(o.RedirectURL); err != nil || u.Scheme != "https" || u.Host == "" || u.Path != "/ui/oidc/callback" {
			e.add("control.console.oidc.redirect_url", o.RedirectURL, "must be this control plane's https://HOST:PORT/ui/oidc/callback, as registered at the provider")
		}
		if len(o.Admins) == 0 && len(o.Viewers) == 0 {
			e.add("control.console.oidc.admins", "", "name admins or viewers (emails or subjects, \"*\" for anyone): nobody could sign in")
		}
		if o.CA != "" {
			e.pemFile("control.console.oidc.ca", o.CA)
		}
	}
	if c.Console.Enabled && (c.Console.SessionTTL <= 0 || c.Console.SessionTTL > 7*24*time.Hour) {
		e.add("control.console.session_ttl", c.Console.SessionTTL.String(), "must be between 1s and 168h")
	}
	if c.OnEtcd() {
		c.Etcd.validate(e)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		e.add("control.tls_cert", c.TLSCert, "control.tls_cert and control.tls_key go together")
	}
	e.atLeast("control.sidecar_ttl", c.SidecarTTL, time.Minute)
	e.atLeast("control.lease_ttl", c.LeaseTTL, 10*time.Second)
	e.atLeast("control.heartbeat", c.Heartbeat, 100*time.Millisecond)
	e.atLeast("control.key_activation_delay", c.KeyActivationDelay, time.Second)
	// Shorter than an etcd leader election, and every election would
	// take the control plane out.
	e.atLeast("control.store_timeout", c.StoreTimeout, time.Second)
	// Signals reach the store once a minute: a shorter gate is not
	// measured.
	e.atLeast("control.detector_gate", c.DetectorGate, time.Minute)
	for i, is := range c.OIDCIssuers {
		is.validate(e, fmt.Sprintf("control.oidc_issuers[%d]", i))
	}
}

func (c EtcdConfig) validate(e *ValidationError) {
	if len(c.Endpoints) == 0 {
		e.add("control.etcd.endpoints", "", "must list at least one member when control.store is etcd")
	}
	for i, ep := range c.Endpoints {
		if !etcdEndpoint(ep) {
			e.add(fmt.Sprintf("control.etcd.endpoints[%d]", i), ep, "must be a member's client URL or HOST:PORT, e.g. https://etcd-0.example.com:2379")
		}
	}
	if !strings.HasPrefix(c.Prefix, "/") || !strings.HasSuffix(c.Prefix, "/") {
		e.add("control.etcd.prefix", c.Prefix, `must start and end with "/", e.g. /stack/, so that it is no other prefix's start`)
	}
	e.positive("control.etcd.dial_timeout", c.DialTimeout)
	t := c.TLS
	if (t.CertFile == "") != (t.KeyFile == "") {
		e.add("control.etcd.tls.cert_file", t.CertFile, "control.etcd.tls.cert_file and control.etcd.tls.key_file go together")
	}
	if t.CertFile != "" {
		e.pemFile("control.etcd.tls.cert_file", t.CertFile)
	}
	if t.KeyFile != "" {
		if _, err := os.Stat(t.KeyFile); err != nil {
			e.add("control.etcd.tls.key_file", t.KeyFile, "cannot be read: "+err.Error())
		}
	}
	if t.CAFile != "" {
		e.pemFile("control.etcd.tls.ca_file", t.CAFile)
	}
}

// etcdEndpoint reports whether ep is an http(s) URL of a host and port, or
// a HOST:PORT pair.
func etcdEndpoint(ep string) bool {
	hostPort := ep
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || (u.Path != "" && u.Path != "/") {
			return false
		}
		hostPort = u.Host
	}
	host, port, err := net.SplitHostPort(hostPort)
	if err != nil || host == "" {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535
}

func (is OIDCIssuerConfig) validate(e *ValidationError, key string) {
	if u, err := url.Parse(is.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		e.add(key+".issuer", is.Issuer, "must be the issuer's URL, e.g. https://kubernetes.default.svc")
	}
	if len(is.Rules) == 0 {
		e.add(key+".rules", "", "must map tokens to an agent with at least one rule")
	}
	for j, r := range is.Rules {
		r.validate(e, fmt.Sprintf("%s.rules[%d]", key, j))
	}
}

func (r OIDCRuleConfig) validate(e *ValidationError, key string) {
	if !passport.ValidAgent(r.Agent) {
		e.add(key+".agent", r.Agent, "must name an agent")
	}
	if len(r.Claims) == 0 {
		e.add(key+".claims", "", "must compare at least one claim (a rule matching every token would let any workload of the issuer act as the agent)")
	}
}

// The checks below are shared by several keys, so that one kind of value
// is checked, and its problem worded, the same way wherever it appears.

func (e *ValidationError) oneOf(key, val string, allowed []string) {
	if !contains(allowed, val) {
		e.add(key, val, "must be one of "+strings.Join(allowed, ", "))
	}
}

func (e *ValidationError) nonEmpty(key, val string) {
	if strings.TrimSpace(val) == "" {
		e.add(key, "", "must not be empty")
	}
}

func (e *ValidationError) atLeastOne(key string, n int) {
	if n < 1 {
		e.add(key, strconv.Itoa(n), "must be at least 1")
	}
}

func (e *ValidationError) positive(key string, d time.Duration) {
	if d <= 0 {
		e.add(key, d.String(), "must be a positive duration such as 10s")
	}
}

func (e *ValidationError) nonNegative(key string, d time.Duration) {
	if d < 0 {
		e.add(key, d.String(), "must not be negative")
	}
}

func (e *ValidationError) atLeast(key string, d, least time.Duration) {
	if d < least {
		e.add(key, d.String(), "must be at least "+least.String())
	}
}

// hostPort checks a listen address: host:port, the host an IP address,
// localhost or empty.
func (e *ValidationError) hostPort(key, val string) {
	host, port, err := net.SplitHostPort(val)
	if err != nil {
		e.add(key, val, "must be host:port, e.g. 127.0.0.1:8080")
		return
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		e.add(key, val, "port must be a number from 0 to 65535")
		return
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(strings.Trim(host, "[]")); err != nil {
			e.add(key, val, "host must be an IP address, localhost, or empty for all interfaces")
		}
	}
}

// hostPattern checks a host pattern as hostmatch reads it.
func (e *ValidationError) hostPattern(key, val string) {
	if _, err := hostmatch.Pattern(val); err != nil {
		e.add(key, val, "must be a host such as api.example.com or *.example.com: "+err.Error())
	}
}

// pemFile checks that path can be read and holds a PEM certificate.
func (e *ValidationError) pemFile(key, path string) {
	pem, err := os.ReadFile(path)
	if err != nil {
		e.add(key, path, "cannot be read: "+err.Error())
	} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		e.add(key, path, "holds no PEM certificate")
	}
}

func (e *ValidationError) detector(key, name string) {
	if !contains(Detectors, name) {
		e.add(key, name, "unknown detector; known: "+strings.Join(Detectors, ", "))
	}
}

// countSet counts the non-empty values.
func countSet(vals ...string) int {
	n := 0
	for _, v := range vals {
		if v != "" {
			n++
		}
	}
	return n
}
