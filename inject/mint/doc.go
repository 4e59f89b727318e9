// Package mint turns a vault entry's root material into short-lived,
// scoped credentials, and caches them.
//
// A credential's kind says what its root material is and how it mints:
//
//   - static: the secret itself; nothing is minted (the vault serves it).
//   - oauth2-client-credentials: a client secret; access tokens from the
//     token endpoint (RFC 6749 §4.4), scopes narrowed per grant.
//   - gcp-service-account: a service-account key; OAuth2 access tokens by
//     the JWT bearer flow (RFC 7523), scopes narrowed per grant.
//   - github-app: an app's private key; installation tokens limited to the
//     permissions and repositories the grant names.
//   - aws-sts: a base AWS credential; per-agent AssumeRole sessions of at
//     most 15 minutes under a session policy built from the grant.
//
// Mint calls the issuer once. Cache keeps what was minted per credential
// version, agent and narrowing until shortly before it expires, with one
// mint in flight per key, and serves a token that is still valid while a
// refresh fails.
package mint
