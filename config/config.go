package config

import (
	"time"

	"github.com/stackctl/stack/passport"
)

// Config is the whole configuration of a STACK sidecar and its CLI. Load
// fills it from defaults, stack.yaml, STACK_* environment variables and
// flags, in rising order of precedence. Relative paths are resolved
// against Home.
type Config struct {
	// Home is the data directory (STACK_HOME, --home; default ~/.stack).
	// It is not read from the file.
	Home string `mapstructure:"-" yaml:"-"`
	// File is the config file that was read, empty when none was.
	File string `mapstructure:"-" yaml:"-"`

	Log      LogConfig      `mapstructure:"log" yaml:"log"`
	Proxy    ProxyConfig    `mapstructure:"proxy" yaml:"proxy"`
	Egress   EgressConfig   `mapstructure:"egress" yaml:"egress"`
	KMS      KMSConfig      `mapstructure:"kms" yaml:"kms"`
	Vault    VaultConfig    `mapstructure:"vault" yaml:"vault"`
	Audit    AuditConfig    `mapstructure:"audit" yaml:"audit"`
	Passport PassportConfig `mapstructure:"passport" yaml:"passport"`
	Detect   DetectConfig   `mapstructure:"detect" yaml:"detect"`
	Control  ControlConfig  `mapstructure:"control" yaml:"control"`
}

// ControlConfig is the control plane: how `stack control` serves, and
// how sidecars and the CLI reach one.
type ControlConfig struct {
	// URLs are the control plane (https://HOST:PORT): its replicas, or
	// one URL naming a load balancer in front of them. A YAML list, or
	// one string with the URLs separated by commas (how the flag and
	// STACK_CONTROL_URL give them). When set, `stack proxy` joins it,
	// using one replica at a time and moving to the next when it fails,
	// and commands that change fleet state (agent, passport revoke,
	// vault) go to the first that is ready.
	URLs []string `mapstructure:"url" yaml:"url"`
	// CA is the PEM file of the CA the control plane's certificate chains
	// to (`stack control ca export`). Empty: the control CA in this data
	// directory if there is one, else the system roots.
	CA string `mapstructure:"ca" yaml:"ca"`
	// TokenFile holds the operator token the CLI sends to the control
	// plane (made by `stack init --control`).
	TokenFile string `mapstructure:"token_file" yaml:"token_file"`
	// JoinToken is a one-time join token for `stack proxy` (better given
	// as --join-token or STACK_CONTROL_JOIN_TOKEN than written here).
	JoinToken string `mapstructure:"join_token" yaml:"join_token"`
	// JoinTokenFile holds the join token instead (a file a setup step
	// wrote, a mounted secret).
	JoinTokenFile string `mapstructure:"join_token_file" yaml:"join_token_file"`
	// OIDCTokenFile is the workload's OIDC token a sidecar joins with (a
	// Kubernetes projected service-account token with audience stack).
	OIDCTokenFile string `mapstructure:"oidc_token_file" yaml:"oidc_token_file"`
	// Agent, when set, is the agent this sidecar must join as: a join the
	// control plane maps to another agent is an error (the admission
	// webhook sets it from the pod's stack.run/agent label).
	Agent string `mapstructure:"agent" yaml:"agent"`
	// MaxStaleness: a joined sidecar that has heard nothing from the
	// control plane for this long refuses every request
	// (control_unreachable). 0 keeps serving until the passport expires.
	MaxStaleness time.Duration `mapstructure:"max_staleness" yaml:"max_staleness"`

	// Listen is where `stack control` serves its HTTPS API.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// Hosts are the names and addresses its certificate is valid for,
	// besides localhost, 127.0.0.1 and ::1.
	Hosts []string `mapstructure:"hosts" yaml:"hosts"`
	// TLSCert and TLSKey replace the certificate made from the control CA.
	TLSCert string `mapstructure:"tls_cert" yaml:"tls_cert"`
	TLSKey  string `mapstructure:"tls_key" yaml:"tls_key"`
	// Store is where the control plane keeps its state: bbolt (one file,
	// StorePath) or etcd (a cluster, Etcd).
	Store string `mapstructure:"store" yaml:"store"`
	// StorePath is the bbolt file of the control plane's state.
	StorePath string `mapstructure:"store_path" yaml:"store_path"`
	// Etcd is the cluster the etcd store keeps the state in.
	Etcd EtcdConfig `mapstructure:"etcd" yaml:"etcd"`
	// FleetLog is the directory of the fleet audit log (tiles and
	// checkpoints in the C2SP formats, its index, the evidence of refused
	// batches). Empty: this control plane does not take sidecars' audit
	// records (with replicas, exactly one serves it).
	FleetLog string `mapstructure:"fleet_log" yaml:"fleet_log"`
	// AuditIntegrity is what a shipped batch that contradicts the chain
	// the control plane holds does besides the alert: alert, or revoke
	// (disable the sidecar's agent and revoke its passports).
	AuditIntegrity string `mapstructure:"audit_integrity" yaml:"audit_integrity"`
	// OTLP sends the fleet audit log's records to an OpenTelemetry logs
	// receiver (a SIEM's collector).
	OTLP OTLPConfig `mapstructure:"otlp" yaml:"otlp"`
	// Webhook is the Kubernetes admission webhook stack control serves at
	// /k8s/mutate when Image is set: pods labelled stack.run/agent get the
	// sidecar.
	Webhook WebhookConfig `mapstructure:"webhook" yaml:"webhook"`
	// Console is the web console stack control serves at /ui.
	Console ConsoleConfig `mapstructure:"console" yaml:"console"`
	// SidecarTTL is the life of a joined sidecar's credential (renewed at
	// 2/3); LeaseTTL of a credential lease; Heartbeat the interval of the
	// revocation feed's keep-alives.
	SidecarTTL time.Duration `mapstructure:"sidecar_ttl" yaml:"sidecar_ttl"`
	LeaseTTL   time.Duration `mapstructure:"lease_ttl" yaml:"lease_ttl"`
	Heartbeat  time.Duration `mapstructure:"heartbeat" yaml:"heartbeat"`
	// KeyActivationDelay is how long an issuer key rotated on etcd is
	// published by every replica before it signs: longer than a replica
	// takes to see the rotation or to stop serving, plus clock skew.
	KeyActivationDelay time.Duration `mapstructure:"key_activation_delay" yaml:"key_activation_delay"`
	// StoreTimeout: a control plane whose store has not answered for
	// this long stops serving (503 unavailable, /readyz 503, feeds
	// ended) until it answers, rather than serve state that may be old.
	StoreTimeout time.Duration `mapstructure:"store_timeout" yaml:"store_timeout"`
	// DetectorGate is the rollout gate of the detector modes the control
	// plane sets per agent (`stack agent detectors`): how long a detector
	// in alert must have been clean, no signal shipped, before it is
	// reported ready for block.
	DetectorGate time.Duration `mapstructure:"detector_gate" yaml:"detector_gate"`
	// OIDCIssuers are the workload identity issuers sidecars may join
	// with, each with rules mapping token claims to an agent.
	OIDCIssuers []OIDCIssuerConfig `mapstructure:"oidc_issuers" yaml:"oidc_issuers"`
}

// EtcdConfig is the etcd cluster of control.store etcd.
type EtcdConfig struct {
	// Endpoints are the members' client URLs (https://HOST:PORT) or
	// HOST:PORT pairs.
	Endpoints []string `mapstructure:"endpoints" yaml:"endpoints"`
	// Prefix is put before every key the control plane writes; it ends
	// in "/" so that no other prefix can extend it.
	Prefix string `mapstructure:"prefix" yaml:"prefix"`
	// DialTimeout bounds the wait for a member to answer at start.
	DialTimeout time.Duration `mapstructure:"dial_timeout" yaml:"dial_timeout"`
	// TLS is the client side of the members' TLS.
	TLS EtcdTLSConfig `mapstructure:"tls" yaml:"tls"`
}

// OnEtcd reports whether the control plane keeps its state (and then its
// issuer keys and vault) in etcd rather than its bbolt file.
func (c ControlConfig) OnEtcd() bool { return c.Store == "etcd" }

// EtcdTLSConfig is the client certificate and trusted CAs for etcd.
type EtcdTLSConfig struct {
	// CertFile and KeyFile are the client certificate and its key, for
	// members that require one; both or neither.
	CertFile string `mapstructure:"cert_file" yaml:"cert_file"`
	KeyFile  string `mapstructure:"key_file" yaml:"key_file"`
	// CAFile holds the CAs of the members' certificates; empty: the
	// system's.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
}

// OIDCIssuerConfig is one workload identity issuer.
type OIDCIssuerConfig struct {
	// Issuer is the iss of its tokens and the base of its discovery
	// document (https://ISSUER/.well-known/openid-configuration).
	Issuer string `mapstructure:"issuer" yaml:"issuer"`
	// Audience is the aud its tokens must carry (default stack).
	Audience string `mapstructure:"audience" yaml:"audience"`
	// CAFile is a PEM file of roots for its HTTPS; empty: system roots.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
	// Rules map a token to an agent: the first whose claims all match.
	Rules []OIDCRuleConfig `mapstructure:"rules" yaml:"rules"`
}

// OIDCRuleConfig maps tokens whose claims match to an agent. Claim paths
// use / between levels (kubernetes.io/namespace,
// kubernetes.io/serviceaccount/name); values may use * globs.
type OIDCRuleConfig struct {
	Agent  string            `mapstructure:"agent" yaml:"agent"`
	Claims map[string]string `mapstructure:"claims" yaml:"claims"`
}

// LogConfig controls the process log.
type LogConfig struct {
	// Level is debug, info, warn or error: the level of the sidecar
	// (stack proxy). One-shot commands log at warn unless their
	// --log-level flag says otherwise.
	Level string `mapstructure:"level" yaml:"level"`
	// Format is auto (console on a terminal, JSON otherwise), json or console.
	Format string `mapstructure:"format" yaml:"format"`
}

// ProxyConfig controls the sidecar's listeners.
type ProxyConfig struct {
	// Listen is the proxy's host:port.
	Listen string `mapstructure:"listen" yaml:"listen"`
	// AdminListen is the host:port of /metrics, /healthz, /readyz and the
	// token-protected admin API.
	AdminListen string `mapstructure:"admin_listen" yaml:"admin_listen"`
	// UpstreamCA is a PEM file of extra roots trusted for upstream TLS, in
	// addition to the system roots. Empty means system roots only.
	UpstreamCA string `mapstructure:"upstream_ca" yaml:"upstream_ca"`
	// PassportFile, when set, is the passport of the single agent this
	// sidecar serves (re-read when it changes).
	PassportFile string `mapstructure:"passport_file" yaml:"passport_file"`
	// TunnelHosts are hosts (exact or *.example.com) whose HTTPS passes
	// through a plain tunnel, without interception: no injection and no
	// inspection inside. The passport must still grant the host.
	TunnelHosts []string `mapstructure:"tunnel_hosts" yaml:"tunnel_hosts"`
	// MaxConnections caps concurrent agent connections; more are answered
	// 503 overloaded.
	MaxConnections int `mapstructure:"max_connections" yaml:"max_connections"`
	// MaxRequests caps requests in flight; more are answered 503
	// overloaded.
	MaxRequests int `mapstructure:"max_requests" yaml:"max_requests"`
	// MaxUpstreamConnsPerHost caps connections to one upstream host; more
	// requests wait for one to be free.
	MaxUpstreamConnsPerHost int `mapstructure:"max_upstream_conns_per_host" yaml:"max_upstream_conns_per_host"`
	// UpstreamResponseTimeout bounds the wait for an upstream's response
	// headers (a non-streaming LLM call can take minutes); a tunnel without
	// interception closes after this long with no byte either way.
	UpstreamResponseTimeout time.Duration `mapstructure:"upstream_response_timeout" yaml:"upstream_response_timeout"`
	// HandshakeTimeout bounds an agent's TLS handshake inside a tunnel and
	// the head of its first request.
	HandshakeTimeout time.Duration `mapstructure:"handshake_timeout" yaml:"handshake_timeout"`
	// IdleTimeout closes an agent connection with no request in flight, or
	// whose request body or response stalls, for this long.
	IdleTimeout time.Duration `mapstructure:"idle_timeout" yaml:"idle_timeout"`
	// HTTP2 offers HTTP/2 to agents inside intercepted tunnels besides
	// HTTP/1.1 (chosen by agents that speak only HTTP/2, such as gRPC).
	HTTP2 bool `mapstructure:"http2" yaml:"http2"`
	// ShutdownTimeout bounds the drain of open requests on shutdown.
	ShutdownTimeout time.Duration `mapstructure:"shutdown_timeout" yaml:"shutdown_timeout"`
}

// EgressConfig controls which destination addresses the proxy may dial.
type EgressConfig struct {
	// AllowCIDRs are ranges that are otherwise refused (loopback, private,
	// link-local...) which the proxy may nonetheless dial.
	AllowCIDRs []string `mapstructure:"allow_cidrs" yaml:"allow_cidrs"`
	// Resolve pins host names to addresses, as HOST=IP entries, before DNS
	// (like curl --resolve): for local upstreams and tests. A pinned address
	// still passes the egress checks.
	Resolve []string `mapstructure:"resolve" yaml:"resolve"`
}

// KMSConfig names the key that wraps every data and signing key.
type KMSConfig struct {
	// URI is local://PATH, gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K
	// or awskms://KEY-ID-OR-ALIAS.
	URI string `mapstructure:"uri" yaml:"uri"`
	// Timeout bounds each KMS call.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
}

// VaultConfig controls the credential store.
type VaultConfig struct {
	// Path is the vault's bbolt file.
	Path string `mapstructure:"path" yaml:"path"`
	// CacheTTL is how long a decrypted secret stays in memory.
	CacheTTL time.Duration `mapstructure:"cache_ttl" yaml:"cache_ttl"`
	// CacheSize bounds the number of decrypted secrets kept in memory.
	CacheSize int `mapstructure:"cache_size" yaml:"cache_size"`
	// MintCA is a PEM file of extra roots trusted for the issuers that
	// minting kinds call (OAuth2 token endpoints, GitHub, AWS STS): on a
	// sidecar besides the system roots and proxy.upstream_ca, on the
	// control plane besides the system roots alone.
	MintCA string `mapstructure:"mint_ca" yaml:"mint_ca"`
}

// AuditConfig controls the hash-chained audit log.
type AuditConfig struct {
	// Path is the audit log's bbolt file.
	Path string `mapstructure:"path" yaml:"path"`
	// CheckpointEvery writes a signed checkpoint after this many records.
	CheckpointEvery int `mapstructure:"checkpoint_every" yaml:"checkpoint_every"`
	// CheckpointInterval writes a signed checkpoint at least this often
	// while records arrive; 0 turns the timer off.
	CheckpointInterval time.Duration `mapstructure:"checkpoint_interval" yaml:"checkpoint_interval"`
	// Sync is when a record counts as stored: "interval" (written before
	// the request it describes proceeds, synced to disk at most
	// SyncInterval later) or "always" (synced before the request proceeds).
	Sync string `mapstructure:"sync" yaml:"sync"`
	// SyncInterval bounds the time from a record's write to its sync under
	// Sync "interval".
	SyncInterval time.Duration `mapstructure:"sync_interval" yaml:"sync_interval"`
	// ShipBatch is how many records a joined sidecar ships to the control
	// plane in one batch.
	ShipBatch int `mapstructure:"ship_batch" yaml:"ship_batch"`
	// ShipInterval is how often a joined sidecar looks for records to
	// ship while it is caught up.
	ShipInterval time.Duration `mapstructure:"ship_interval" yaml:"ship_interval"`
}

// WebhookConfig is what the Kubernetes admission webhook injects.
type WebhookConfig struct {
	// Image is the STACK image the injected sidecar runs; empty: no
	// webhook.
	Image string `mapstructure:"image" yaml:"image"`
	// PullPolicy is its imagePullPolicy (IfNotPresent, Always, Never).
	PullPolicy string `mapstructure:"pull_policy" yaml:"pull_policy"`
	// ControlURL is where the injected sidecars join this control plane:
	// its Service inside the cluster, e.g.
	// https://stack-control.stack-system.svc:9443. Required with Image.
	ControlURL string `mapstructure:"control_url" yaml:"control_url"`
}

// ConsoleConfig is the web console at /ui (docs/console.md).
type ConsoleConfig struct {
	// Enabled serves the console. Signing in takes the operator token or
	// an OIDC provider's sign-in.
	Enabled bool `mapstructure:"enabled" yaml:"enabled"`
	// SessionTTL is how long a sign-in lasts.
	SessionTTL time.Duration `mapstructure:"session_ttl" yaml:"session_ttl"`
	// OIDC lets people sign in with an OpenID Connect provider.
	OIDC ConsoleOIDCConfig `mapstructure:"oidc" yaml:"oidc"`
}

// ConsoleOIDCConfig is the console's OpenID Connect client; an empty
// Issuer turns OIDC sign-in off.
type ConsoleOIDCConfig struct {
	Issuer   string `mapstructure:"issuer" yaml:"issuer"`
	ClientID string `mapstructure:"client_id" yaml:"client_id"`
	// ClientSecretFile holds the client secret (a mounted secret).
	ClientSecretFile string `mapstructure:"client_secret_file" yaml:"client_secret_file"`
	// RedirectURL is the callback registered at the provider:
	// https://HOST:PORT/ui/oidc/callback.
	RedirectURL string `mapstructure:"redirect_url" yaml:"redirect_url"`
	// CA is a PEM file of roots for the provider, besides the system's.
	CA string `mapstructure:"ca" yaml:"ca"`
	// Admins and Viewers are verified emails or subjects; "*" is anyone
	// the provider signs in.
	Admins  []string `mapstructure:"admins" yaml:"admins"`
	Viewers []string `mapstructure:"viewers" yaml:"viewers"`
}

// OTLPConfig is where the control plane exports the fleet audit log's
// records as OpenTelemetry logs (OTLP/HTTP).
type OTLPConfig struct {
	// Endpoint is the receiver's base URL (http://collector:4318, or
	// https://...); "" exports nothing.
	Endpoint string `mapstructure:"endpoint" yaml:"endpoint"`
	// Headers are added to every export (an API key, say), besides those
	// in OTEL_EXPORTER_OTLP_HEADERS.
	Headers map[string]string `mapstructure:"headers" yaml:"headers"`
	// CA is a PEM file of roots for an https endpoint, besides the
	// system's.
	CA string `mapstructure:"ca" yaml:"ca"`
	// Gzip compresses the requests.
	Gzip bool `mapstructure:"gzip" yaml:"gzip"`
}

// PassportConfig controls issuing and verifying passports.
type PassportConfig struct {
	// Issuer is the iss claim of issued passports.
	Issuer string `mapstructure:"issuer" yaml:"issuer"`
	// Audience is the aud claim issued and required on verification.
	Audience string `mapstructure:"audience" yaml:"audience"`
	// KeysPath is the issuer key set (private keys wrapped by the KMS).
	KeysPath string `mapstructure:"keys_path" yaml:"keys_path"`
	// RevocationsPath is the bbolt file of revoked passports and agents.
	RevocationsPath string `mapstructure:"revocations_path" yaml:"revocations_path"`
	// DefaultTTL is the lifetime of a passport issued without --ttl.
	DefaultTTL time.Duration `mapstructure:"default_ttl" yaml:"default_ttl"`
	// MaxTTL is the longest lifetime a passport may be issued with.
	MaxTTL time.Duration `mapstructure:"max_ttl" yaml:"max_ttl"`
	// Leeway is the clock skew tolerated on exp and nbf.
	Leeway time.Duration `mapstructure:"leeway" yaml:"leeway"`
	// CacheSize bounds the cache of verified passports.
	CacheSize int `mapstructure:"cache_size" yaml:"cache_size"`
	// Roles are named scope templates for `passport issue --role`.
	Roles map[string]passport.Role `mapstructure:"roles" yaml:"roles"`
}

// DetectConfig controls the detector grid.
type DetectConfig struct {
	// AlertOnly is the rollout gate: every detector and rule acts at most
	// as alert, whatever its mode says.
	AlertOnly bool `mapstructure:"alert_only" yaml:"alert_only"`
	// ScanWindow is how many body bytes of each request and response the
	// detectors see.
	ScanWindow int `mapstructure:"scan_window" yaml:"scan_window"`
	// StatePath is the bbolt file where learned baselines persist.
	StatePath string `mapstructure:"state_path" yaml:"state_path"`
	// WebhookURLEnv names the environment variable holding the alert
	// webhook URL (Slack-compatible JSON POST); empty or unset sends none.
	// The URL is a secret (it carries a token), so config names it only.
	WebhookURLEnv string `mapstructure:"webhook_url_env" yaml:"webhook_url_env"`
	// AlertSummaryWindow folds alert storms: the first signal of a
	// detector for an agent and credential is recorded, logged and
	// alerted at once, the ones that follow once per window in a
	// summary. 0 reports every signal on its own.
	AlertSummaryWindow time.Duration `mapstructure:"alert_summary_window" yaml:"alert_summary_window"`
	// Rules are composite rules: act when all the detectors fire within a
	// window for one agent.
	Rules []RuleConfig `mapstructure:"rules" yaml:"rules"`
	// Suppress silences known false positives.
	Suppress []SuppressConfig `mapstructure:"suppress" yaml:"suppress"`

	CredentialBurst        BurstConfig     `mapstructure:"credential_burst" yaml:"credential_burst"`
	ScopeDrift             DriftConfig     `mapstructure:"scope_drift" yaml:"scope_drift"`
	PromptInjection        InjectionConfig `mapstructure:"prompt_injection" yaml:"prompt_injection"`
	CredentialExfiltration ExfilConfig     `mapstructure:"credential_exfiltration" yaml:"credential_exfiltration"`
}

// RuleConfig is one composite rule.
type RuleConfig struct {
	Name      string        `mapstructure:"name" yaml:"name"`
	Detectors []string      `mapstructure:"detectors" yaml:"detectors"`
	Within    time.Duration `mapstructure:"within" yaml:"within"`
	// Action is alert, block or revoke.
	Action string `mapstructure:"action" yaml:"action"`
}

// SuppressConfig silences signals matching every field given.
type SuppressConfig struct {
	Agent    string `mapstructure:"agent" yaml:"agent,omitempty"`
	Host     string `mapstructure:"host" yaml:"host,omitempty"`
	Detector string `mapstructure:"detector" yaml:"detector,omitempty"`
	Rule     string `mapstructure:"rule" yaml:"rule,omitempty"`
}

// BurstConfig tunes credential_burst.
type BurstConfig struct {
	Mode string `mapstructure:"mode" yaml:"mode"`
	// Factor is how many times the baseline rate the short window must
	// reach to fire.
	Factor float64 `mapstructure:"factor" yaml:"factor"`
	// Window is the short window counted against the baseline.
	Window time.Duration `mapstructure:"window" yaml:"window"`
	// LearningWindow is how far back the baseline rate is learned.
	LearningWindow time.Duration `mapstructure:"learning_window" yaml:"learning_window"`
	// MinSamples is how many pulls a baseline needs before it is used.
	MinSamples int `mapstructure:"min_samples" yaml:"min_samples"`
	// MinBaselineAge is how long a baseline must have been learned before
	// it is used.
	MinBaselineAge time.Duration `mapstructure:"min_baseline_age" yaml:"min_baseline_age"`
	// MinCount is the fewest pulls in the window that can fire.
	MinCount int `mapstructure:"min_count" yaml:"min_count"`
	// AbsoluteCap fires, before a baseline exists, at this many pulls in
	// the window.
	AbsoluteCap int `mapstructure:"absolute_cap" yaml:"absolute_cap"`
}

// DriftConfig tunes scope_drift.
type DriftConfig struct {
	Mode string `mapstructure:"mode" yaml:"mode"`
	// MinEvents and MinAge are how much an agent's profile must learn
	// before departures from it are scored.
	MinEvents int           `mapstructure:"min_events" yaml:"min_events"`
	MinAge    time.Duration `mapstructure:"min_age" yaml:"min_age"`
}

// prompt_injection's learned layer: off by default, because on writing
// about prompt injection and on defence prompts it raises far more false
// alarms than the patterns (docs/detectors.md has the numbers).
const (
	DefaultInjectionLearnedThreshold     = 0.0
	RecommendedInjectionLearnedThreshold = 0.98
)

// InjectionConfig tunes prompt_injection.
type InjectionConfig struct {
	Mode string `mapstructure:"mode" yaml:"mode"`
	// Threshold is the score (0..1) at which content is flagged.
	Threshold float64 `mapstructure:"threshold" yaml:"threshold"`
	// LearnedThreshold turns on the learned layer (a classifier built
	// into the binary, see detect/injection) at this score, 0..1: 0
	// leaves it off, the default; RecommendedInjectionLearnedThreshold is
	// the value to turn it on with.
	LearnedThreshold float64 `mapstructure:"learned_threshold" yaml:"learned_threshold"`
	// Model is an optional model endpoint that judges the content the
	// other layers leave uncertain; off while its url is empty.
	Model InjectionModelConfig `mapstructure:"model" yaml:"model"`
}

// InjectionModelConfig is prompt_injection's model judge: an
// OpenAI-compatible chat completions endpoint prompted as a judge, or a
// classifier endpoint answering label scores (Prompt Guard style).
type InjectionModelConfig struct {
	// Kind is chat or classifier.
	Kind string `mapstructure:"kind" yaml:"kind"`
	// URL is the endpoint itself, e.g.
	// https://llm.internal/v1/chat/completions (https, or http to a
	// loopback address); empty turns the judge off.
	URL string `mapstructure:"url" yaml:"url"`
	// Model is the model the request names; a chat judge needs one.
	Model string `mapstructure:"model" yaml:"model"`
	// APIKeyEnv names the environment variable holding the endpoint's API
	// key, sent as a bearer token; empty sends none. The key is a secret,
	// so config names it only.
	APIKeyEnv string `mapstructure:"api_key_env" yaml:"api_key_env"`
	// Timeout is the time budget of one call.
	Timeout time.Duration `mapstructure:"timeout" yaml:"timeout"`
	// OnError is what a timeout, a transport error or a malformed answer
	// means: open (nothing; the other layers' verdict stands) or closed
	// (a critical signal, as if the judge had found an injection).
	OnError string `mapstructure:"on_error" yaml:"on_error"`
	// CacheSize is how many verdicts are kept by the SHA-256 of the
	// content judged; 0 keeps none.
	CacheSize int `mapstructure:"cache_size" yaml:"cache_size"`
	// When selects the content judged: uncertain (what the other layers
	// scored above 0 but below critical), untrusted (that, and every
	// response from an upstream) or always.
	When string `mapstructure:"when" yaml:"when"`
	// CAFile is a PEM file of the roots of the endpoint's certificate;
	// empty: the system's roots.
	CAFile string `mapstructure:"ca_file" yaml:"ca_file"`
	// BreakAfter failed calls in a row suspend the judge for BreakFor:
	// no call is made and each judgement fails at once (as on_error
	// says), so requests do not all wait out a hanging endpoint; then one
	// call is tried. -1 never suspends.
	BreakAfter int           `mapstructure:"break_after" yaml:"break_after"`
	BreakFor   time.Duration `mapstructure:"break_for" yaml:"break_for"`
}

// ExfilConfig tunes credential_exfiltration.
type ExfilConfig struct {
	Mode string `mapstructure:"mode" yaml:"mode"`
}

// Defaults of every key, written out by `stack init` and documented in
// stack.yaml.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultAdminListen        = "127.0.0.1:9090"
	DefaultMaxConnections     = 4096
	DefaultMaxRequests        = 1024
	DefaultMaxUpstreamConns   = 256
	DefaultUpstreamResponse   = 10 * time.Minute
	DefaultHandshakeTimeout   = 10 * time.Second
	DefaultIdleTimeout        = 2 * time.Minute
	DefaultShutdownTimeout    = 15 * time.Second
	DefaultKMSURI             = "local://kms.key"
	DefaultKMSTimeout         = 10 * time.Second
	DefaultVaultPath          = "vault.db"
	DefaultVaultCacheTTL      = 60 * time.Second
	DefaultVaultCacheSize     = 1024
	DefaultAuditPath          = "audit.db"
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 60 * time.Second
	DefaultAuditSync          = "interval"
	DefaultAuditSyncInterval  = 10 * time.Millisecond
	DefaultAuditShipBatch     = 500
	DefaultAuditShipInterval  = 250 * time.Millisecond
	// MaxAuditShipBatch bounds audit.ship_batch: a batch of the largest
	// records stays well within the control plane's 16 MiB body limit.
	MaxAuditShipBatch         = 1000
	DefaultIssuer             = "stack"
	DefaultAudience           = "stack-proxy"
	DefaultKeysPath           = "issuer-keys.json"
	DefaultRevocationsPath    = "revocations.db"
	DefaultPassportTTL        = 15 * time.Minute
	DefaultPassportMaxTTL     = time.Hour
	DefaultLeeway             = 30 * time.Second
	DefaultPassportCacheSize  = 10000
	DefaultLogLevel           = "info"
	DefaultLogFormat          = "auto"
	DefaultDetectorMode       = "alert"
	DefaultScanWindow         = 64 << 10
	DefaultDetectStatePath    = "detect.db"
	DefaultAlertSummaryWindow = time.Minute
	DefaultBurstFactor        = 5.0
	DefaultBurstWindow        = 60 * time.Second
	DefaultBurstLearning      = 48 * time.Hour
	DefaultBurstMinSamples    = 50
	DefaultBurstMinAge        = time.Hour
	DefaultBurstMinCount      = 10
	DefaultBurstAbsoluteCap   = 60
	DefaultDriftMinEvents     = 200
	DefaultDriftMinAge        = 24 * time.Hour
	DefaultInjectionThreshold = 0.5
	DefaultJudgeKind          = "chat"
	DefaultJudgeTimeout       = 800 * time.Millisecond
	DefaultJudgeOnError       = "open"
	DefaultJudgeCacheSize     = 4096
	DefaultJudgeWhen          = "uncertain"
	DefaultJudgeBreakAfter    = 5
	DefaultJudgeBreakFor      = 30 * time.Second
	DefaultControlListen      = "127.0.0.1:9443"
	DefaultControlStore       = "bbolt"
	DefaultControlStorePath   = "control.db"
	DefaultFleetLog           = "fleet-log"
	DefaultAuditIntegrity     = "alert"
	DefaultEtcdPrefix         = "/stack/"
	DefaultEtcdDialTimeout    = 5 * time.Second
	DefaultControlTokenFile   = "control.token"
	DefaultSidecarTTL         = time.Hour
	DefaultLeaseTTL           = 10 * time.Minute
	DefaultHeartbeat          = 2 * time.Second
	DefaultKeyActivationDelay = 10 * time.Second
	DefaultStoreTimeout       = 3 * time.Second
	DefaultDetectorGate       = 48 * time.Hour
)

// Detectors are the built-in detector names, each configurable under
// detect.<name>.
var Detectors = []string{"credential_burst", "scope_drift", "prompt_injection", "credential_exfiltration"}

// Allowed values of enumerated keys.
var (
	LogLevels     = []string{"debug", "info", "warn", "error"}
	LogFormats    = []string{"auto", "json", "console"}
	DetectorModes = []string{"off", "shadow", "alert", "block", "revoke"}
	RuleActions   = []string{"alert", "block", "revoke"}
	ControlStores = []string{"bbolt", "etcd"}
	// AuditIntegrityPolicies are the values of control.audit_integrity.
	AuditIntegrityPolicies = []string{"alert", "revoke"}
	// JudgeKinds, JudgeOnErrors and JudgeWhens are the values of
	// detect.prompt_injection.model's kind, on_error and when.
	JudgeKinds    = []string{"chat", "classifier"}
	JudgeOnErrors = []string{"open", "closed"}
	JudgeWhens    = []string{"uncertain", "untrusted", "always"}
)
