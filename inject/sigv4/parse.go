package sigv4

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// Algorithm is the only signing algorithm re-signed: SigV4 with
// HMAC-SHA256. SigV4a (AWS4-ECDSA-P256-SHA256) is recognized and refused.
const Algorithm = "AWS4-HMAC-SHA256"

const algorithmV4a = "AWS4-ECDSA-P256-SHA256"

// Payload hashes, as x-amz-content-sha256 carries them.
const (
	// UnsignedPayload: the signature does not cover the body (S3).
	UnsignedPayload = "UNSIGNED-PAYLOAD"
	// StreamingUnsignedTrailer: an aws-chunked body whose chunks carry no
	// signature, followed by a checksum trailer that carries none either.
	// The header signature covers the request; S3 checks the trailing
	// checksum against the body.
	StreamingUnsignedTrailer = "STREAMING-UNSIGNED-PAYLOAD-TRAILER"
)

// Signed is the SigV4 signature a request carries, as its sender made it.
type Signed struct {
	// KeyID is the access key ID the request was signed with: a
	// placeholder such as stk_ph_aws when the agent's SDK holds one.
	KeyID string
	// Date (YYYYMMDD), Region and Service are the credential scope.
	Date    string
	Region  string
	Service string
	// SignedHeaders are the lower-case names of the headers the sender
	// signed; Resign signs these again (those still present) and no more.
	SignedHeaders []string
	// Presigned: the signature is in the query string (a presigned URL),
	// not in the Authorization header.
	Presigned bool
	// PayloadHash is x-amz-content-sha256 as sent; empty when absent.
	PayloadHash string
}

// Parse finds the SigV4 signature of req, in its Authorization header or
// in its query string (a presigned URL). ok is false when req carries no
// SigV4 signature at all; err is an *Error (reason.SigV4Unsupported) when
// it carries one that is malformed, ambiguous or of an algorithm other
// than AWS4-HMAC-SHA256.
func Parse(req *http.Request) (s Signed, ok bool, err error) {
	var inHeader bool
	for _, v := range req.Header.Values("Authorization") {
		if strings.HasPrefix(strings.TrimLeft(v, " \t"), "AWS4-") {
			inHeader = true
		}
	}
	query, qerr := url.ParseQuery(req.URL.RawQuery)
	inQuery := false
	for k := range query {
		switch strings.ToLower(k) {
		case "x-amz-algorithm", "x-amz-credential", "x-amz-signature", "x-amz-signedheaders":
			inQuery = true
		}
	}
	switch {
	case !inHeader && !inQuery:
		return Signed{}, false, nil
	case inHeader && inQuery:
		return Signed{}, true, unsupported("the request carries a SigV4 signature both in its Authorization header and in its query string")
	case inQuery && qerr != nil:
		return Signed{}, true, unsupported("malformed query string in a presigned request")
	}
	if inHeader {
		s, err = parseHeader(req.Header.Values("Authorization"))
	} else {
		s, err = parseQuery(query)
	}
	if err != nil {
		return Signed{}, true, err
	}
	hashes := req.Header.Values("X-Amz-Content-Sha256")
	if len(hashes) > 1 {
		return Signed{}, true, unsupported("the request carries x-amz-content-sha256 more than once")
	}
	if len(hashes) == 1 {
		s.PayloadHash = hashes[0]
	}
	return s, true, nil
}

func parseHeader(values []string) (Signed, error) {
	if len(values) != 1 {
		return Signed{}, unsupported("the request carries more than one Authorization header")
	}
	alg, rest, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if err := checkAlgorithm(alg); err != nil {
		return Signed{}, err
	}
	var cred, signed, sig string
	var seen [3]bool
	for part := range strings.SplitSeq(rest, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		var i int
		switch {
		case !ok:
			return Signed{}, malformed("Authorization", "want Credential=..., SignedHeaders=..., Signature=...")
		case k == "Credential":
			i, cred = 0, v
		case k == "SignedHeaders":
			i, signed = 1, v
		case k == "Signature":
			i, sig = 2, v
		default:
			return Signed{}, malformed("Authorization", fmt.Sprintf("unknown component %.40q", k))
		}
		if seen[i] {
			return Signed{}, malformed("Authorization", fmt.Sprintf("%s given twice", k))
		}
		seen[i] = true
	}
	if seen != [3]bool{true, true, true} {
		return Signed{}, malformed("Authorization", "want Credential=..., SignedHeaders=..., Signature=...")
	}
	return parseParts("Authorization", cred, signed, sig)
}

func parseQuery(q url.Values) (Signed, error) {
	get := func(name string) (string, error) {
		var vs []string
		for k, v := range q {
			if strings.EqualFold(k, name) {
				vs = append(vs, v...)
			}
		}
		if len(vs) != 1 {
			return "", malformed("presigned query", "want exactly one "+name)
		}
		return vs[0], nil
	}
	var vals [5]string
	for i, name := range []string{"X-Amz-Algorithm", "X-Amz-Credential", "X-Amz-SignedHeaders", "X-Amz-Signature", "X-Amz-Date"} {
		v, err := get(name)
		if err != nil {
			return Signed{}, err
		}
		vals[i] = v
	}
	if err := checkAlgorithm(vals[0]); err != nil {
		return Signed{}, err
	}
	s, err := parseParts("presigned query", vals[1], vals[2], vals[3])
	s.Presigned = true
	return s, err
}

func checkAlgorithm(alg string) error {
	switch alg {
	case Algorithm:
		return nil
	case algorithmV4a:
		return unsupported("the request is signed with SigV4a (AWS4-ECDSA-P256-SHA256): configure the SDK for SigV4 (AWS4-HMAC-SHA256)")
	}
	return unsupported(fmt.Sprintf("unknown signing algorithm %.40q: want AWS4-HMAC-SHA256", alg))
}

func malformed(where, what string) error {
	return unsupported("malformed SigV4 " + where + ": " + what)
}

// parseParts reads Credential=KEYID/DATE/REGION/SERVICE/aws4_request,
// the signed header list and the signature.
func parseParts(where, cred, signed, sig string) (Signed, error) {
	parts := strings.Split(cred, "/")
	if len(parts) != 5 || parts[4] != "aws4_request" {
		return Signed{}, malformed(where, "want Credential=KEYID/DATE/REGION/SERVICE/aws4_request")
	}
	s := Signed{KeyID: parts[0], Date: parts[1], Region: parts[2], Service: parts[3]}
	switch {
	case !validKeyID(s.KeyID):
		return Signed{}, malformed(where, "the access key ID is empty or holds characters no key ID has")
	case len(s.Date) != 8 || !allIn(s.Date, "0123456789"):
		return Signed{}, malformed(where, "want an 8-digit date in the credential scope")
	case !validName(s.Region, 32):
		return Signed{}, malformed(where, "want a region such as us-east-1 in the credential scope")
	case !validName(s.Service, 64):
		return Signed{}, malformed(where, "want a service such as s3 in the credential scope")
	}
	hasHost := false
	for h := range strings.SplitSeq(signed, ";") {
		if h == "" || !allIn(h, "abcdefghijklmnopqrstuvwxyz0123456789-_.") {
			return Signed{}, malformed(where, "want SignedHeaders of lower-case header names separated by ';'")
		}
		hasHost = hasHost || h == "host"
		s.SignedHeaders = append(s.SignedHeaders, h)
	}
	if !hasHost {
		return Signed{}, malformed(where, "SignedHeaders must include host")
	}
	if len(sig) != 64 || !allIn(sig, "0123456789abcdef") {
		return Signed{}, malformed(where, "want a Signature of 64 lower-case hex digits")
	}
	return s, nil
}

func validKeyID(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= ' ' || c >= 0x7f || c == ',' || c == '=' {
			return false
		}
	}
	return true
}

func validName(s string, max int) bool {
	return s != "" && len(s) <= max && allIn(s, "abcdefghijklmnopqrstuvwxyz0123456789-")
}

func allIn(s, set string) bool {
	for i := 0; i < len(s); i++ {
		if strings.IndexByte(set, s[i]) < 0 {
			return false
		}
	}
	return true
}
