// Package control is the control plane's server: it keeps the registry of
// agents, lets sidecars join (one-time join tokens, or a workload's OIDC
// token mapped to an agent by rules), issues and refreshes their agents'
// passports, serves the JWKS, keeps the vault and hands out credential
// leases, and pushes revocations to every sidecar through a watch feed
// with revisions.
//
// # State
//
// Everything the control plane must remember lives in a store.Store
// (bbolt by default), under these prefixes:
//
//	agents/NAME               Agent
//	jointokens/SHA256(token)  joinToken (one-time: deleted by compare-and-swap)
//	sessions/SHA256(cred)     session (a joined sidecar's credential)
//	issued/JTI                the session a passport was issued to
//	feed/revocations/KIND/ID  passport.Revocation
//	feed/vault/NAME           a credential changed (leases renew at once)
//	feed/detectors/AGENT      the agent's detector modes (SetDetectorMode)
//	signals/AGENT             the newest detector signal its sidecars shipped
//
// Join tokens and sessions are made with store.Store.Create: the store
// deletes them when they expire, even with no control plane running.
//
// Only keys under feed/ reach the watch feed, so a sidecar's revision is
// the store's revision of the last feed change it applied.
//
// # The feed
//
// GET /v1/watch?rev=N streams newline-delimited WatchEvents: every feed
// change after N, in order, then live ones, with a bookmark every
// heartbeat so a sidecar can tell a quiet feed from a dead connection.
// When N is older than the history kept, the feed says resync: the
// sidecar lists /v1/revocations and watches again from the list's
// revision, as with Kubernetes or etcd watches.
//
// The package never imports proxy: sidecars reach it over its HTTPS API
// only (see package control/client).
package control
