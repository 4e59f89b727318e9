// Package proxy is the data plane of the STACK sidecar: an HTTP(S)
// forward proxy, built on goproxy, that runs the request pipeline on every
// request, including each request inside an intercepted CONNECT tunnel.
//
// The pipeline reads top to bottom (see request.run): check the header
// size, identify the passport (Proxy-Authorization, or the sidecar's own
// passport file), verify it (signature, expiry, audience, revocation),
// authorize the request against the egress policy and its scope, inject
// credentials in place of placeholders, run the detectors, record each
// credential access durably, then forward over verified TLS. Responses
// are scrubbed of injected secrets and scanned as they stream. Every
// refusal answers with a precise status, an X-Stack-Reason header (see
// package reason), a small JSON body and one audit record.
//
// Subpackages: ca mints the interception certificates; egress refuses
// destinations in private, loopback and metadata ranges.
package proxy
