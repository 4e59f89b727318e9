package detect

import (
	"net/url"
	"strings"
)

// AWS signatures carry the access key id by design: a presigned URL names
// it in its query (SigV4: X-Amz-Credential=AKIA.../20260101/us-east-1/s3/
// aws4_request with X-Amz-Signature; SigV2: AWSAccessKeyId with Signature
// and Expires), and a signed request in its Authorization header. Sent to
// an AWS host, that is the key on its way to its own service, not an
// exfiltration: the access key id a well-formed signature names is not
// flagged in the URL or the headers of a request to an AWS host. The same
// id anywhere else (in the body, or to any other host), a second id, and
// a secret access key, which never belongs in a request, still are.

// awsHost reports whether host (lower-case, no port) is an AWS endpoint:
// a name under amazonaws.com or amazonaws.com.cn, which covers the S3
// endpoints in every style (bucket.s3.amazonaws.com,
// bucket.s3.us-west-2.amazonaws.com, s3.us-west-2.amazonaws.com/bucket).
func awsHost(host string) bool {
	host = strings.TrimSuffix(host, ".")
	for _, suffix := range [...]string{".amazonaws.com", ".amazonaws.com.cn"} {
		if len(host) > len(suffix) && asciiEqualFold(host[len(host)-len(suffix):], suffix) {
			return true
		}
	}
	return false
}

// awsSignedKeyIDs returns the access key ids the request's AWS signatures
// name, when it goes to an AWS host: that of a SigV4 or SigV2 presigned
// URL, and that of the Authorization header. Empty strings are none.
func awsSignedKeyIDs(ev *Event) (ids [2]string) {
	if !awsHost(ev.Host) {
		return ids
	}
	ids[0] = presignedKeyID(ev.Query)
	if vs := ev.Headers.Values("Authorization"); len(vs) == 1 {
		ids[1] = authorizationKeyID(vs[0])
	}
	return ids
}

// presignedKeyID returns the access key id of a presigned URL's query:
// SigV4 query authentication (every one of its parameters present once,
// the algorithm known, the credential scope and the signature well formed)
// or SigV2 (AWSAccessKeyId, Signature and Expires). "" when q is neither.
func presignedKeyID(q url.Values) string {
	one := func(k string) string {
		if vs := q[k]; len(vs) == 1 {
			return vs[0]
		}
		return ""
	}
	if cred := one("X-Amz-Credential"); cred != "" {
		switch one("X-Amz-Algorithm") {
		case "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256":
		default:
			return ""
		}
		if !amzDate(one("X-Amz-Date")) || !digits(one("X-Amz-Expires")) || one("X-Amz-SignedHeaders") == "" || !hexString(one("X-Amz-Signature")) {
			return ""
		}
		return credentialKeyID(cred)
	}
	if id := one("AWSAccessKeyId"); id != "" && one("Signature") != "" && digits(one("Expires")) && awsKeyID(id) {
		return id
	}
	return ""
}

// authorizationKeyID returns the access key id of an AWS Authorization
// header: SigV4 ("AWS4-HMAC-SHA256 Credential=AKIA.../scope,
// SignedHeaders=..., Signature=hex") or SigV2 ("AWS AKIA...:signature").
// "" when v is neither.
func authorizationKeyID(v string) string {
	scheme, rest, ok := strings.Cut(v, " ")
	if !ok {
		return ""
	}
	switch scheme {
	case "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256":
		var cred, sig string
		signed := false
		for _, f := range strings.Split(rest, ",") {
			k, val, _ := strings.Cut(strings.TrimSpace(f), "=")
			switch k {
			case "Credential":
				cred = val
			case "SignedHeaders":
				signed = val != ""
			case "Signature":
				sig = val
			}
		}
		if !signed || !hexString(sig) {
			return ""
		}
		return credentialKeyID(cred)
	case "AWS":
		id, sig, ok := strings.Cut(rest, ":")
		if !ok || sig == "" || !awsKeyID(id) {
			return ""
		}
		return id
	}
	return ""
}

// credentialKeyID returns the access key id of a SigV4 credential,
// AKID/YYYYMMDD/region/service/aws4_request (SigV4a leaves out the
// region), or "" when cred is not one.
func credentialKeyID(cred string) string {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 && len(parts) != 4 || parts[len(parts)-1] != "aws4_request" {
		return ""
	}
	if !awsKeyID(parts[0]) || len(parts[1]) != 8 || !digits(parts[1]) {
		return ""
	}
	for _, p := range parts[2 : len(parts)-1] {
		if p == "" {
			return ""
		}
	}
	return parts[0]
}

// awsKeyID reports whether s is an access key id as the
// aws_access_key_id shape knows it: AKIA or ASIA and 16 more of [0-9A-Z].
func awsKeyID(s string) bool {
	if len(s) != 20 || !strings.HasPrefix(s, "AKIA") && !strings.HasPrefix(s, "ASIA") {
		return false
	}
	for i := 4; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}

// amzDate reports whether s is an X-Amz-Date: YYYYMMDDTHHMMSSZ.
func amzDate(s string) bool {
	return len(s) == 16 && digits(s[:8]) && s[8] == 'T' && digits(s[9:15]) && s[15] == 'Z'
}

func digits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}

func hexString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F') {
			return false
		}
	}
	return s != ""
}
