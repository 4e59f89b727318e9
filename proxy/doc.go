// Package proxy is the data plane of the STACK sidecar: an HTTP(S)
// forward proxy, built on goproxy, that runs the request pipeline on every
// request, including each request inside an intercepted CONNECT tunnel.
//
// The pipeline reads top to bottom (see Proxy.pipeline): identify the
// passport (Proxy-Authorization, or the sidecar's own passport file),
// verify it (signature, expiry, audience, revocation), authorize the
// request against its scope and the egress policy, inject credentials in
// place of placeholders, record each credential access durably, then
// forward over verified TLS. Responses are scrubbed of injected secrets
// as they stream. Every refusal answers with a precise status, an
// X-Stack-Reason header, a small JSON body and one audit record.
//
// Subpackages: ca mints the interception certificates; egress refuses
// destinations in private, loopback and metadata ranges.
package proxy
