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
// the upstream CA file, if one is named, and changes nothing. The problems
// it returns do not say where a value came from; Load's do.
func (c *Config) Validate() error {
	var e ValidationError

	oneOf := func(key, val string, allowed []string) {
		if !contains(allowed, val) {
			e.add(key, val, "must be one of "+strings.Join(allowed, ", "))
		}
	}
	oneOf("log.level", c.Log.Level, LogLevels)
	oneOf("log.format", c.Log.Format, LogFormats)

	hostPort := func(key, val string) {
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
	hostPort("proxy.listen", c.Proxy.Listen)
	hostPort("proxy.admin_listen", c.Proxy.AdminListen)
	if c.Proxy.Listen == c.Proxy.AdminListen && !strings.HasSuffix(c.Proxy.Listen, ":0") {
		e.add("proxy.admin_listen", c.Proxy.AdminListen, "must differ from proxy.listen")
	}
	if c.Proxy.UpstreamCA != "" {
		pem, err := os.ReadFile(c.Proxy.UpstreamCA)
		if err != nil {
			e.add("proxy.upstream_ca", c.Proxy.UpstreamCA, "cannot be read: "+err.Error())
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			e.add("proxy.upstream_ca", c.Proxy.UpstreamCA, "holds no PEM certificate")
		}
	}

	for i, h := range c.Proxy.TunnelHosts {
		if _, err := hostmatch.Pattern(h); err != nil {
			e.add(fmt.Sprintf("proxy.tunnel_hosts[%d]", i), h, "must be a host such as api.example.com or *.example.com: "+err.Error())
		}
	}
	atLeastOne := func(key string, n int) {
		if n < 1 {
			e.add(key, strconv.Itoa(n), "must be at least 1")
		}
	}
	atLeastOne("proxy.max_connections", c.Proxy.MaxConnections)
	atLeastOne("proxy.max_requests", c.Proxy.MaxRequests)
	atLeastOne("proxy.max_upstream_conns_per_host", c.Proxy.MaxUpstreamConnsPerHost)
	nonNeg := func(key string, d time.Duration) {
		if d < 0 {
			e.add(key, d.String(), "must not be negative")
		}
	}
	nonNeg("proxy.shutdown_timeout", c.Proxy.ShutdownTimeout)
	atLeast := func(key string, d, least time.Duration) {
		if d < least {
			e.add(key, d.String(), "must be at least "+least.String())
		}
	}
	atLeast("proxy.upstream_response_timeout", c.Proxy.UpstreamResponseTimeout, time.Second)
	atLeast("proxy.handshake_timeout", c.Proxy.HandshakeTimeout, 100*time.Millisecond)
	atLeast("proxy.idle_timeout", c.Proxy.IdleTimeout, 100*time.Millisecond)

	for i, cidr := range c.Egress.AllowCIDRs {
		if _, err := netip.ParsePrefix(strings.TrimSpace(cidr)); err != nil {
			e.add(fmt.Sprintf("egress.allow_cidrs[%d]", i), cidr, "must be a CIDR such as 10.0.0.0/8 or fd00::/8")
		}
	}

	for i, r := range c.Egress.Resolve {
		host, ip, ok := strings.Cut(strings.TrimSpace(r), "=")
		pinned, herr := hostmatch.Pattern(host)
		if _, err := netip.ParseAddr(ip); !ok || herr != nil || strings.HasPrefix(pinned, "*.") || err != nil {
			e.add(fmt.Sprintf("egress.resolve[%d]", i), r, "must be HOST=IP, e.g. api.stripe.com=127.0.0.1")
		}
	}

	switch scheme, rest, _ := strings.Cut(c.KMS.URI, "://"); scheme {
	case "local":
		if rest == "" {
			e.add("kms.uri", c.KMS.URI, "local:// needs a key file path, e.g. local://kms.key")
		}
	case "gcpkms":
		if !gcpKeyName.MatchString(rest) {
			e.add("kms.uri", c.KMS.URI, "must be gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K")
		}
	case "awskms":
		if rest == "" {
			e.add("kms.uri", c.KMS.URI, "awskms:// needs a key id, ARN or alias/NAME")
		}
	default:
		e.add("kms.uri", c.KMS.URI, "must be one of "+kmsSchemes)
	}
	positive := func(key string, d time.Duration) {
		if d <= 0 {
			e.add(key, d.String(), "must be a positive duration such as 10s")
		}
	}
	nonNegative := func(key string, d time.Duration) {
		if d < 0 {
			e.add(key, d.String(), "must not be negative")
		}
	}
	positive("kms.timeout", c.KMS.Timeout)

	nonEmpty := func(key, val string) {
		if strings.TrimSpace(val) == "" {
			e.add(key, "", "must not be empty")
		}
	}
	nonEmpty("vault.path", c.Vault.Path)
	nonNegative("vault.cache_ttl", c.Vault.CacheTTL)
	if c.Vault.CacheSize < 1 {
		e.add("vault.cache_size", strconv.Itoa(c.Vault.CacheSize), "must be at least 1")
	}

	nonEmpty("audit.path", c.Audit.Path)
	if c.Audit.CheckpointEvery < 0 {
		e.add("audit.checkpoint_every", strconv.Itoa(c.Audit.CheckpointEvery), "must be 0 (off) or a positive count")
	}
	nonNegative("audit.checkpoint_interval", c.Audit.CheckpointInterval)

	p := c.Passport
	nonEmpty("passport.issuer", p.Issuer)
	nonEmpty("passport.audience", p.Audience)
	nonEmpty("passport.keys_path", p.KeysPath)
	nonEmpty("passport.revocations_path", p.RevocationsPath)
	positive("passport.default_ttl", p.DefaultTTL)
	positive("passport.max_ttl", p.MaxTTL)
	if p.MaxTTL > 24*time.Hour {
		e.add("passport.max_ttl", p.MaxTTL.String(), "must be at most 24h: passports are short-lived by design")
	}
	if p.DefaultTTL > p.MaxTTL && p.MaxTTL > 0 {
		e.add("passport.default_ttl", p.DefaultTTL.String(), "must not exceed passport.max_ttl ("+p.MaxTTL.String()+")")
	}
	if p.Leeway < 0 || p.Leeway > 5*time.Minute {
		e.add("passport.leeway", p.Leeway.String(), "must be between 0s and 5m")
	}
	if p.CacheSize < 1 {
		e.add("passport.cache_size", strconv.Itoa(p.CacheSize), "must be at least 1")
	}
	for _, name := range sortedKeys(p.Roles) {
		r := p.Roles[name]
		key := "passport.roles." + name
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

	d := c.Detect
	oneOf("detect.credential_burst.mode", d.CredentialBurst.Mode, DetectorModes)
	oneOf("detect.scope_drift.mode", d.ScopeDrift.Mode, DetectorModes)
	oneOf("detect.prompt_injection.mode", d.PromptInjection.Mode, DetectorModes)
	oneOf("detect.credential_exfiltration.mode", d.CredentialExfiltration.Mode, DetectorModes)
	if d.ScanWindow < 1024 || d.ScanWindow > 16<<20 {
		e.add("detect.scan_window", strconv.Itoa(d.ScanWindow), "must be between 1024 and 16777216 bytes")
	}
	nonEmpty("detect.state_path", d.StatePath)
	if d.CredentialBurst.Factor <= 1 {
		e.add("detect.credential_burst.factor", strconv.FormatFloat(d.CredentialBurst.Factor, 'g', -1, 64), "must be greater than 1")
	}
	positive("detect.credential_burst.window", d.CredentialBurst.Window)
	if d.CredentialBurst.LearningWindow <= d.CredentialBurst.Window {
		e.add("detect.credential_burst.learning_window", d.CredentialBurst.LearningWindow.String(), "must be longer than detect.credential_burst.window")
	}
	atLeastOne("detect.credential_burst.min_samples", d.CredentialBurst.MinSamples)
	atLeastOne("detect.credential_burst.min_count", d.CredentialBurst.MinCount)
	atLeastOne("detect.credential_burst.absolute_cap", d.CredentialBurst.AbsoluteCap)
	atLeastOne("detect.scope_drift.min_events", d.ScopeDrift.MinEvents)
	nonNegative("detect.scope_drift.min_age", d.ScopeDrift.MinAge)
	nonNegative("detect.credential_burst.min_baseline_age", d.CredentialBurst.MinBaselineAge)
	if d.CredentialBurst.LearningWindow < 288*time.Second {
		e.add("detect.credential_burst.learning_window", d.CredentialBurst.LearningWindow.String(), "must be at least 4m48s")
	}
	if t := d.PromptInjection.Threshold; t <= 0 || t > 1 {
		e.add("detect.prompt_injection.threshold", strconv.FormatFloat(t, 'g', -1, 64), "must be greater than 0 and at most 1")
	}
	for i, r := range d.Rules {
		key := fmt.Sprintf("detect.rules[%d]", i)
		if r.Name == "" {
			e.add(key+".name", "", "must not be empty")
		}
		if len(r.Detectors) < 1 {
			e.add(key+".detectors", "", "must name at least one detector")
		}
		for _, n := range r.Detectors {
			if !contains(Detectors, n) {
				e.add(key+".detectors", n, "unknown detector; known: "+strings.Join(Detectors, ", "))
			}
		}
		positive(key+".within", r.Within)
		oneOf(key+".action", r.Action, RuleActions)
	}
	for i, sup := range d.Suppress {
		key := fmt.Sprintf("detect.suppress[%d]", i)
		if sup == (SuppressConfig{}) {
			e.add(key, "", "must set at least one of agent, host, detector, rule")
		}
		if sup.Detector != "" && !contains(Detectors, sup.Detector) {
			e.add(key+".detector", sup.Detector, "unknown detector; known: "+strings.Join(Detectors, ", "))
		}
		if sup.Host != "" {
			if _, err := hostmatch.Pattern(sup.Host); err != nil {
				e.add(key+".host", sup.Host, "must be a host such as api.example.com or *.example.com: "+err.Error())
			}
		}
	}

	ctl := c.Control
	for i, h := range ctl.Hosts {
		if p, err := hostmatch.Pattern(h); err != nil || strings.HasPrefix(p, "*.") {
			e.add(fmt.Sprintf("control.hosts[%d]", i), h, "must be a host name or an IP address its certificate names, e.g. control.example.com")
		}
	}
	if ctl.URL != "" {
		if u, err := url.Parse(ctl.URL); err != nil || u.Scheme != "https" || u.Host == "" || (u.Path != "" && u.Path != "/") {
			e.add("control.url", ctl.URL, "must be https://HOST:PORT (the control plane is reached over HTTPS only)")
		}
	}
	if ctl.CA != "" {
		if pem, err := os.ReadFile(ctl.CA); err != nil {
			e.add("control.ca", ctl.CA, "cannot be read: "+err.Error())
		} else if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			e.add("control.ca", ctl.CA, "holds no PEM certificate")
		}
	}
	if n := countSet(ctl.JoinToken, ctl.JoinTokenFile, ctl.OIDCTokenFile); n > 1 {
		e.add("control.join_token", "(set)", "give one of control.join_token, control.join_token_file and control.oidc_token_file")
	}
	nonNegative("control.max_staleness", ctl.MaxStaleness)
	hostPort("control.listen", ctl.Listen)
	oneOf("control.store", ctl.Store, ControlStores)
	nonEmpty("control.store_path", ctl.StorePath)
	if (ctl.TLSCert == "") != (ctl.TLSKey == "") {
		e.add("control.tls_cert", ctl.TLSCert, "control.tls_cert and control.tls_key go together")
	}
	atLeast("control.sidecar_ttl", ctl.SidecarTTL, time.Minute)
	atLeast("control.lease_ttl", ctl.LeaseTTL, 10*time.Second)
	atLeast("control.heartbeat", ctl.Heartbeat, 100*time.Millisecond)
	for i, is := range ctl.OIDCIssuers {
		key := fmt.Sprintf("control.oidc_issuers[%d]", i)
		if u, err := url.Parse(is.Issuer); err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
			e.add(key+".issuer", is.Issuer, "must be the issuer's URL, e.g. https://kubernetes.default.svc")
		}
		if len(is.Rules) == 0 {
			e.add(key+".rules", "", "must map tokens to an agent with at least one rule")
		}
		for j, r := range is.Rules {
			rk := fmt.Sprintf("%s.rules[%d]", key, j)
			if !passport.ValidAgent(r.Agent) {
				e.add(rk+".agent", r.Agent, "must name an agent")
			}
			if len(r.Claims) == 0 {
				e.add(rk+".claims", "", "must compare at least one claim (a rule matching every token would let any workload of the issuer act as the agent)")
			}
		}
	}

	if len(e.Problems) > 0 {
		return &e
	}
	return nil
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
