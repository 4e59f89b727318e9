package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/spf13/pflag"
	"github.com/spf13/viper"

	"github.com/stackctl/stack/passport"
)

// FileName is the config file's name inside the data directory.
const FileName = "stack.yaml"

// EnvPrefix prefixes every environment variable that sets a key:
// proxy.admin_listen is STACK_PROXY_ADMIN_LISTEN.
const EnvPrefix = "STACK"

// LoadOptions says where Load looks.
type LoadOptions struct {
	// Home is the data directory from --home; empty means STACK_HOME, then
	// ~/.stack.
	Home string
	// File is the config file from --config; empty means Home/stack.yaml
	// when it exists (a missing default file is not an error).
	File string
	// Flags maps config keys to command-line flags; a flag overrides the
	// file and the environment only when it was set.
	Flags map[string]*pflag.Flag
}

// HomeDir returns the data directory: explicit, else $STACK_HOME, else
// ~/.stack.
func HomeDir(explicit string) (string, error) {
	if explicit != "" {
		return filepath.Abs(explicit)
	}
	if h := os.Getenv("STACK_HOME"); h != "" {
		return filepath.Abs(h)
	}
	u, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("config: no home directory for the default data directory; set STACK_HOME or --home: %w", err)
	}
	return filepath.Join(u, ".stack"), nil
}

// Load reads the configuration and validates it. Every problem (an
// unknown key, a value that does not decode, a value that is not allowed)
// is reported at once in a *ValidationError, each naming where its value
// came from; nothing is written.
func Load(opts LoadOptions) (*Config, error) {
	home, err := HomeDir(opts.Home)
	if err != nil {
		return nil, err
	}
	v := viper.New()
	setDefaults(v)
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	file := opts.File
	explicit := file != ""
	if !explicit {
		file = filepath.Join(home, FileName)
	}
	v.SetConfigFile(file)
	v.SetConfigType("yaml")
	readFile := true
	if err := v.ReadInConfig(); err != nil {
		if !explicit && errors.Is(err, fs.ErrNotExist) {
			readFile = false
		} else {
			return nil, fmt.Errorf("config: read %s: %w", file, err)
		}
	}
	src := sources{flags: opts.Flags}
	var report ValidationError
	if readFile {
		src.file = file
		keys, err := fileKeys(file)
		if err != nil {
			return nil, err
		}
		src.fileKeys = keys
		report.merge(unknownKeys(keys))
	}
	for key, f := range opts.Flags {
		if f == nil {
			continue
		}
		if err := v.BindPFlag(key, f); err != nil {
			return nil, fmt.Errorf("config: bind flag --%s to %s: %w", f.Name, key, err)
		}
	}

	// Decoding goes on past a value that does not decode, and validation
	// runs on what did, so that one report lists every problem.
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		problems, ok := decodeProblems(err, v)
		if !ok {
			return nil, fmt.Errorf("config: %s: %w", describeSource(file, readFile), err)
		}
		report.merge(problems)
	}
	c.Home = home
	if readFile {
		c.File = file
	}
	c.resolvePaths()
	var verr *ValidationError
	if err := c.Validate(); errors.As(err, &verr) {
		report.merge(verr.Problems)
	} else if err != nil {
		return nil, err
	}
	if len(report.Problems) > 0 {
		src.attribute(&report)
		return nil, &report
	}
	return &c, nil
}

func describeSource(file string, read bool) string {
	if read {
		return file
	}
	return "environment and flags"
}

// Default returns the configuration with every default and no file, for
// the data directory home.
func Default(home string) *Config {
	v := viper.New()
	setDefaults(v)
	var c Config
	if err := v.UnmarshalExact(&c); err != nil {
		panic("config: defaults do not decode: " + err.Error())
	}
	c.Home = home
	c.resolvePaths()
	return &c
}

func setDefaults(v *viper.Viper) {
	v.SetDefault("log.level", DefaultLogLevel)
	v.SetDefault("log.format", DefaultLogFormat)
	v.SetDefault("proxy.listen", DefaultListen)
	v.SetDefault("proxy.admin_listen", DefaultAdminListen)
	v.SetDefault("proxy.upstream_ca", "")
	v.SetDefault("proxy.passport_file", "")
	v.SetDefault("proxy.tunnel_hosts", []string{})
	v.SetDefault("proxy.max_connections", DefaultMaxConnections)
	v.SetDefault("proxy.max_requests", DefaultMaxRequests)
	v.SetDefault("proxy.max_upstream_conns_per_host", DefaultMaxUpstreamConns)
	v.SetDefault("proxy.upstream_response_timeout", DefaultUpstreamResponse)
	v.SetDefault("proxy.handshake_timeout", DefaultHandshakeTimeout)
	v.SetDefault("proxy.idle_timeout", DefaultIdleTimeout)
	v.SetDefault("proxy.http2", true)
	v.SetDefault("proxy.shutdown_timeout", DefaultShutdownTimeout)
	v.SetDefault("egress.allow_cidrs", []string{})
	v.SetDefault("egress.resolve", []string{})
	v.SetDefault("kms.uri", DefaultKMSURI)
	v.SetDefault("kms.timeout", DefaultKMSTimeout)
	v.SetDefault("vault.path", DefaultVaultPath)
	v.SetDefault("vault.cache_ttl", DefaultVaultCacheTTL)
	v.SetDefault("vault.cache_size", DefaultVaultCacheSize)
	v.SetDefault("vault.mint_ca", "")
	v.SetDefault("audit.path", DefaultAuditPath)
	v.SetDefault("audit.checkpoint_every", DefaultCheckpointEvery)
	v.SetDefault("audit.checkpoint_interval", DefaultCheckpointInterval)
	v.SetDefault("audit.sync", DefaultAuditSync)
	v.SetDefault("audit.sync_interval", DefaultAuditSyncInterval)
	v.SetDefault("audit.ship_batch", DefaultAuditShipBatch)
	v.SetDefault("audit.ship_interval", DefaultAuditShipInterval)
	v.SetDefault("passport.issuer", DefaultIssuer)
	v.SetDefault("passport.audience", DefaultAudience)
	v.SetDefault("passport.keys_path", DefaultKeysPath)
	v.SetDefault("passport.revocations_path", DefaultRevocationsPath)
	v.SetDefault("passport.default_ttl", DefaultPassportTTL)
	v.SetDefault("passport.max_ttl", DefaultPassportMaxTTL)
	v.SetDefault("passport.leeway", DefaultLeeway)
	v.SetDefault("passport.cache_size", DefaultPassportCacheSize)
	v.SetDefault("passport.roles", rolesAsMap(passport.ReferenceRoles()))
	v.SetDefault("control.url", []string{})
	v.SetDefault("control.ca", "")
	v.SetDefault("control.token_file", DefaultControlTokenFile)
	v.SetDefault("control.join_token", "")
	v.SetDefault("control.join_token_file", "")
	v.SetDefault("control.oidc_token_file", "")
	v.SetDefault("control.agent", "")
	v.SetDefault("control.max_staleness", "0s")
	v.SetDefault("control.listen", DefaultControlListen)
	v.SetDefault("control.hosts", []string{})
	v.SetDefault("control.tls_cert", "")
	v.SetDefault("control.tls_key", "")
	v.SetDefault("control.store", DefaultControlStore)
	v.SetDefault("control.store_path", DefaultControlStorePath)
	v.SetDefault("control.fleet_log", DefaultFleetLog)
	v.SetDefault("control.audit_integrity", DefaultAuditIntegrity)
	v.SetDefault("control.otlp.endpoint", "")
	v.SetDefault("control.webhook.image", "")
	v.SetDefault("control.webhook.pull_policy", "IfNotPresent")
	v.SetDefault("control.webhook.control_url", "")
	v.SetDefault("control.console.enabled", true)
	v.SetDefault("control.console.session_ttl", "8h")
	v.SetDefault("control.console.oidc.issuer", "")
	v.SetDefault("control.console.oidc.client_id", "")
	v.SetDefault("control.console.oidc.client_secret_file", "")
	v.SetDefault("control.console.oidc.redirect_url", "")
	v.SetDefault("control.console.oidc.ca", "")
	v.SetDefault("control.console.oidc.admins", []string{})
	v.SetDefault("control.console.oidc.viewers", []string{})
	v.SetDefault("control.otlp.headers", map[string]string{})
	v.SetDefault("control.otlp.ca", "")
	v.SetDefault("control.otlp.gzip", true)
	v.SetDefault("control.etcd.endpoints", []string{})
	v.SetDefault("control.etcd.prefix", DefaultEtcdPrefix)
	v.SetDefault("control.etcd.dial_timeout", DefaultEtcdDialTimeout)
	v.SetDefault("control.etcd.tls.cert_file", "")
	v.SetDefault("control.etcd.tls.key_file", "")
	v.SetDefault("control.etcd.tls.ca_file", "")
	v.SetDefault("control.sidecar_ttl", DefaultSidecarTTL)
	v.SetDefault("control.lease_ttl", DefaultLeaseTTL)
	v.SetDefault("control.heartbeat", DefaultHeartbeat)
	v.SetDefault("control.key_activation_delay", DefaultKeyActivationDelay)
	v.SetDefault("control.store_timeout", DefaultStoreTimeout)
	v.SetDefault("control.detector_gate", DefaultDetectorGate)
	v.SetDefault("control.oidc_issuers", []any{})
	for _, d := range Detectors {
		v.SetDefault("detect."+d+".mode", DefaultDetectorMode)
	}
	v.SetDefault("detect.alert_only", false)
	v.SetDefault("detect.scan_window", DefaultScanWindow)
	v.SetDefault("detect.state_path", DefaultDetectStatePath)
	v.SetDefault("detect.webhook_url_env", "")
	v.SetDefault("detect.alert_summary_window", DefaultAlertSummaryWindow)
	v.SetDefault("detect.rules", []any{})
	v.SetDefault("detect.suppress", []any{})
	v.SetDefault("detect.credential_burst.factor", DefaultBurstFactor)
	v.SetDefault("detect.credential_burst.window", DefaultBurstWindow)
	v.SetDefault("detect.credential_burst.learning_window", DefaultBurstLearning)
	v.SetDefault("detect.credential_burst.min_samples", DefaultBurstMinSamples)
	v.SetDefault("detect.credential_burst.min_baseline_age", DefaultBurstMinAge)
	v.SetDefault("detect.credential_burst.min_count", DefaultBurstMinCount)
	v.SetDefault("detect.credential_burst.absolute_cap", DefaultBurstAbsoluteCap)
	v.SetDefault("detect.scope_drift.min_events", DefaultDriftMinEvents)
	v.SetDefault("detect.scope_drift.min_age", DefaultDriftMinAge)
	v.SetDefault("detect.prompt_injection.threshold", DefaultInjectionThreshold)
	v.SetDefault("detect.prompt_injection.learned_threshold", DefaultInjectionLearnedThreshold)
	v.SetDefault("detect.prompt_injection.model.kind", DefaultJudgeKind)
	v.SetDefault("detect.prompt_injection.model.url", "")
	v.SetDefault("detect.prompt_injection.model.model", "")
	v.SetDefault("detect.prompt_injection.model.api_key_env", "")
	v.SetDefault("detect.prompt_injection.model.timeout", DefaultJudgeTimeout)
	v.SetDefault("detect.prompt_injection.model.on_error", DefaultJudgeOnError)
	v.SetDefault("detect.prompt_injection.model.cache_size", DefaultJudgeCacheSize)
	v.SetDefault("detect.prompt_injection.model.when", DefaultJudgeWhen)
	v.SetDefault("detect.prompt_injection.model.ca_file", "")
	v.SetDefault("detect.prompt_injection.model.break_after", DefaultJudgeBreakAfter)
	v.SetDefault("detect.prompt_injection.model.break_for", DefaultJudgeBreakFor)
}

// rolesAsMap turns roles into the generic shape viper merges with a file,
// so a file that defines one role keeps the reference ones.
func rolesAsMap(roles map[string]passport.Role) map[string]any {
	out := make(map[string]any, len(roles))
	for name, r := range roles {
		out[name] = roleMap(r)
	}
	return out
}

func roleMap(r passport.Role) map[string]any {
	grants := make([]any, 0, len(r.Scope))
	for _, g := range r.Scope {
		if g.Handoff != nil {
			grants = append(grants, map[string]any{"handoff": map[string]any{"to": g.Handoff.To, "schemas": g.Handoff.Schemas}})
			continue
		}
		m := map[string]any{"hosts": g.Hosts}
		if len(g.Methods) > 0 {
			m["methods"] = g.Methods
		}
		if len(g.Paths) > 0 {
			m["paths"] = g.Paths
		}
		if len(g.Credentials) > 0 {
			m["credentials"] = g.Credentials
		}
		if len(g.Params) > 0 {
			ps := make([]any, 0, len(g.Params))
			for _, p := range g.Params {
				pm := map[string]any{"name": p.Name, "from": p.From, "op": p.Op}
				if p.Value != "" {
					pm["value"] = p.Value
				}
				if len(p.Values) > 0 {
					pm["values"] = p.Values
				}
				ps = append(ps, pm)
			}
			m["params"] = ps
		}
		grants = append(grants, m)
	}
	m := map[string]any{"scope": grants}
	if r.Description != "" {
		m["description"] = r.Description
	}
	if r.TTL != 0 {
		m["ttl"] = r.TTL.String()
	}
	if r.Mode != "" {
		m["mode"] = r.Mode
	}
	return m
}

// resolvePaths makes file paths absolute against Home.
func (c *Config) resolvePaths() {
	abs := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(c.Home, p)
	}
	c.Proxy.UpstreamCA = abs(c.Proxy.UpstreamCA)
	c.Proxy.PassportFile = abs(c.Proxy.PassportFile)
	c.Vault.Path = abs(c.Vault.Path)
	c.Vault.MintCA = abs(c.Vault.MintCA)
	c.Control.OTLP.CA = abs(c.Control.OTLP.CA)
	c.Audit.Path = abs(c.Audit.Path)
	c.Passport.KeysPath = abs(c.Passport.KeysPath)
	c.Passport.RevocationsPath = abs(c.Passport.RevocationsPath)
	c.Detect.StatePath = abs(c.Detect.StatePath)
	c.Detect.PromptInjection.Model.CAFile = abs(c.Detect.PromptInjection.Model.CAFile)
	c.Control.URLs = trimList(c.Control.URLs)
	c.Control.CA = abs(c.Control.CA)
	c.Control.TokenFile = abs(c.Control.TokenFile)
	c.Control.OIDCTokenFile = abs(c.Control.OIDCTokenFile)
	c.Control.JoinTokenFile = abs(c.Control.JoinTokenFile)
	c.Control.TLSCert = abs(c.Control.TLSCert)
	c.Control.TLSKey = abs(c.Control.TLSKey)
	c.Control.StorePath = abs(c.Control.StorePath)
	c.Control.FleetLog = abs(c.Control.FleetLog)
	c.Control.Etcd.TLS.CertFile = abs(c.Control.Etcd.TLS.CertFile)
	c.Control.Etcd.TLS.KeyFile = abs(c.Control.Etcd.TLS.KeyFile)
	c.Control.Etcd.TLS.CAFile = abs(c.Control.Etcd.TLS.CAFile)
	for i := range c.Control.OIDCIssuers {
		c.Control.OIDCIssuers[i].CAFile = abs(c.Control.OIDCIssuers[i].CAFile)
	}
	if rest, ok := strings.CutPrefix(c.KMS.URI, "local://"); ok && rest != "" && !filepath.IsAbs(rest) {
		c.KMS.URI = "local://" + abs(rest)
	}
}

// knownKeys lists every leaf key a file may set, besides the open-ended
// maps under passport.roles and detect.
func knownKeys() map[string]bool {
	v := viper.New()
	setDefaults(v)
	keys := map[string]bool{}
	for _, k := range v.AllKeys() {
		if strings.HasPrefix(k, "passport.roles.") {
			continue
		}
		keys[k] = true
	}
	return keys
}

// fileKeys returns the leaf keys file sets.
func fileKeys(file string) ([]string, error) {
	fv := viper.New()
	fv.SetConfigFile(file)
	fv.SetConfigType("yaml")
	if err := fv.ReadInConfig(); err != nil {
		return nil, fmt.Errorf("config: read %s: %w", file, err)
	}
	return fv.AllKeys(), nil
}

// unknownKeys reports keys in the file that no setting reads, so a typo is
// an error rather than a silently ignored line.
func unknownKeys(keys []string) []Problem {
	known := knownKeys()
	var problems []Problem
	for _, k := range keys {
		switch {
		case known[k]:
		case strings.HasPrefix(k, "passport.roles."):
			// Decoded exactly into passport.Role: decodeProblems reports them.
		case strings.HasPrefix(k, "detect.rules.") || strings.HasPrefix(k, "detect.suppress."):
			// List items, decoded exactly too.
		default:
			problems = append(problems, Problem{Key: k, Message: "unknown key" + suggest(k, known)})
		}
	}
	sort.Slice(problems, func(i, j int) bool { return problems[i].Key < problems[j].Key })
	return problems
}

// suggest names the known keys of the same section.
func suggest(key string, known map[string]bool) string {
	section, _, _ := strings.Cut(key, ".")
	var same []string
	for k := range known {
		if strings.HasPrefix(k, section+".") {
			same = append(same, k)
		}
	}
	if len(same) == 0 {
		sections := map[string]bool{}
		for k := range known {
			s, _, _ := strings.Cut(k, ".")
			sections[s] = true
		}
		for s := range sections {
			same = append(same, s)
		}
		same = append(same, "detect")
		sort.Strings(same)
		return "; sections are: " + strings.Join(same, ", ")
	}
	sort.Strings(same)
	return "; known keys in " + section + ": " + strings.Join(same, ", ")
}

// trimList drops the blanks around each entry of a list given as
// "a, b", and the empty entries a trailing comma leaves.
func trimList(list []string) []string {
	var out []string
	for _, s := range list {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
