// Package sigv4 re-signs AWS requests that an agent signed with a
// placeholder key, after checking them against the agent's grant.
//
// The agent's AWS SDK is configured with a placeholder access key
// (AWS_ACCESS_KEY_ID=stk_ph_aws, any secret) and signs as usual. For each
// request:
//
//	s, ok, err := sigv4.Parse(req)        // the signature: key ID, region, service
//	op, err := sigv4.Describe(req, s)     // the IAM actions and resources it needs
//	err = sigv4.Allow(narrow, s.Region, op)
//	err = sigv4.Check(req, s)              // what Resign would refuse, before minting
//	err = sigv4.Resign(req, s, session, time.Now())
//
// Allow applies the same narrowing the minted session's policy was built
// from (mint.SessionPolicy), so a request outside the grant is refused
// here with a precise reason, and would be refused by AWS anyway.
//
// # What is re-signed
//
// Requests signed with AWS4-HMAC-SHA256 in the Authorization header, with
// x-amz-content-sha256 absent (the body is hashed), a SHA-256 digest,
// UNSIGNED-PAYLOAD, or STREAMING-UNSIGNED-PAYLOAD-TRAILER (the aws-chunked
// form with a trailing checksum that boto3 and aws-sdk-go-v2 use for S3
// uploads over TLS: its chunks carry no signature).
//
// # Caveats
//
// Refused with reason sigv4_unsupported: presigned URLs, SigV4a, signed
// aws-chunked streaming (STREAMING-AWS4-HMAC-SHA256-PAYLOAD and its
// -TRAILER and ECDSA variants), a body over MaxBody without a payload
// hash, malformed or ambiguous signatures. Describe knows S3's REST API
// and the query, JSON and RPCv2 CBOR protocols; other REST APIs (Lambda,
// API Gateway...) are unknown operations that only a grant of the whole
// service allows. S3 requests to endpoints other than *.amazonaws.com
// are read path-style.
package sigv4
