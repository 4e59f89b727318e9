// Package client is a sidecar's side of the control plane: it joins
// (join token or workload OIDC token), keeps a sidecar credential and
// its agent's passport fresh, watches the revocation feed and applies
// each revocation to the local revocation store, keeps credential
// leases in memory, and hands over the detector modes the control plane
// sets for its agent.
//
// When the control plane is away the sidecar is fail-static: it serves
// with the passport, leases and revocations it has, reports how stale it
// is, and applies what it missed as soon as the feed is back; a passport
// is never extended past its expiry.
//
// Given several control plane replicas (one store behind them all), it
// talks to one at a time and moves to the next when that one fails on
// the network, answers 5xx, or its feed goes silent or ends; the
// credential, passport, leases and feed revision carry over, since every
// replica serves the same state.
package client
