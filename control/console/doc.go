// Package console is the control plane's web console: server-rendered
// pages at /ui for the people who run a fleet of agents.
//
// It shows agents with their status and passport expiry, joined sidecars
// and their feed lag, request and signal rates, a live stream of detector
// signals (server-sent events, fed by the fleet audit log through Live),
// an agent's audit timeline, and per-agent detector modes with the
// rollout gate; admins may revoke an agent and change its modes.
//
// # Sign-in and sessions
//
// The operator token signs in an admin; an OpenID Connect provider
// (OIDCOptions) signs in the admins and viewers it lists. A session is a
// signed __Host- cookie (Secure, HttpOnly, SameSite=Strict) keyed from the
// operator token, so every replica accepts it and rotating the token ends
// them all.
//
// # Caveats
//
//   - Every change needs the session's CSRF token and this origin, is
//     refused to viewers, and is recorded (an operator_call record) before
//     it is made: a change that cannot be recorded is not made.
//   - Pages carry no inline script or style: the Content Security Policy
//     allows this origin's files only.
//   - Live counts from the moment the control plane starts; timelines come
//     from the fleet log and so only from the replica that serves it.
package console
