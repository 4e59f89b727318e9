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

	Log      LogConfig                 `mapstructure:"log" yaml:"log"`
	Proxy    ProxyConfig               `mapstructure:"proxy" yaml:"proxy"`
	Egress   EgressConfig              `mapstructure:"egress" yaml:"egress"`
	KMS      KMSConfig                 `mapstructure:"kms" yaml:"kms"`
	Vault    VaultConfig               `mapstructure:"vault" yaml:"vault"`
	Audit    AuditConfig               `mapstructure:"audit" yaml:"audit"`
	Passport PassportConfig            `mapstructure:"passport" yaml:"passport"`
	Detect   map[string]DetectorConfig `mapstructure:"detect" yaml:"detect"`
}

// LogConfig controls the process log.
type LogConfig struct {
	// Level is debug, info, warn or error.
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
	// MaxConnections caps concurrent client connections.
	MaxConnections int `mapstructure:"max_connections" yaml:"max_connections"`
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

// DetectorConfig is the per-detector block under detect.<name>.
type DetectorConfig struct {
	// Mode is off, shadow, alert, block or revoke.
	Mode string `mapstructure:"mode" yaml:"mode"`
}

// Defaults of every key, written out by `stack init` and documented in
// stack.yaml.
const (
	DefaultListen             = "127.0.0.1:8080"
	DefaultAdminListen        = "127.0.0.1:9090"
	DefaultMaxConnections     = 4096
	DefaultShutdownTimeout    = 15 * time.Second
	DefaultKMSURI             = "local://kms.key"
	DefaultKMSTimeout         = 10 * time.Second
	DefaultVaultPath          = "vault.db"
	DefaultVaultCacheTTL      = 60 * time.Second
	DefaultVaultCacheSize     = 1024
	DefaultAuditPath          = "audit.db"
	DefaultCheckpointEvery    = 1000
	DefaultCheckpointInterval = 60 * time.Second
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
)

// Detectors are the built-in detector names, each configurable under
// detect.<name>.
var Detectors = []string{"credential_burst", "scope_drift", "prompt_injection", "credential_exfiltration"}

// Allowed values of enumerated keys.
var (
	LogLevels     = []string{"debug", "info", "warn", "error"}
	LogFormats    = []string{"auto", "json", "console"}
	DetectorModes = []string{"off", "shadow", "alert", "block", "revoke"}
)
