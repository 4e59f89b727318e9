package config

import (
	"bytes"
	"fmt"
	"strings"
	"text/template"

	"go.yaml.in/yaml/v3"

	"github.com/stackctl/stack/passport"
)

// DefaultFile returns a stack.yaml that sets every key to its default,
// each with a comment, as `stack init` writes it. Relative paths in it are
// relative to the data directory.
func DefaultFile() []byte {
	roles, err := yaml.Marshal(map[string]any{"roles": rolesAsMap(passport.ReferenceRoles())})
	if err != nil {
		panic("config: reference roles do not marshal: " + err.Error())
	}
	var b bytes.Buffer
	err = fileTemplate.Execute(&b, map[string]any{
		"D":     defaultsForTemplate(),
		"Roles": indent(string(roles), "  "),
		"Mode":  DefaultDetectorMode,
	})
	if err != nil {
		panic("config: template: " + err.Error())
	}
	return b.Bytes()
}

func defaultsForTemplate() map[string]any {
	return map[string]any{
		"LogLevel": DefaultLogLevel, "LogFormat": DefaultLogFormat,
		"Listen": DefaultListen, "AdminListen": DefaultAdminListen,
		"MaxConnections": DefaultMaxConnections, "ShutdownTimeout": DefaultShutdownTimeout,
		"MaxRequests": DefaultMaxRequests, "MaxUpstreamConns": DefaultMaxUpstreamConns,
		"UpstreamResponse": DefaultUpstreamResponse, "HandshakeTimeout": DefaultHandshakeTimeout,
		"IdleTimeout": DefaultIdleTimeout,
		"KMSURI":      DefaultKMSURI, "KMSTimeout": DefaultKMSTimeout,
		"VaultPath": DefaultVaultPath, "VaultCacheTTL": DefaultVaultCacheTTL, "VaultCacheSize": DefaultVaultCacheSize,
		"AuditPath": DefaultAuditPath, "CheckpointEvery": DefaultCheckpointEvery, "CheckpointInterval": DefaultCheckpointInterval,
		"AuditSync": DefaultAuditSync, "AuditSyncInterval": DefaultAuditSyncInterval,
		"AuditShipBatch": DefaultAuditShipBatch, "AuditShipInterval": DefaultAuditShipInterval,
		"Issuer": DefaultIssuer, "Audience": DefaultAudience, "KeysPath": DefaultKeysPath,
		"RevocationsPath": DefaultRevocationsPath, "DefaultTTL": DefaultPassportTTL, "MaxTTL": DefaultPassportMaxTTL,
		"Leeway": DefaultLeeway, "PassportCacheSize": DefaultPassportCacheSize,
		"ScanWindow": DefaultScanWindow, "StatePath": DefaultDetectStatePath, "AlertSummaryWindow": DefaultAlertSummaryWindow,
		"BurstFactor": DefaultBurstFactor, "BurstWindow": DefaultBurstWindow, "BurstLearning": DefaultBurstLearning,
		"BurstMinSamples": DefaultBurstMinSamples, "BurstMinAge": DefaultBurstMinAge, "BurstMinCount": DefaultBurstMinCount, "BurstAbsoluteCap": DefaultBurstAbsoluteCap,
		"ControlTokenFile": DefaultControlTokenFile, "ControlListen": DefaultControlListen, "ControlStore": DefaultControlStore,
		"EtcdPrefix": DefaultEtcdPrefix, "EtcdDialTimeout": DefaultEtcdDialTimeout,
		"ControlStorePath": DefaultControlStorePath, "FleetLog": DefaultFleetLog, "AuditIntegrity": DefaultAuditIntegrity, "SidecarTTL": DefaultSidecarTTL, "LeaseTTL": DefaultLeaseTTL, "Heartbeat": DefaultHeartbeat, "KeyActivationDelay": DefaultKeyActivationDelay, "StoreTimeout": DefaultStoreTimeout, "DetectorGate": DefaultDetectorGate,
		"DriftMinEvents": DefaultDriftMinEvents, "DriftMinAge": DefaultDriftMinAge, "InjectionThreshold": DefaultInjectionThreshold,
		"InjectionLearnedThreshold": DefaultInjectionLearnedThreshold, "InjectionLearnedRecommended": RecommendedInjectionLearnedThreshold,
		"JudgeKind": DefaultJudgeKind, "JudgeTimeout": DefaultJudgeTimeout, "JudgeOnError": DefaultJudgeOnError,
		"JudgeCacheSize": DefaultJudgeCacheSize, "JudgeWhen": DefaultJudgeWhen,
		"JudgeBreakAfter": DefaultJudgeBreakAfter, "JudgeBreakFor": DefaultJudgeBreakFor,
	}
}

func indent(s, prefix string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	for i, l := range lines {
		lines[i] = prefix + l
	}
	return strings.Join(lines, "\n")
}

var fileTemplate = template.Must(template.New("stack.yaml").Funcs(template.FuncMap{
	"q": func(v any) string { return fmt.Sprintf("%q", fmt.Sprint(v)) },
}).Parse(`# STACK configuration. Every key is shown with its default.
# Precedence: flags > STACK_* environment variables > this file > defaults.
# An environment variable names the key in upper case with _ for the dot:
# proxy.admin_listen is STACK_PROXY_ADMIN_LISTEN. Relative paths are
# relative to this data directory. Unknown keys are an error.

log:
  # The sidecar's (stack proxy's) level: debug, info, warn or error. Other
  # commands log warnings and errors only, unless --log-level says otherwise.
  level: {{.D.LogLevel}}
  # auto (console on a terminal, JSON otherwise), json or console.
  format: {{.D.LogFormat}}

proxy:
  # Where agents send HTTP(S) traffic (HTTPS_PROXY=http://this-address).
  listen: {{q .D.Listen}}
  # /metrics, /healthz, /readyz and the token-protected admin API.
  admin_listen: {{q .D.AdminListen}}
  # Extra PEM roots trusted for upstream TLS, besides the system roots.
  upstream_ca: ""
  # Single-agent sidecar mode: the passport file of the one agent served.
  passport_file: ""
  # Hosts tunnelled without interception (no injection, no inspection),
  # e.g. ["*.googleapis.com"]; the passport must still grant them.
  tunnel_hosts: []
  # Load shedding: agent connections and requests in flight beyond these
  # are answered 503 (X-Stack-Reason: overloaded, Retry-After: 1).
  max_connections: {{.D.MaxConnections}}
  max_requests: {{.D.MaxRequests}}
  # Connections to one upstream host; more requests wait for a free one.
  max_upstream_conns_per_host: {{.D.MaxUpstreamConns}}
  # The wait for an upstream's response headers (a non-streaming LLM call
  # can take minutes): past it, 504 upstream_timeout. A tunnel without
  # interception closes after this long with no byte either way.
  upstream_response_timeout: {{.D.UpstreamResponse}}
  # An agent's TLS handshake inside a tunnel, and its first request head.
  handshake_timeout: {{.D.HandshakeTimeout}}
  # An agent connection with no request in flight, or whose request body
  # or response stalls, closes after this long.
  idle_timeout: {{.D.IdleTimeout}}
  # Offer HTTP/2 inside intercepted tunnels (agents that speak only
  # HTTP/2, such as gRPC, need it; the others keep HTTP/1.1).
  http2: true
  # The drain time on shutdown.
  shutdown_timeout: {{.D.ShutdownTimeout}}

egress:
  # Ranges the proxy may dial although they are loopback, private or
  # link-local (refused by default), e.g. ["10.20.0.0/16"].
  allow_cidrs: []
  # Host names pinned to addresses before DNS, as HOST=IP (like curl
  # --resolve), e.g. ["api.stripe.test=127.0.0.1"]; egress checks still apply.
  resolve: []

kms:
  # The key that wraps every data key and signing key:
  #   local://PATH (a 32-byte key file; for development, not production)
  #   gcpkms://projects/P/locations/L/keyRings/R/cryptoKeys/K
  #   awskms://KEY-ID-OR-ARN-OR-alias/NAME
  uri: {{q .D.KMSURI}}
  # Bound on each KMS call.
  timeout: {{.D.KMSTimeout}}

vault:
  path: {{.D.VaultPath}}
  # How long a decrypted secret stays in memory, and how many at most.
  cache_ttl: {{.D.VaultCacheTTL}}
  cache_size: {{.D.VaultCacheSize}}
  # Extra PEM roots trusted for the issuers minted credentials come from
  # (OAuth2 token endpoints, GitHub, AWS STS), besides the system roots
  # (and proxy.upstream_ca on a sidecar). A relative path is in the data
  # directory.
  mint_ca: ""

audit:
  path: {{.D.AuditPath}}
  # A signed checkpoint after this many records (0 = off) ...
  checkpoint_every: {{.D.CheckpointEvery}}
  # ... and at least this often while records arrive (0s = off).
  checkpoint_interval: {{.D.CheckpointInterval}}
  # When a record counts as stored. interval: written to the OS before the
  # request it describes proceeds (a killed sidecar loses nothing), synced
  # to disk at most sync_interval later (a power loss may cost that much).
  # always: synced before the request proceeds (slower).
  sync: {{.D.AuditSync}}
  sync_interval: {{.D.AuditSyncInterval}}
  # A sidecar joined to a control plane ships its records there (the fleet
  # audit log), in batches of up to ship_batch records (1-1000), looking
  # for new ones every ship_interval. Its own log keeps every record the
  # control plane has not acknowledged.
  ship_batch: {{.D.AuditShipBatch}}
  ship_interval: {{.D.AuditShipInterval}}

passport:
  issuer: {{.D.Issuer}}
  audience: {{.D.Audience}}
  # The issuer's Ed25519 keys, private parts wrapped by the KMS.
  keys_path: {{.D.KeysPath}}
  revocations_path: {{.D.RevocationsPath}}
  default_ttl: {{.D.DefaultTTL}}
  max_ttl: {{.D.MaxTTL}}
  # Clock skew tolerated on exp and nbf.
  leeway: {{.D.Leeway}}
  # Verified passports remembered (by token hash) to skip signature checks.
  cache_size: {{.D.PassportCacheSize}}
  # Role templates for "stack passport issue --role NAME". Each grant names
  # hosts (exact or *.example.com), methods, path patterns (* within a
  # segment, a final /** for any remainder), credentials, and optional
  # params constraints (from: query|body, op: eq|in|prefix|regex).
{{.Roles}}

detect:
  # The rollout gate: when true, every detector and rule acts at most as
  # alert. Start with modes at alert (or shadow), watch for 48 hours, then
  # raise the modes that earned it.
  alert_only: false
  # Body bytes of each request and response the detectors see.
  scan_window: {{.D.ScanWindow}}
  # Learned baselines, kept across restarts.
  state_path: {{.D.StatePath}}
  # Name of the environment variable holding the alert webhook URL
  # (Slack-compatible JSON POST); empty sends none.
  webhook_url_env: ""
  # Alert storms: the first signal of a detector for an agent and
  # credential is recorded, logged and alerted at once; while it keeps
  # firing, one summary per window stands for the rest (every signal is
  # still counted in the metrics, and block and revoke still act on every
  # request). 0 records every signal on its own.
  alert_summary_window: {{.D.AlertSummaryWindow}}
  # Composite rules, e.g.:
  #   - {name: burst-and-drift, detectors: [credential_burst, scope_drift], within: 60s, action: revoke}
  rules: []
  # Known false positives, e.g.: - {agent: crawler, detector: prompt_injection}
  suppress: []
  # Each detector's mode: off, shadow, alert, block or revoke.
  credential_burst:
    mode: {{.Mode}}
    # Fire when the pulls of one credential by one agent in the window
    # reach factor x the baseline learned over learning_window (at least
    # min_count pulls); until min_samples pulls over min_baseline_age are
    # learned, fire at absolute_cap pulls in the window.
    factor: {{.D.BurstFactor}}
    window: {{.D.BurstWindow}}
    learning_window: {{.D.BurstLearning}}
    min_samples: {{.D.BurstMinSamples}}
    min_baseline_age: {{.D.BurstMinAge}}
    min_count: {{.D.BurstMinCount}}
    absolute_cap: {{.D.BurstAbsoluteCap}}
  scope_drift:
    mode: {{.Mode}}
    # Out-of-scope attempts always signal; departures from an agent's
    # learned hosts, methods and paths score after this much learning.
    min_events: {{.D.DriftMinEvents}}
    min_age: {{.D.DriftMinAge}}
  prompt_injection:
    mode: {{.Mode}}
    # Score (0..1) at which request or response content is flagged.
    threshold: {{.D.InjectionThreshold}}
    # The learned layer, a classifier built into the binary, flags orders
    # that name no keyword; 0 leaves it off, {{.D.InjectionLearnedRecommended}} is the recommended
    # threshold. It costs about 0.06 ms per 16 KiB of body scanned and
    # flags far more writing about prompt injection and defence prompts
    # (docs/detectors.md).
    learned_threshold: {{.D.InjectionLearnedThreshold}}
    # An optional model judge, for those who run one (off while url is
    # empty). It sees only the content "when" selects, within the time
    # budget; secret-shaped strings are redacted first.
    model:
      # chat: an OpenAI-compatible chat completions endpoint prompted as
      # a judge; classifier: a POST answering label scores (Prompt Guard).
      kind: {{.D.JudgeKind}}
      # The endpoint itself, e.g. https://llm.internal/v1/chat/completions
      # (https, or http to a loopback address).
      url: ""
      # The model the request names; a chat judge needs one.
      model: ""
      # Name of the environment variable holding its API key (sent as a
      # bearer token); empty sends none.
      api_key_env: ""
      # Time budget of one call; the request waits at most this long.
      timeout: {{.D.JudgeTimeout}}
      # What a timeout, an error or a malformed answer means: open
      # (nothing) or closed (a critical signal, as for an injection).
      on_error: {{.D.JudgeOnError}}
      # Verdicts kept by the SHA-256 of the content; 0 keeps none.
      cache_size: {{.D.JudgeCacheSize}}
      # uncertain: content the patterns scored above 0 but below
      # critical; untrusted: that, and every response from an upstream;
      # always: every text body.
      when: {{.D.JudgeWhen}}
      # PEM roots of the endpoint's certificate; empty: the system's.
      ca_file: ""
      # After break_after failed calls in a row, make no call for
      # break_for (each judgement fails at once, as on_error says), then
      # try one. -1 never stops calling.
      break_after: {{.D.JudgeBreakAfter}}
      break_for: {{.D.JudgeBreakFor}}
  credential_exfiltration:
    mode: {{.Mode}}

control:
  # The control plane this sidecar joins and the CLI talks to, e.g.
  # https://stack-control:8443, or its replicas as a list
  # [https://control-0:8443, https://control-1:8443]: the sidecar uses one
  # and moves to the next when it fails (empty: standalone, all local).
  url: []
  # The CA of the control plane's certificate (stack control ca export);
  # empty: this directory's control CA if any, else the system roots.
  ca: ""
  # The operator token the CLI sends (made by stack init --control).
  token_file: {{.D.ControlTokenFile}}
  # A one-time join token (better given as --join-token, --join-token-file
  # or STACK_CONTROL_JOIN_TOKEN), or a workload OIDC token file, to join with.
  join_token: ""
  join_token_file: ""
  oidc_token_file: ""
  # The agent this sidecar must join as; a join mapped to another agent
  # fails (the admission webhook sets it from the pod's stack.run/agent).
  agent: ""
  # With no contact with the control plane for this long, refuse every
  # request (control_unreachable); 0s serves until the passport expires.
  max_staleness: 0s
  # The rest configures stack control itself.
  listen: {{q .D.ControlListen}}
  # Names and addresses of its certificate besides localhost and loopback.
  hosts: []
  # A certificate of your own instead of one from the control CA.
  tls_cert: ""
  tls_key: ""
  # Where its state lives: bbolt (the file store_path, one control plane)
  # or etcd (the cluster below; state under the prefix, etcd's revisions).
  store: {{.D.ControlStore}}
  store_path: {{.D.ControlStorePath}}
  # The fleet audit log: every joined sidecar's audit records, checked
  # against the chain already held, in one transparency log (tiles and
  # signed checkpoints) with its index. "" turns it off; with replicas,
  # set it on exactly one.
  fleet_log: {{.D.FleetLog}}
  # A sidecar that ships records contradicting what is held: alert, or
  # revoke (disable its agent and revoke its passports).
  audit_integrity: {{.D.AuditIntegrity}}
  # Send the fleet audit log's records to an OpenTelemetry logs receiver
  # (OTLP/HTTP), e.g. a collector in front of a SIEM. "" sends nothing.
  # The Kubernetes admission webhook at /k8s/mutate (docs/kubernetes.md):
  # pods labelled stack.run/agent get the sidecar. Empty image: none.
  webhook:
    image: ""
    pull_policy: IfNotPresent
    # Where the injected sidecars join this control plane.
    control_url: ""
  # The web console at https://CONTROL/ui/ (docs/console.md). Sign in with
  # the operator token, or with an OpenID Connect provider.
  console:
    enabled: true
    session_ttl: 8h
    oidc:
      # The provider's issuer URL; "" turns OIDC sign-in off.
      issuer: ""
      client_id: ""
      # A file holding the client secret.
      client_secret_file: ""
      # The callback registered at the provider: https://HOST:PORT/ui/oidc/callback
      redirect_url: ""
      # PEM roots for the provider, besides the system's.
      ca: ""
      # Who may sign in, by verified email or subject ("*": anyone the
      # provider signs in). Admins may revoke and change detector modes.
      admins: []
      viewers: []
  otlp:
    endpoint: ""
    # Headers added to every export (also read: OTEL_EXPORTER_OTLP_HEADERS).
    headers: {}
    # PEM roots for an https endpoint, besides the system's.
    ca: ""
    gzip: true
  etcd:
    # Members' client URLs or host:port, e.g. [https://etcd-0.example.com:2379].
    endpoints: []
    # Every key is written under it; several control planes can share a cluster.
    prefix: {{q .D.EtcdPrefix}}
    # How long to wait at start for a member to answer.
    dial_timeout: {{.D.EtcdDialTimeout}}
    # A client certificate for members that require one, and their CAs
    # (empty: the system's). An https endpoint turns TLS on too.
    tls:
      cert_file: ""
      key_file: ""
      ca_file: ""
  # A joined sidecar's credential, a credential lease, the feed heartbeat.
  sidecar_ttl: {{.D.SidecarTTL}}
  lease_ttl: {{.D.LeaseTTL}}
  heartbeat: {{.D.Heartbeat}}
  # With store etcd: how long a rotated issuer key is published by every
  # replica before it signs (stack passport rotate-key).
  key_activation_delay: {{.D.KeyActivationDelay}}
  # With no answer from its store for this long, stack control refuses
  # requests (503 unavailable) and /readyz until it answers again, so
  # that sidecars and load balancers go to a replica that has one.
  store_timeout: {{.D.StoreTimeout}}
  # The rollout gate of per-agent detector modes (stack agent detectors):
  # how long a detector in alert must stay clean before it is reported
  # ready for block.
  detector_gate: {{.D.DetectorGate}}
  # Workload identity issuers, e.g. a Kubernetes cluster:
  #   - issuer: https://kubernetes.default.svc.cluster.local
  #     audience: stack
  #     ca_file: /var/run/secrets/kubernetes.io/serviceaccount/ca.crt
  #     rules:
  #       - agent: billing-bot
  #         claims: {kubernetes.io/namespace: billing, kubernetes.io/serviceaccount/name: billing-bot}
  oidc_issuers: []
`))
